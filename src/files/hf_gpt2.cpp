#include "files/hf_gpt2.h"

#include <dirent.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ostream>
#include <set>
#include <sstream>

#include "base/errors.h"
#include "blocks/block.h"
#include "base/human_format.h"
#include "files/atomic_file.h"
#include "files/safetensors.h"
#include "files/torch_pickle.h"
#include "model/convert.h"

namespace dgpt {

namespace {

const char* const kWeightsFile = "model.safetensors";
const char* const kTorchWeightsFile = "pytorch_model.bin";
const char* const kConfigFile = "config.json";
constexpr int64_t kGpt2VocabSize = 50257;

struct NamedSizes {
  const char* name;
  Gpt2Sizes sizes;
};
const NamedSizes kModels[] = {
    {"gpt2", {12, 12, 768}},
    {"gpt2-medium", {24, 16, 1024}},
    {"gpt2-large", {36, 20, 1280}},
    {"gpt2-xl", {48, 25, 1600}},
};

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);  // follows the cache's symlinks to blobs/
}
bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool has_files(const std::string& dir) {
  return is_file(dir + "/" + kConfigFile) && (is_file(dir + "/" + kWeightsFile) || is_file(dir + "/" + kTorchWeightsFile));
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : "";
}

// huggingface_hub's cache folder, and which variable decided it (for the message).
std::pair<std::string, std::string> hub_cache_dir() {
  if (auto v = env_or_empty("HF_HUB_CACHE"); !v.empty()) return {v, "$HF_HUB_CACHE"};
  if (auto v = env_or_empty("HUGGINGFACE_HUB_CACHE"); !v.empty()) return {v, "$HUGGINGFACE_HUB_CACHE"};
  if (auto v = env_or_empty("HF_HOME"); !v.empty()) return {v + "/hub", "$HF_HOME/hub"};
  if (auto v = env_or_empty("XDG_CACHE_HOME"); !v.empty()) return {v + "/huggingface/hub", "$XDG_CACHE_HOME/huggingface/hub"};
  return {env_or_empty("HOME") + "/.cache/huggingface/hub", "~/.cache/huggingface/hub, HF_HOME unset"};
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (const dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_small_text_file(const std::string& path, size_t limit) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw UserError("cannot read " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw UserError(path + " is not a regular file");
  if (size_t(st.st_size) > limit) throw UserError(fmt::format("{} has {} bytes: too big for a config.json", path, st.st_size));
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) throw UserError("cannot read " + path + ": " + std::strerror(errno));
  return text.str();
}

std::string fetch_command(const std::string& model, const std::string& local_dir) {
  const std::string to = local_dir.empty() ? "" : " --local-dir " + local_dir;
  return fmt::format("`huggingface-cli download {} {} {}{}` (or `python3 -c \"from huggingface_hub import "
                     "hf_hub_download as get; [get('{}', f{}) for f in ('{}', '{}')]\"`)",
                     model, kWeightsFile, kConfigFile, to, model,
                     local_dir.empty() ? "" : ", local_dir='" + local_dir + "'", kWeightsFile, kConfigFile);
}

// --- config.json ---------------------------------------------------------------------------

struct HfConfig {
  int64_t n_layer = 0, n_head = 0, n_embd = 0, n_positions = 0, vocab_size = 0;
  std::string activation = "gelu_new";  // GPT2Config's default
};

HfConfig read_hf_config(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_small_text_file(path, size_t{1} << 20));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path + " is not valid JSON (" + first_line(e.what()) + ")");
  }
  auto fail = [&](const std::string& what) -> void { throw UserError(path + ": " + what); };
  if (!j.is_object()) fail("not a JSON object");
  if (j.contains("model_type") && j["model_type"] != "gpt2")
    fail("model_type is " + j["model_type"].dump() + ", not \"gpt2\": dgpt reads GPT-2 models only");
  HfConfig c;
  auto size = [&](const char* key, const char* fallback) -> int64_t {
    const char* k = j.contains(key) ? key : (fallback && j.contains(fallback) ? fallback : nullptr);
    if (!k) fail(std::string("no '") + key + "'");
    if (!j[k].is_number_integer() || j[k].get<int64_t>() <= 0 || j[k].get<int64_t>() > (int64_t{1} << 31))
      fail(std::string("'") + k + "' is " + j[k].dump() + ", not a positive integer");
    return j[k].get<int64_t>();
  };
  c.n_layer = size("n_layer", nullptr);
  c.n_head = size("n_head", nullptr);
  c.n_embd = size("n_embd", nullptr);
  c.n_positions = size("n_positions", "n_ctx");
  c.vocab_size = size("vocab_size", nullptr);
  if (j.contains("activation_function")) {
    if (!j["activation_function"].is_string()) fail("activation_function is not a string");
    c.activation = j["activation_function"].get<std::string>();
  }
  if (c.activation != "gelu" && c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh" &&
      c.activation != "gelu_fast")
    fail("activation_function is '" + c.activation + "': dgpt's MLP computes GELU only");
  if (j.contains("layer_norm_epsilon") &&
      (!j["layer_norm_epsilon"].is_number() || std::abs(j["layer_norm_epsilon"].get<double>() - 1e-5) > 1e-12))
    fail("layer_norm_epsilon is " + j["layer_norm_epsilon"].dump() + ": dgpt's LayerNorm has GPT-2's 1e-5");
  if (j.contains("n_inner") && !j["n_inner"].is_null() &&
      !(j["n_inner"].is_number_integer() && j["n_inner"].get<int64_t>() == 4 * c.n_embd))
    fail("n_inner is " + j["n_inner"].dump() + ": dgpt's MLP has 4*n_embd = " + std::to_string(4 * c.n_embd) +
         " hidden units");
  if (j.contains("scale_attn_by_inverse_layer_idx") && j["scale_attn_by_inverse_layer_idx"] == true)
    fail("scale_attn_by_inverse_layer_idx is true: dgpt's attention scales by 1/sqrt(head_dim) only");
  if (j.contains("scale_attn_weights") && j["scale_attn_weights"] == false)
    fail("scale_attn_weights is false: dgpt's attention scales by 1/sqrt(head_dim)");
  if (c.n_embd % c.n_head != 0)
    fail(fmt::format("n_embd ({}) is not divisible by n_head ({})", c.n_embd, c.n_head));
  return c;
}

