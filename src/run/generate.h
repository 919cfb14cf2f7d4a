// Inference from checkpoints: `dgpt sample` (nanoGPT's sample.py) and `dgpt eval`.
#pragma once
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "files/checkpoint.h"
#include "config/config.h"
#include "model/model.h"
#include "model/precision.h"

namespace dgpt {

class TokenFile;  // files/data.h

// A model for inference from a checkpoint, optionally at another tp_size or as the dense 'gpt'
// (both only for all-tp checkpoints: spd and parallel blocks are tied to their tp_size), and with
// vocab_parallel 1 (on) or 0 (off), the same function either way; -1 keeps the checkpoint's.
// Other block_types (non-empty) convert the weights (model/convert.h), zero-shot; `notices`, when
// given, gets the line saying what changed.
GPT model_from_checkpoint(const Checkpoint& ckpt, int64_t tp_size, const std::string& model_type,
                          torch::Device device, torch::Dtype dtype, int vocab_parallel = -1,
                          const std::vector<std::string>& block_types = {}, std::ostream* notices = nullptr);
// The model args model_from_checkpoint builds (the same overrides and checks).
ModelArgs inference_model_args(const Checkpoint& ckpt, int64_t tp_size, const std::string& model_type,
                               int vocab_parallel = -1, const std::vector<std::string>& block_types = {});

// How the next token is drawn from the last position's logits.
struct SamplingOptions {
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 0;         // 0: every token
  double top_p = 1.0;        // 1: every token
};

// The next token from the last position's logits [1, V] (float32). Draws from torch's default generator.
int64_t next_token(torch::Tensor logits, const SamplingOptions& opt);

// nanoGPT's GPT.generate with a KV cache (SPEC §6): `ids` plus max_new_tokens new tokens, on_token
// called after each. The context of every token is nanoGPT's: the last block_size tokens.
std::vector<int64_t> generate(GPT& model, std::vector<int64_t> ids, int64_t max_new_tokens,
                              const SamplingOptions& opt, torch::Device device, const Precision& precision,
                              const std::function<void(int64_t)>& on_token = {});

// nanoGPT's sample.py: num_samples samples of max_new_tokens tokens after `start`, streamed to `out`
// as they are generated; the all-reduces and tokens/s on `notices`. With backend 'gloo' or 'nccl'
// under `dgpt launch` (or torchrun) each process holds its share of the shards; every rank draws
// the same tokens (checked), and rank 0 prints.
void sample(const SampleConfig& cfg, std::ostream& out, std::ostream& notices);

struct EvalOptions {
  std::string out_dir = "out";
  std::string tokens;       // a .bin token file
  int64_t block_size = 0;   // 0: the model's
  int64_t batch_size = 8;
  int64_t max_windows = 0;  // 0: all
  std::string device = "cpu";
  int64_t tp_size = 0;      // 0: the checkpoint's
  int vocab_parallel = -1;  // 1 on, 0 off, -1: the checkpoint's (the same function; SPEC §1)
  std::vector<std::string> block_types;  // empty: the checkpoint's; else the weights converted (zero-shot)
  std::string init_from = "resume";  // or 'gpt2', ...: OpenAI's weights (files/hf_gpt2.h) instead of ckpt.pt
  std::string pretrained_dir;        // their folder; '' = the Hugging Face cache
};

// The mean cross-entropy of `model` over windows [0, windows) of length T (window j: x = tokens[jT, jT+T),
// y = tokens[jT+1, jT+T+1)), batch_size windows per forward pass, in float64 from the logits.
double window_loss(GPT& model, const TokenFile& tokens, int64_t T, int64_t windows, int64_t batch_size,
                   torch::Device device);

// The cross-entropy of a forward pass's output against targets y [B, T], summed over the B*T tokens
// (float64 from the logits; a vocab-parallel model's mean loss times B*T).
double summed_nll(const ModelOutput& out, const torch::Tensor& y);

// Mean cross-entropy over every predicted token of consecutive non-overlapping windows:
// window j has x = tokens[jT, jT+T), y = tokens[jT+1, jT+T+1). Prints progress and, last,
// `loss <value>`; returns the value.
double evaluate_tokens(const EvalOptions& opt, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
