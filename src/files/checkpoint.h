// Checkpoints (SPEC §4): one file Python's torch.load reads, holding a dict with the dense-layout
// model, the optimizer moments in the same layout, model_args, iter_num, best_val_loss, config,
// and the sampler/RNG state for exact resumption. Written to a temporary file and renamed.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"
#include "model/model_args.h"
#include "model/optim.h"
#include "config/pyliteral.h"

namespace dgpt {

struct Checkpoint {
  ModelArgs model_args;
  DenseState model;
  std::map<std::string, AdamMoments> optimizer;
  int64_t iter_num = 0;
  double best_val_loss = 1e9;
  std::vector<std::pair<std::string, PyValue>> config;
  int64_t seed = 0;          // the data sampler's and dropout's seed (streams keyed by iter_num)
  torch::Tensor rng_state;  // torch's CPU generator at save time

  // Read from a nanoGPT ckpt.pt (its train.py's; see load_checkpoint): what a resumed run should
  // say about it (the moments mapped, or why the optimizer restarts), and the AdamW settings of its
  // param_groups, which nanoGPT's own resume restores and dgpt's takes from the config instead.
  struct AdamWSettings {
    double weight_decay = 0, beta1 = 0, beta2 = 0, eps = 0;
  };
  std::vector<std::string> notices;
  std::optional<AdamWSettings> nanogpt_adamw;
};

void save_checkpoint(const Checkpoint& ckpt, const std::string& path);
// Throws UserError naming the file for a missing, unreadable, corrupt or incomplete checkpoint: a
// path that is not a regular file (a FIFO, a directory, /dev/zero: refused before reading), a size no
// checkpoint has, model_args a model cannot be built from (the config's validate(), block_types of
// n_layer known types, vocab_size > 0), embeddings and layers that do not match model_args, weights
// or optimizer moments that are not finite floating-point tensors of the weights' shapes, a negative
// iter_num or optimizer step, a nan best_val_loss, an rng_state that is not the CPU generator's.
// The file is read by files/torch_pickle.h (never by executing it): dgpt's own checkpoints, and
// nanoGPT's ckpt.pt (model_args without dgpt's keys): the dense 'gpt' model, torch.compile's
// '_orig_mod.' prefixes stripped, PyTorch < 2's causal-mask buffers (transformer.h.<i>.attn.bias)
// dropped, lm_head.weight checked to be wte's, the AdamW moments mapped from PyTorch's parameter
// indices to names by nanoGPT's two parameter groups (or none, with a notice, when the optimizer's
// param_groups are not those), step counts and best_val_loss read from their tensors.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace dgpt