std::string shape_str(torch::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// GPT-2's tensors, as nanoGPT names them, with their shape in the Hugging Face file and whether the
// file holds them transposed (Conv1D [in, out]).
struct Gpt2Tensor {
  std::string name;  // nanoGPT's
  std::vector<int64_t> hf_shape;
  bool conv1d = false;
};

std::vector<Gpt2Tensor> gpt2_tensors(int64_t n_layer, int64_t C, int64_t V, int64_t T) {
  std::vector<Gpt2Tensor> t{{"transformer.wte.weight", {V, C}}, {"transformer.wpe.weight", {T, C}}};
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    t.push_back({p + "ln_1.weight", {C}});
    t.push_back({p + "ln_1.bias", {C}});
    t.push_back({p + "attn.c_attn.weight", {C, 3 * C}, true});
    t.push_back({p + "attn.c_attn.bias", {3 * C}});
    t.push_back({p + "attn.c_proj.weight", {C, C}, true});
    t.push_back({p + "attn.c_proj.bias", {C}});
    t.push_back({p + "ln_2.weight", {C}});
    t.push_back({p + "ln_2.bias", {C}});
    t.push_back({p + "mlp.c_fc.weight", {C, 4 * C}, true});
    t.push_back({p + "mlp.c_fc.bias", {4 * C}});
    t.push_back({p + "mlp.c_proj.weight", {4 * C, C}, true});
    t.push_back({p + "mlp.c_proj.bias", {C}});
  }
  t.push_back({"transformer.ln_f.weight", {C}});
  t.push_back({"transformer.ln_f.bias", {C}});
  return t;
}

// "h.3.attn.bias" / "h.3.attn.masked_bias": the causal-mask buffers (not weights).
bool is_mask_buffer(const std::string& name) {
  const std::string prefix = "transformer.h.";
  if (name.rfind(prefix, 0) != 0) return false;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return false;
  const std::string rest = name.substr(dot + 1);
  return rest == "attn.bias" || rest == "attn.masked_bias";
}

}  // namespace

bool gpt2_standard_sizes(const std::string& model, Gpt2Sizes& sizes) {
  for (auto& m : kModels)
    if (model == m.name) {
      sizes = m.sizes;
      return true;
    }
  return false;
}

