// `dgpt sensitivity` (the SPD paper's method, arXiv 2502.20727): how much each block's loss of its
// sync points costs. For a checkpoint at tp_size N: the loss with each block alone switched to
// another type (spd by default), its delta against the unconverted model, the paper's cumulative
// order (the last k layers switched, k = 1..n_layer), and for a forward all-reduce budget the
// block_types the measured deltas suggest, with the loss they predict and the loss measured. The
// variants share the unconverted model's prefix (GPTImpl::settled_streams / forward_from).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

namespace dgpt {

struct SensitivityOptions {
  std::string out_dir = "out";
  std::string tokens;        // a .bin file of uint16 token ids (the val split, say)
  std::string to = "spd";    // the block type each block is switched to
  int64_t tp_size = 0;       // 0: the checkpoint's
  int64_t block_size = 0;    // window length; 0: the model's
  int64_t batch_size = 8;
  int64_t max_windows = 64;  // 0: all
  int64_t budget = -1;       // forward all-reduces per micro-step; < 0: no suggestion
  std::string json;          // FILE, or "-" (stdout; the table then goes to `notices`)
  std::string device = "cpu";
};

void sensitivity(const SensitivityOptions& opt, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
