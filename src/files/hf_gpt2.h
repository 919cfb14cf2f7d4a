// OpenAI's GPT-2 as Hugging Face publishes it (SPEC §4): `init_from = 'gpt2' | 'gpt2-medium' |
// 'gpt2-large' | 'gpt2-xl'` reads `model.safetensors` + `config.json` from a folder or from the
// Hugging Face cache, into nanoGPT's dense layout; `dgpt export` writes a dense or all-tp checkpoint
// the other way, as a folder `GPT2LMHeadModel.from_pretrained` loads.
//
// Hugging Face's Conv1D weights are [in, out]; nanoGPT's Linear weights are [out, in]: c_attn,
// attn.c_proj, mlp.c_fc and mlp.c_proj are transposed each way. Names may carry GPT2LMHeadModel's
// `transformer.` prefix (save_pretrained) or not (the hub's gpt2 files); `h.N.attn.bias` and
// `h.N.attn.masked_bias` (the causal-mask buffers of old files) are ignored; `lm_head.weight`, where
// present, must equal wte (dgpt ties them, as GPT-2 does).
#pragma once
#include <torch/torch.h>

#include <iosfwd>
#include <map>
#include <string>

#include "config/config.h"
#include "files/checkpoint.h"
#include "model/model.h"
#include "model/model_args.h"

namespace dgpt {

// The named model's standard sizes (n_layer, n_head, n_embd); false for a name that is none of them.
struct Gpt2Sizes {
  int64_t n_layer, n_head, n_embd;
};
bool gpt2_standard_sizes(const std::string& model, Gpt2Sizes& sizes);

// The folder holding the model's files: `configured_dir` when given (pretrained_dir), else the
// Hugging Face cache as huggingface_hub lays it out: $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; in it
// models--<model>/snapshots/<refs/main>/ (or models--openai-community--<model>/, the hub's newer
// name), else the newest snapshot that holds the files. Throws UserError saying where it looked and
// the command that fetches them.
std::string find_pretrained_dir(const std::string& model, const std::string& configured_dir);

// A Hugging Face model folder's weights by their names in the file: model.safetensors (mapped, not
// copied), else pytorch_model.bin (PyTorch's torch.save of the state dict, read by
// files/torch_pickle.h without executing anything).
struct HfWeights {
  std::string path;  // the file they came from, for messages
  std::map<std::string, torch::Tensor> tensors;
};
HfWeights read_hf_weights(const std::string& dir);

// GPT-2 weights in nanoGPT's layout, with the dense model they describe.
struct PretrainedGpt2 {
  std::string model;   // "gpt2", ...
  std::string dir;     // the folder they came from
  // The dense 'gpt' of config.json: n_layer, n_head, n_embd, vocab_size, block_size = n_positions,
  // bias = True (nanoGPT's from_pretrained), dropout 0.
  ModelArgs args;
  DenseState weights;  // nanoGPT names, [out, in], float32 (float64 from F64 files; views on the mapped file where they can be)
};

// Finds, reads and checks the files (config.json: GPT-2's architecture, its sizes against the
// weights'). Sizes that differ from the named model's standard ones are used, with a notice; an
// activation other than GELU, a LayerNorm epsilon other than 1e-5, an untied lm_head or a weight of
// the wrong shape or dtype are UserErrors naming the file. config.json's 'gelu_new' (GPT-2's tanh
// approximation) becomes activation='gelu_tanh', so the model computes GPT-2's function (nanoGPT's
// from_pretrained computes the exact GELU): one notice line says so.
PretrainedGpt2 load_pretrained_gpt2(const std::string& model, const std::string& configured_dir,
                                    std::ostream& notices);

// The model a training run builds from GPT-2 weights: GPT-2's n_layer, n_head, n_embd, vocab_size and
// bias=True; block_size the config's, at most n_positions (a smaller one crops the position embedding,
// as nanoGPT's crop_block_size); model_type, tp_size, block_types (None: n_layer x 'tp'),
// parallel_merge, vocab_parallel and dropout the config's, checked as validate() checks a config
// (errors name the GPT-2 sizes). Prints one line of what it took from where, and one line when the
// block types compute another function than GPT-2's blocks (the weights are then a starting point).
ModelArgs pretrained_run_args(const PretrainedGpt2& gpt2, const TrainConfig& cfg, std::ostream& notices);
// The weights for a model of `args` (pretrained_run_args'): wpe cropped to block_size, and the
// c_proj biases of layers whose block type has none dropped.
DenseState pretrained_weights_for(const PretrainedGpt2& gpt2, const ModelArgs& args);
// The model as a checkpoint at iter 0 (what `sample` and `eval` run): the dense 'gpt', or with
// tp_size > 1 'distributed_gpt' of all-'tp' blocks (the same function).
Checkpoint pretrained_checkpoint(const PretrainedGpt2& gpt2, int64_t tp_size = 1);

// `dgpt export`: the checkpoint at `ckpt_path` (dense, or all 'tp' blocks at any tp_size) as
// Hugging Face's GPT-2 in `folder`: model.safetensors (GPT2LMHeadModel's names with the
// `transformer.` prefix, Conv1D [in, out], lm_head omitted as save_pretrained omits the tied one,
// __metadata__ {"format": "pt"}) and config.json (GPT2Config's keys; activation_function 'gelu' for
// the exact GELU, 'gelu_new' for activation='gelu_tanh': the function the model computes). A bias=False model gets zero biases (the same function; a notice says
// so). vocab_size 0 keeps the checkpoint's rows (nanoGPT's padded 50304 included); a smaller one
// keeps the first vocab_size rows (a notice says how many go). Other block types, and a vocab_size
// above the checkpoint's, are UserErrors. Both files are written atomically.
void export_hf_gpt2(const std::string& ckpt_path, const std::string& folder, int64_t vocab_size, std::ostream& out);

}  // namespace dgpt