std::string find_pretrained_dir(const std::string& model, const std::string& configured_dir) {
  const std::string files = std::string(kWeightsFile) + " and " + kConfigFile;
  if (!configured_dir.empty()) {
    if (has_files(configured_dir)) return configured_dir;
    const std::string missing = !is_dir(configured_dir) ? "does not exist"
                                : !is_file(configured_dir + "/" + kConfigFile)
                                    ? std::string("has no ") + kConfigFile
                                    : std::string("has no ") + kWeightsFile;
    throw UserError(fmt::format("init_from='{}': pretrained_dir='{}' {} (it needs {}); fetch them with {}", model,
                                configured_dir, missing, files, fetch_command(model, configured_dir)));
  }
  const auto [hub, hub_source] = hub_cache_dir();
  std::vector<std::string> looked;
  for (const std::string& repo : {"models--" + model, "models--openai-community--" + model}) {
    const std::string snapshots = hub + "/" + repo + "/snapshots";
    looked.push_back(snapshots + "/*/");
    // refs/main names the snapshot huggingface_hub resolves by default.
    std::string ref;
    try {
      if (is_file(hub + "/" + repo + "/refs/main")) ref = read_small_text_file(hub + "/" + repo + "/refs/main", 4096);
    } catch (const UserError&) {
      ref.clear();
    }
    while (!ref.empty() && std::isspace(static_cast<unsigned char>(ref.back()))) ref.pop_back();
    if (!ref.empty() && ref.find('/') == std::string::npos && has_files(snapshots + "/" + ref))
      return snapshots + "/" + ref;
    // Else the snapshot that holds the files and was fetched last.
    std::string best;
    int64_t best_time = -1;
    for (const auto& name : list_dir(snapshots)) {
      const std::string dir = snapshots + "/" + name;
      struct stat st {};
      if (!has_files(dir) || ::stat((dir + "/" + kConfigFile).c_str(), &st) != 0) continue;
      if (int64_t(st.st_mtime) > best_time) {
        best_time = int64_t(st.st_mtime);
        best = dir;
      }
    }
    if (!best.empty()) return best;
  }
  throw UserError(fmt::format("init_from='{}': no {} found: looked for {} in {} and {} (the Hugging Face cache, {}); "
                              "fetch them with {}, or set pretrained_dir to a folder that holds them",
                              model, "GPT-2 weights", files, looked[0], looked[1], hub_source,
                              fetch_command(model, "")));
}

HfWeights read_hf_weights(const std::string& dir) {
  const std::string safetensors = dir + "/" + kWeightsFile;
  if (is_file(safetensors)) return {safetensors, read_safetensors(safetensors).tensors};
  // Else PyTorch's torch.save of the state dict (files/torch_pickle.h: read, never executed).
  const std::string bin = dir + "/" + kTorchWeightsFile;
  if (is_file(bin)) {
    HfWeights w{bin, {}};
    for (auto& [name, t] : read_torch_state_dict(bin))
      if (!w.tensors.emplace(name, t).second) throw UserError(bin + " holds tensor '" + name + "' twice");
    return w;
  }
  throw UserError(fmt::format("{} has neither {} nor {}", dir, kWeightsFile, kTorchWeightsFile));
}

