// Run configuration in nanoGPT's dialect: `key = value` config files plus --key=value overrides.
#pragma once
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/pyliteral.h"
#include "model/model_args.h"

namespace dgpt {

// Every key, declared once: X(type, name, default, kind, help). The structs below and the schema
// that parses, checks, prints and documents them (config.cpp) are both expanded from these lists.
// kind: Plain; NoneAllowed (None means the empty/zero value); MarksDevice (sets device_was_set).
// `dgpt train`'s keys, with nanoGPT's train.py defaults where nanoGPT has the key.
#define DGPT_TRAIN_KEYS(X) \
  /* I/O */ \
  X(std::string, out_dir, "out", Plain, "directory for checkpoints (and the one init_from='resume' reads)") \
  X(int64_t, eval_interval, 2000, Plain, "evaluate train/val loss every this many iterations") \
  X(int64_t, log_interval, 1, Plain, "print the training loss every this many iterations") \
  X(int64_t, eval_iters, 200, Plain, "batches averaged per loss estimate") \
  X(bool, eval_only, false, Plain, "evaluate once and exit") \
  X(bool, always_save_checkpoint, true, Plain, "save at every eval, not only when val loss improves") \
  X(std::string, init_from, "scratch", Plain, "'scratch', 'resume' (from out_dir), OpenAI's 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' (Hugging Face's files), or 'PATH/ckpt.pt' (a checkpoint's weights under this config's block_types, tp_size, ...; a fresh optimizer)") \
  X(std::string, pretrained_dir, "", Plain, "init_from='gpt2*': the folder with model.safetensors and config.json; '' = the Hugging Face cache ($HF_HOME/hub)") \
  X(bool, save_initial_weights, false, Plain, "also write out_dir/init.pt: the checkpoint at iter 0, before the first step") \
  /* data */ \
  X(std::string, dataset, "openwebtext", Plain, "dataset name: data/<dataset>/{train,val}.bin") \
  X(std::string, data_dir, "", Plain, "dataset directory; '' means data/<dataset>") \
  X(int64_t, gradient_accumulation_steps, 5 * 8, Plain, "micro-steps per optimizer step") \
  X(int64_t, batch_size, 12, Plain, "sequences per micro-step") \
  X(int64_t, block_size, 1024, Plain, "context length in tokens") \
  /* model: the architecture's keys (model/model_args.h) */ \
  DGPT_MODEL_KEYS(X) \
  /* optimizer */ \
  X(double, learning_rate, 6e-4, Plain, "peak learning rate") \
  X(int64_t, max_iters, 600000, Plain, "total optimizer steps") \
  X(double, weight_decay, 1e-1, Plain, "AdamW weight decay") \
  X(double, beta1, 0.9, Plain, "AdamW beta1") \
  X(double, beta2, 0.95, Plain, "AdamW beta2") \
  X(double, grad_clip, 1.0, Plain, "clip the global gradient norm at this value; 0 disables") \
  /* learning-rate schedule */ \
  X(bool, decay_lr, true, Plain, "warmup then cosine decay; False keeps learning_rate") \
  X(int64_t, warmup_iters, 2000, Plain, "linear warmup steps") \
  X(int64_t, lr_decay_iters, 600000, Plain, "step at which the cosine decay reaches min_lr") \
  X(double, min_lr, 6e-5, Plain, "final learning rate") \
  /* system */ \
  X(std::string, backend, "sim", Plain, "'sim' (one process), 'gloo' (processes, CPU) or 'nccl' (processes, GPUs)") \
  X(int64_t, tp_procs, 0, Plain, "processes per tensor-parallel group; 0 = gcd(world size, tp_size)") \
  X(double, comm_timeout, 300.0, Plain, "seconds a collective or the rendezvous may wait before failing") \
  X(bool, overlap_comm, true, Plain, "real runs: a ladder sub-layer's all-reduce runs while the next sub-layer computes (SPEC §2); False makes it blocking, to measure what overlap hides") \
  X(std::string, device, "cuda", MarksDevice, "'cpu', 'cuda', 'cuda:1', ...") \
  X(std::string, dtype, "bfloat16", Plain, "'float32', 'bfloat16', 'float16' or 'float64'") \
  X(int64_t, seed, 1337, Plain, "random seed")

// `dgpt sample`'s keys, as nanoGPT's sample.py.
#define DGPT_SAMPLE_KEYS(X) \
  X(std::string, init_from, "resume", Plain, "'resume' (the checkpoint in out_dir) or 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'") \
  X(std::string, pretrained_dir, "", Plain, "init_from='gpt2*': the folder with model.safetensors and config.json; '' = the Hugging Face cache") \
  X(std::string, out_dir, "out", Plain, "directory holding the checkpoint") \
  X(std::string, start, "\n", Plain, "prompt text, or 'FILE:path' to read it from a file") \
  X(int64_t, num_samples, 10, Plain, "number of samples to draw") \
  X(int64_t, max_new_tokens, 500, Plain, "tokens generated per sample") \
  X(double, temperature, 0.8, Plain, "softmax temperature; < 1 is less random") \
  X(int64_t, top_k, 200, NoneAllowed, "keep only the top_k most likely tokens; None or 0 keeps all") \
  X(double, top_p, 1.0, Plain, "nucleus sampling: keep the most likely tokens whose probabilities sum to top_p; 1 keeps all") \
  X(int64_t, seed, 1337, Plain, "random seed") \
  X(std::string, device, "cuda", MarksDevice, "'cpu', 'cuda', 'cuda:1', ...") \
  X(std::string, dtype, "bfloat16", Plain, "'float32', 'bfloat16', 'float16' or 'float64'") \
  X(int64_t, tp_size, 0, Plain, "tensor-parallel shards; 0 uses the checkpoint's") \
  X(std::string, model_type, "", Plain, "'gpt' or 'distributed_gpt'; '' uses the checkpoint's") \
  X(std::vector<std::string>, block_types, {}, NoneAllowed, "None: the checkpoint's; a list runs the weights under other block types, zero-shot (what changes is printed)") \
  X(std::optional<bool>, vocab_parallel, std::nullopt, Plain, "split the embedding and logits by vocabulary (True/False, the same function); None uses the checkpoint's") \
  X(std::string, backend, "sim", Plain, "'sim' (one process), 'gloo' (processes, CPU) or 'nccl' (processes, GPUs)") \
  X(int64_t, tp_procs, 0, Plain, "processes per tensor-parallel group; 0 = gcd(world size, tp_size)") \
  X(double, comm_timeout, 300.0, Plain, "seconds a collective or the rendezvous may wait before failing")

#define DGPT_DECLARE_CONFIG_KEY(type, name, default_value, kind, help) type name = default_value;

struct TrainConfig {
  DGPT_TRAIN_KEYS(DGPT_DECLARE_CONFIG_KEY)

