// Precompiled header: the heavy, stable includes shared by every torch translation unit.
#pragma once
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