PretrainedGpt2 load_pretrained_gpt2(const std::string& model, const std::string& configured_dir,
                                    std::ostream& notices) {
  Gpt2Sizes standard{};
  if (!gpt2_standard_sizes(model, standard))
    throw UserError("init_from='" + model + "' is not a GPT-2 model (gpt2, gpt2-medium, gpt2-large, gpt2-xl)");
  PretrainedGpt2 out;
  out.model = model;
  out.dir = find_pretrained_dir(model, configured_dir);
  const std::string config_path = out.dir + "/" + kConfigFile;
  const HfConfig c = read_hf_config(config_path);
  HfWeights file = read_hf_weights(out.dir);
  const std::string& path = file.path;
  // Names as nanoGPT's: GPT2LMHeadModel's "transformer." prefix, or the hub files' bare GPT2Model names.
  std::map<std::string, torch::Tensor> named;
  torch::Tensor lm_head;
  for (auto& [hf_name, t] : file.tensors) {
    if (hf_name == "lm_head.weight") {
      lm_head = t;
      continue;
    }
    const std::string name = hf_name.rfind("transformer.", 0) == 0 ? hf_name : "transformer." + hf_name;
    if (is_mask_buffer(name)) continue;
    if (!named.emplace(name, t).second)
      throw UserError(path + " holds tensor '" + name + "' twice (with and without the 'transformer.' prefix)");
  }
  const auto expected = gpt2_tensors(c.n_layer, c.n_embd, c.vocab_size, c.n_positions);
  std::set<std::string> known;
  for (auto& e : expected) known.insert(e.name);
  for (auto& [name, t] : named)
    if (!known.count(name))
      throw UserError(fmt::format("{} holds tensor '{}', which GPT-2 of {} layers does not have", path, name, c.n_layer));
  for (auto& e : expected) {
    auto it = named.find(e.name);
    const std::string hf_name = e.name.substr(std::string("transformer.").size());
    if (it == named.end()) throw UserError(fmt::format("{} has no tensor '{}' (GPT-2's {})", path, hf_name, e.name));
    torch::Tensor t = it->second;
    if (!at::isFloatingType(t.scalar_type()))
      throw UserError(fmt::format("{}: tensor '{}' has dtype {}; weights are floating point", path, hf_name,
                                  c10::toString(t.scalar_type())));
    if (t.sizes().vec() != e.hf_shape)
      throw UserError(fmt::format("{}: tensor '{}' has shape {}, but {} says {}{}", path, hf_name, shape_str(t.sizes()),
                                  config_path, shape_str(e.hf_shape), e.conv1d ? " (Conv1D: [in, out])" : ""));
    if (t.scalar_type() != torch::kFloat && t.scalar_type() != torch::kDouble) t = t.to(torch::kFloat);  // F16, BF16
    if (!torch::isfinite(t).all().item<bool>())
      throw UserError(fmt::format("{}: tensor '{}' holds inf or nan", path, hf_name));
    out.weights[e.name] = e.conv1d ? t.t() : t;  // [in, out] -> nanoGPT's [out, in]: a view
  }
  if (lm_head.defined()) {
    const auto& wte = out.weights.at("transformer.wte.weight");
    if (lm_head.sizes() != wte.sizes() || !torch::equal(lm_head.to(torch::kFloat), wte))
      throw UserError(path + ": lm_head.weight is not wte.weight: dgpt ties the output layer to the token "
                             "embedding, as GPT-2 does, and cannot load an untied one");
  }
  // Said once everything read well, so that a bad file is one error line.
  if (c.n_layer != standard.n_layer || c.n_head != standard.n_head || c.n_embd != standard.n_embd ||
      c.vocab_size != kGpt2VocabSize || c.n_positions != 1024)
    notices << fmt::format("notice: {} describes n_layer={}, n_head={}, n_embd={}, n_positions={}, vocab_size={}, "
                           "not {}'s standard {}, {}, {}, 1024, {}: using the file's sizes\n",
                           config_path, c.n_layer, c.n_head, c.n_embd, c.n_positions, c.vocab_size, model,
                           standard.n_layer, standard.n_head, standard.n_embd, kGpt2VocabSize);
  // GPT-2's gelu_new (and gelu_pytorch_tanh, gelu_fast: the same formula) is the tanh approximation:
  // dgpt computes it, so the weights keep their function (nanoGPT's from_pretrained computes the exact one).
  const bool tanh_gelu = c.activation != "gelu";
  if (tanh_gelu)
    notices << fmt::format("notice: {}'s activation_function '{}' is the tanh approximation of GELU: the model computes "
                           "it (activation='gelu_tanh'), as Hugging Face does; nanoGPT's from_pretrained computes the "
                           "exact GELU instead\n",
                           model, c.activation);

  out.args.model_type = ModelArgs::kDenseModelType;
  out.args.n_layer = c.n_layer;
  out.args.n_head = c.n_head;
  out.args.n_embd = c.n_embd;
  out.args.vocab_size = c.vocab_size;
  out.args.block_size = c.n_positions;
  out.args.bias = true;  // nanoGPT's from_pretrained: GPT-2 has biases everywhere
  out.args.activation = tanh_gelu ? "gelu_tanh" : "gelu";
  out.args.dropout = 0.0;
  out.args.tp_size = 1;
  out.args.block_types.assign(size_t(c.n_layer), ModelArgs::kBaselineBlockType);
  return out;
}