  // Set by the loader: true when the user named `device` explicitly (file or override).
  bool device_was_set = false;

  bool dense() const { return model_type == "gpt"; }  // nanoGPT's GPT, nothing sharded
  std::string resolved_data_dir() const { return data_dir.empty() ? "data/" + dataset : data_dir; }
  // block_types with None/empty expanded to n_layer x 'tp'.
  std::vector<std::string> resolved_block_types() const;
};

struct SampleConfig {
  DGPT_SAMPLE_KEYS(DGPT_DECLARE_CONFIG_KEY)
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
// validate() for a run whose n_layer, n_head, n_embd and bias come from weights (init_from='gpt2*'
// or a checkpoint file): the config with those of `sizes`, checked as a config is (init_from then
// 'scratch'); an error names init_from, the sizes and `where` they came from (" from FILE", or "").
TrainConfig validated_with_sizes(const TrainConfig& cfg, const ModelArgs& sizes,
                                 const std::vector<std::string>& known_block_types, const std::string& where);
// num_samples >= 1, max_new_tokens >= 0, temperature >= 0, top_k >= 0, 0 < top_p <= 1, tp_size >= 0,
// and the value sets of backend and dtype, tp_procs >= 0, comm_timeout > 0. Throws UserError.
void validate(const SampleConfig& cfg);

// Whether init_from names OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'), whose
// weights come from Hugging Face's files (files/hf_gpt2.h) and set n_layer, n_head, n_embd and bias.
bool is_gpt2_model_name(const std::string& init_from);
// init_from = 'PATH.pt': a checkpoint's weights (dgpt's or nanoGPT's) under the config's model
// (block_types, tp_size, ...), with a fresh optimizer at iter 0, as init_from='gpt2' starts.
bool is_checkpoint_path(const std::string& init_from);

// (key, value) for every key, in declaration order: printed at start, stored in checkpoints.
std::vector<std::pair<std::string, PyValue>> config_items(const TrainConfig& cfg);
std::vector<std::pair<std::string, PyValue>> config_items(const SampleConfig& cfg);
// Sets one key from a value (used when resuming from a checkpoint's stored config).
void set_config_key(TrainConfig& cfg, const std::string& key, const PyValue& value);
// "key = value" lines, aligned, for printing the effective config.
std::string format_config(const std::vector<std::pair<std::string, PyValue>>& items);
// FNV-1a over "key=value;" of every item: what the ranks of a real run compare.
uint64_t config_hash(const std::vector<std::pair<std::string, PyValue>>& items);
// Help text listing every key with its default, for --help.
std::string train_keys_help();
std::string sample_keys_help();

}  // namespace dgpt
