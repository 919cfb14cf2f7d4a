// `dgpt comms`: the communication plan of a config, without training.
#pragma once
#include <iosfwd>

#include "config/config.h"

namespace dgpt {

void print_comm_plan(const TrainConfig& cfg, bool as_json, std::ostream& out);

}  // namespace dgpt