ModelArgs pretrained_run_args(const PretrainedGpt2& gpt2, const TrainConfig& cfg, std::ostream& notices) {
  ModelArgs a = gpt2.args;
  const std::string source = gpt2.dir + "/" + kConfigFile;
  a.model_type = cfg.model_type;
  a.tp_size = cfg.dense() ? 1 : cfg.tp_size;
  a.block_types = cfg.block_types.empty()
                      ? std::vector<std::string>(size_t(a.n_layer), ModelArgs::kBaselineBlockType)
                      : cfg.block_types;
  a.parallel_merge = cfg.parallel_merge;
  a.vocab_parallel = cfg.vocab_parallel;
  a.dropout = cfg.dropout;  // as nanoGPT: only dropout may be overridden
  if (cfg.block_size > gpt2.args.block_size)
    throw UserError(fmt::format("block_size={} is more than {}'s {} positions ({}): it must be at most {}",
                                cfg.block_size, gpt2.model, gpt2.args.block_size, source, gpt2.args.block_size));
  a.block_size = cfg.block_size;  // smaller: wpe cropped, as nanoGPT's crop_block_size
  // The config's cross-key rules, on the sizes the weights have.
  validated_with_sizes(cfg, a, known_block_types(), " from " + source);
  notices << fmt::format("initializing from {} weights in {}: n_layer={}, n_head={}, n_embd={}, vocab_size={}, "
                         "bias=True, block_size={}{}, dropout={} (the config's n_layer, n_head, n_embd and bias are "
                         "not used)\n",
                         gpt2.model, gpt2.dir, a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.block_size,
                         a.block_size < gpt2.args.block_size
                             ? fmt::format(" (of {}: the position embedding cropped)", gpt2.args.block_size)
                             : "",
                         a.dropout);
  if (!a.dense() && !is_baseline_pattern(a)) {
    // Block types that compute another function than GPT-2's block: the weights are a starting point.
    std::string what;
    int64_t dropped = 0;
    std::set<std::string> seen;
    for (size_t l = 0; l < a.block_types.size(); ++l) {
      const BlockType& type = block_type(a.block_types[l]);
      if (!type.c_proj_biases) ++dropped;
      if (type.name == baseline_block_type() || !seen.insert(type.name).second) continue;
      what += fmt::format("{}'{}' ({})", what.empty() ? "" : "; ", type.name,
                          type.differs_from_dense.empty() ? "another function" : type.differs_from_dense);
    }
    notices << fmt::format("notice: block_types {} compute another function than GPT-2's blocks: {}; the {} weights "
                           "are their starting point, not the same model{}\n",
                           PyValue::from(a.block_types).repr(), what, gpt2.model,
                           dropped ? fmt::format(" ({} layers have no c_proj biases: GPT-2's attn.c_proj.bias and "
                                                 "mlp.c_proj.bias of those layers are dropped)",
                                                 dropped)
                                   : "");
  }
  return a;
}

DenseState pretrained_weights_for(const PretrainedGpt2& gpt2, const ModelArgs& args) {
  return convert_weights(gpt2.weights, gpt2.args, args);  // wpe cropped, c_proj biases a type lacks dropped
}

Checkpoint pretrained_checkpoint(const PretrainedGpt2& gpt2, int64_t tp_size) {
  Checkpoint ckpt;
  ckpt.model_args = gpt2.args;
  if (tp_size > 1) ckpt.model_args.model_type = ModelArgs::kShardedModelType;
  ckpt.model = gpt2.weights;
  return ckpt;
}

// --- export --------------------------------------------------------------------------------

