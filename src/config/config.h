// Run configuration in nanoGPT's dialect: `key = value` config files plus --key=value overrides.
#pragma once
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "config/pyliteral.h"

namespace dgpt {

// Every key of `dgpt train`, with nanoGPT's train.py defaults where nanoGPT has the key.
struct TrainConfig {
  // I/O
  std::string out_dir = "out";
  int64_t eval_interval = 2000;
  int64_t log_interval = 1;
  int64_t eval_iters = 200;
  bool eval_only = false;
  bool always_save_checkpoint = true;
  std::string init_from = "scratch";  // 'scratch' | 'resume'
  // data
  std::string dataset = "openwebtext";
  std::string data_dir = "";  // '' means data/<dataset> under the working directory
  int64_t gradient_accumulation_steps = 5 * 8;
  int64_t batch_size = 12;
  int64_t block_size = 1024;
  // model
  std::string model_type = "gpt";  // 'gpt' | 'distributed_gpt'
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  double dropout = 0.0;
  bool bias = false;
  int64_t tp_size = 1;
  std::vector<std::string> block_types;  // None / empty: all 'tp'
  std::string parallel_merge = "sum";    // 'sum' | 'mean'
  // optimizer
  double learning_rate = 6e-4;
  int64_t max_iters = 600000;
  double weight_decay = 1e-1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;  // 0 disables
  // learning-rate schedule
  bool decay_lr = true;
  int64_t warmup_iters = 2000;
  int64_t lr_decay_iters = 600000;
  double min_lr = 6e-5;
  // system
  std::string backend = "sim";  // 'sim' (one process) | 'gloo' (processes, CPU) | 'nccl' (processes, GPUs)
  int64_t tp_procs = 0;         // W, processes per tensor-parallel group; 0: gcd(world size, tp_size)
  double comm_timeout = 300.0;  // seconds any collective or the rendezvous may wait
  std::string device = "cuda";
  std::string dtype = "bfloat16";  // 'float32' | 'bfloat16' | 'float16' | 'float64'
  int64_t seed = 1337;

  // Set by the loader: true when the user named `device` explicitly (file or override).
  bool device_was_set = false;

  bool dense() const { return model_type == "gpt"; }  // nanoGPT's GPT, nothing sharded
  std::string resolved_data_dir() const { return data_dir.empty() ? "data/" + dataset : data_dir; }
  // block_types with None/empty expanded to n_layer x 'tp'.
  std::vector<std::string> resolved_block_types() const;
};

// Keys of `dgpt sample`, as nanoGPT's sample.py.
struct SampleConfig {
  std::string init_from = "resume";
  std::string out_dir = "out";
  std::string start = "\n";  // or "FILE:path"
  int64_t num_samples = 10;
  int64_t max_new_tokens = 500;
  double temperature = 0.8;
  int64_t top_k = 200;  // 0 or None: no top-k filtering
  int64_t seed = 1337;
  std::string device = "cuda";
  std::string dtype = "bfloat16";
  int64_t tp_size = 0;         // 0: the checkpoint's
  std::string model_type = ""; // '': the checkpoint's
  bool device_was_set = false;
};

// Loads config files in order, then applies overrides ("--key=value"; a value that is not a
// Python literal is taken as a string for string keys, as nanoGPT's configurator does).
// Python-only keys (wandb_*, compile, ...) are accepted, and one line per key is written to
// `notices`. Throws UserError naming the file/line or override, the key and the value (and the
// closest known key for an unknown one).
TrainConfig load_train_config(const std::vector<std::string>& config_files,
                              const std::vector<std::string>& overrides, std::ostream& notices);
SampleConfig load_sample_config(const std::vector<std::string>& config_files,
                                const std::vector<std::string>& overrides, std::ostream& notices);

// Cross-key checks: block_types length == n_layer, known block types, n_head % tp_size,
// 4*n_embd % tp_size, positive sizes, value sets of string keys. Throws UserError.
void validate(const TrainConfig& cfg, const std::vector<std::string>& known_block_types);

// (key, value) for every key, in declaration order: printed at start, stored in checkpoints.
std::vector<std::pair<std::string, PyValue>> config_items(const TrainConfig& cfg);
std::vector<std::pair<std::string, PyValue>> config_items(const SampleConfig& cfg);
// Sets one key from a value (used when resuming from a checkpoint's stored config).
void set_config_key(TrainConfig& cfg, const std::string& key, const PyValue& value);
// "key = value" lines, aligned, for printing the effective config.
std::string format_config(const std::vector<std::pair<std::string, PyValue>>& items);
// Help text listing every key with its default, for --help.
std::string train_keys_help();
std::string sample_keys_help();

}  // namespace dgpt