void export_hf_gpt2(const std::string& ckpt_path, const std::string& folder, int64_t vocab_size, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(ckpt_path);
  const ModelArgs& a = ckpt.model_args;
  if (!a.dense() && !is_baseline_pattern(a)) {
    std::string why;
    std::set<std::string> seen;
    for (size_t l = 0; l < a.block_types.size(); ++l) {
      const BlockType& type = block_type(a.block_types[l]);
      if (type.name == baseline_block_type() || !seen.insert(type.name).second) continue;
      std::string layers;
      for (size_t m = 0; m < a.block_types.size(); ++m)
        if (a.block_types[m] == type.name) layers += (layers.empty() ? "" : ", ") + std::to_string(m);
      why += fmt::format("{}'{}' (layers {}): {}", why.empty() ? "" : "; ", type.name, layers,
                         type.differs_from_dense.empty() ? "another function" : type.differs_from_dense);
    }
    throw UserError(fmt::format("cannot export {} as GPT-2: its block_types {} are not GPT-2's block: {}; only the "
                                "dense model ('gpt') and all-'{}' blocks (at any tp_size) compute GPT-2's function",
                                ckpt_path, PyValue::from(a.block_types).repr(), why, baseline_block_type()));
  }
  const int64_t V = vocab_size > 0 ? vocab_size : a.vocab_size;
  if (V > a.vocab_size)
    throw UserError(fmt::format("dgpt export --vocab_size={} is out of range: the checkpoint has {} rows, so it must "
                                "be in [1, {}] (or 0 for all of them)",
                                vocab_size, a.vocab_size, a.vocab_size));
  const int64_t C = a.n_embd;
  const auto dtype = ckpt.model.at("transformer.wte.weight").scalar_type();
  if (!a.bias)
    out << "notice: the checkpoint has bias=False, and Hugging Face's GPT-2 always has biases: they are exported as "
           "zeros (the same function)\n";
  if (V < a.vocab_size)
    out << fmt::format("notice: exporting the first {} of the checkpoint's {} token rows; the {} rows after them are "
                       "dropped (their logits leave the softmax)\n",
                       V, a.vocab_size, a.vocab_size - V);

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& e : gpt2_tensors(a.n_layer, C, V, a.block_size)) {
    auto it = ckpt.model.find(e.name);
    torch::Tensor t;
    if (it != ckpt.model.end()) {
      t = it->second;
      if (e.name == "transformer.wte.weight") t = t.narrow(0, 0, V);
      if (e.conv1d) t = t.t();  // nanoGPT's [out, in] -> Conv1D's [in, out]
    } else if (!a.bias && e.name.size() > 5 && e.name.compare(e.name.size() - 5, 5, ".bias") == 0) {
      t = torch::zeros(e.hf_shape, torch::TensorOptions().dtype(dtype));
    } else {
      throw UserError(ckpt_path + " has no tensor '" + e.name + "'");
    }
    if (t.sizes().vec() != e.hf_shape)
      throw UserError(fmt::format("{}: tensor '{}' has shape {} where GPT-2 of these sizes has {}", ckpt_path, e.name,
                                  shape_str(t.sizes()), shape_str(e.hf_shape)));
    tensors.emplace_back(e.name, t.to(dtype));
  }

  // GPT2Config's keys, as Hugging Face writes them for gpt2, with this model's sizes.
  nlohmann::ordered_json config;
  // The GELU the model computes: the exact one (GELUActivation) or GPT-2's tanh approximation.
  config["activation_function"] = a.tanh_gelu() ? "gelu_new" : "gelu";
  config["architectures"] = {"GPT2LMHeadModel"};
  config["attn_pdrop"] = a.dropout;
  if (V >= kGpt2VocabSize) {
    config["bos_token_id"] = kGpt2VocabSize - 1;
    config["eos_token_id"] = kGpt2VocabSize - 1;
  }
  config["embd_pdrop"] = a.dropout;
  config["initializer_range"] = 0.02;
  config["layer_norm_epsilon"] = 1e-5;
  config["model_type"] = "gpt2";
  config["n_ctx"] = a.block_size;
  config["n_embd"] = C;
  config["n_head"] = a.n_head;
  config["n_inner"] = nullptr;
  config["n_layer"] = a.n_layer;
  config["n_positions"] = a.block_size;
  config["reorder_and_upcast_attn"] = false;
  config["resid_pdrop"] = a.dropout;
  config["scale_attn_by_inverse_layer_idx"] = false;
  config["scale_attn_weights"] = true;
  config["summary_activation"] = nullptr;
  config["summary_first_dropout"] = 0.1;
  config["summary_proj_to_labels"] = true;
  config["summary_type"] = "cls_index";
  config["summary_use_proj"] = true;
  config["tie_word_embeddings"] = true;
  config["torch_dtype"] = dtype == torch::kDouble ? "float64" : "float32";
  config["use_cache"] = true;
  config["vocab_size"] = V;

  make_dirs(folder);
  const std::string weights_path = folder + "/" + kWeightsFile;
  write_safetensors(weights_path, tensors, {{"format", "pt"}});
  write_file_atomically(folder + "/" + kConfigFile, config.dump(2) + "\n");
  int64_t params = 0, bytes = 0;
  for (auto& [name, t] : tensors) {
    bytes += t.numel() * t.element_size();
    if (name != "transformer.wpe.weight") params += t.numel();
  }
  out << fmt::format("exported {} (iter {}, {} layers x {}, vocab {}, block_size {}, {:.2f}M parameters) to {}: {} "
                     "({}) and {} (GPT2LMHeadModel)\n",
                     ckpt_path, ckpt.iter_num, a.n_layer, C, V, a.block_size, double(params) / 1e6, folder,
                     kWeightsFile, human_bytes(double(bytes)), kConfigFile);
}

}  // namespace dgpt
