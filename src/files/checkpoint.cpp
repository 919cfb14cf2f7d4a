#include "files/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>

#include "blocks/block.h"
#include "config/config.h"
#include "files/atomic_file.h"
#include "files/torch_pickle.h"

namespace dgpt {

namespace {

using GenericDict = c10::impl::GenericDict;
using GenericList = c10::impl::GenericList;

GenericDict new_dict() { return GenericDict(c10::StringType::get(), c10::AnyType::get()); }

// Lists are written as plain generic lists: typed ones pickle through TorchScript helpers that
// Python's weights-only loader refuses.
c10::IValue to_ivalue(const PyValue& v) {
  if (v.is_none()) return {};
  if (v.is_bool()) return std::get<bool>(v.v);
  if (v.is_int()) return std::get<int64_t>(v.v);
  if (v.is_float()) return std::get<double>(v.v);
  if (v.is_str()) return std::get<std::string>(v.v);
  GenericList list(c10::AnyType::get());
  for (auto& item : std::get<PyValue::List>(v.v)) list.push_back(to_ivalue(item));
  return list;
}

// Lists nested deeper than this in a checkpoint's config are refused (no config has them).
constexpr int kMaxConfigNesting = 32;

PyValue from_ivalue(const c10::IValue& v, int depth = 0) {
  if (v.isNone()) return {};
  if (v.isBool()) return {v.toBool()};
  if (v.isInt()) return {v.toInt()};
  if (v.isDouble()) return {v.toDouble()};
  if (v.isString()) return {v.toStringRef()};
  if (v.isList()) {
    if (depth >= kMaxConfigNesting) throw UserError("a list nested too deep in the checkpoint's config");
    PyValue::List items;
    for (const auto& item : v.toListRef()) items.push_back(from_ivalue(item, depth + 1));
    return {items};
  }
  throw UserError("unsupported value in the checkpoint's config");
}

// A model_args field as torch.load reads it: lists of str as untagged lists, the rest as is.
c10::IValue model_arg_ivalue(const std::vector<std::string>& items) {
  GenericList list(c10::AnyType::get());
  for (auto& s : items) list.push_back(s);
  return list;
}
template <class T>
c10::IValue model_arg_ivalue(const T& value) {
  return value;
}

// Reading: each accessor names what is missing or of the wrong kind.
struct Reader {
  std::string path;
  [[noreturn]] void fail(const std::string& what) const {
    throw UserError("checkpoint " + path + " is invalid: " + what);
  }
  c10::IValue at(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto it = d.find(key);
    if (it == d.end()) fail("no '" + key + "' in " + where);
    return it->value();
  }
  GenericDict dict(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto v = at(d, key, where);
    if (!v.isGenericDict()) fail("'" + key + "' in " + where + " is not a dict");
    return v.toGenericDict();
  }
  int64_t integer(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto v = at(d, key, where);
    if (!v.isInt()) fail("'" + key + "' in " + where + " is not an int");
    return v.toInt();
  }
  double number(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto v = at(d, key, where);
    if (v.isInt()) return double(v.toInt());
    if (!v.isDouble()) fail("'" + key + "' in " + where + " is not a number");
    return v.toDouble();
  }
  std::string str(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto v = at(d, key, where);
    if (!v.isString()) fail("'" + key + "' in " + where + " is not a string");
    return v.toStringRef();
  }
  bool boolean(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto v = at(d, key, where);
    if (!v.isBool()) fail("'" + key + "' in " + where + " is not a bool");
    return v.toBool();
  }
  std::vector<std::string> strings(const GenericDict& d, const std::string& key, const std::string& where) const {
    auto v = from_ivalue(at(d, key, where));
    if (!v.is_list()) fail("'" + key + "' in " + where + " is not a list");
    std::vector<std::string> out;
    for (auto& t : std::get<PyValue::List>(v.v)) {
      if (!t.is_str()) fail("'" + key + "' in " + where + " holds a non-string");
      out.push_back(std::get<std::string>(t.v));
    }
    return out;
  }
  // One field of a known type, by that type.
  void read(const GenericDict& d, const std::string& key, int64_t& out) const { out = integer(d, key, "model_args"); }
  void read(const GenericDict& d, const std::string& key, double& out) const { out = number(d, key, "model_args"); }
  void read(const GenericDict& d, const std::string& key, bool& out) const { out = boolean(d, key, "model_args"); }
  void read(const GenericDict& d, const std::string& key, std::string& out) const { out = str(d, key, "model_args"); }
  void read(const GenericDict& d, const std::string& key, std::vector<std::string>& out) const {
    out = strings(d, key, "model_args");
  }
  torch::Tensor tensor(const c10::IValue& v, const std::string& what) const {
    if (!v.isTensor()) fail(what + " is not a tensor");
    return v.toTensor();
  }
};

// torch.save's zip format, without the TorchScript type tags that torch::pickle_save adds to
// dicts and lists (Python's weights-only torch.load, the default since PyTorch 2.6, refuses them).
std::vector<char> pickle_for_torch_load(const c10::IValue& root) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* buf, size_t n) { pickle.insert(pickle.end(), buf, buf + n); },
                              /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
                              /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(root);
  pickler.stop();
  std::vector<char> archive;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
    archive.insert(archive.end(), static_cast<const char*>(buf), static_cast<const char*>(buf) + n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  return archive;
}

}  // namespace

void save_checkpoint(const Checkpoint& ckpt, const std::string& path) {
  // torch.save writes whole storages: a tensor that is a view into a larger one (a parameter of
  // the optimizer's flat buffer, say) is copied out, so the file holds its elements only.
  auto cpu = [](const torch::Tensor& t) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    const bool owns_storage = c.storage_offset() == 0 && c.storage().nbytes() == size_t(c.numel()) * c.element_size();
    return owns_storage ? c : c.clone();
  };
  const auto& a = ckpt.model_args;

  auto model = new_dict();
  for (auto& [name, t] : ckpt.model) model.insert(name, cpu(t));

  auto state = new_dict();
  for (auto& [name, m] : ckpt.optimizer) {
    auto entry = new_dict();
    entry.insert("exp_avg", cpu(m.exp_avg));
    entry.insert("exp_avg_sq", cpu(m.exp_avg_sq));
    entry.insert("step", m.step);
    state.insert(name, entry);
  }
  auto optimizer = new_dict();
  optimizer.insert("state", state);

  auto args = new_dict();
#define DGPT_WRITE_MODEL_KEY(type, name, default_value, kind, help) args.insert(#name, model_arg_ivalue(a.name));
  DGPT_MODEL_KEYS(DGPT_WRITE_MODEL_KEY)
#undef DGPT_WRITE_MODEL_KEY
  args.insert("block_size", a.block_size);
  args.insert("vocab_size", a.vocab_size);

  auto config = new_dict();
  for (auto& [k, v] : ckpt.config) config.insert(k, to_ivalue(v));

  auto sampler = new_dict();
  sampler.insert("seed", ckpt.seed);
  sampler.insert("next_iter", ckpt.iter_num);

  auto root = new_dict();
  root.insert("model", model);
  root.insert("optimizer", optimizer);
  root.insert("model_args", args);
  root.insert("iter_num", ckpt.iter_num);
  root.insert("best_val_loss", ckpt.best_val_loss);
  root.insert("config", config);
  root.insert("sampler", sampler);
  if (ckpt.rng_state.defined()) root.insert("rng_state", cpu(ckpt.rng_state));

  const std::vector<char> bytes = pickle_for_torch_load(root);
  write_file_atomically(path, std::string(bytes.begin(), bytes.end()));
}

namespace {

// The bytes of a checkpoint file. Anything but a regular file (a FIFO, a directory, /dev/zero) is
// refused before a byte is read, and so is a size no checkpoint has: empty, smaller than a zip
// archive's end record, or bigger than this machine's memory (it is read whole).
std::vector<char> read_checkpoint_bytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw UserError("no checkpoint at " + path);
    throw UserError("cannot read checkpoint " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode))
    throw UserError("checkpoint " + path + " is not a regular file (" +
                    (S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket") +
                    "); nothing was read from it");
  const int64_t size = st.st_size;
  constexpr int64_t kZipEndRecord = 22;
  if (size < kZipEndRecord)
    throw UserError("checkpoint " + path + " is invalid: it has " + std::to_string(size) +
                    " bytes, too few for a torch.save archive");
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0 && size / page_size > pages)
    throw UserError("checkpoint " + path + " is invalid: it has " + std::to_string(size) +
                    " bytes, more than this machine's memory");
  const std::vector<char> bytes = read_whole_file(path, size, "cannot read checkpoint " + path + ": ");
  if (std::memcmp(bytes.data(), "PK\x03\x04", 4) != 0)
    throw UserError("checkpoint " + path + " is invalid: not a zip archive (the format of torch.save since PyTorch 1.6)");
  return bytes;
}

std::string shape_of(const torch::Tensor& t) {
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) out += (i ? ", " : "") + std::to_string(t.size(i));
  return out + "]";
}

// A tensor of weights or optimizer moments: floating point, finite.
void check_float_tensor(const Reader& r, const torch::Tensor& t, const std::string& what) {
  if (!at::isFloatingType(t.scalar_type()))
    r.fail(what + " has dtype " + std::string(c10::toString(t.scalar_type())) +
           "; weights and optimizer moments are floating point");
  if (t.layout() != torch::kStrided) r.fail(what + " is not a dense tensor");
  if (!torch::isfinite(t).all().item<bool>()) r.fail(what + " holds inf or nan");
}

// model_args as a model can be built from: the ranges and cross-key rules a config obeys
// (config.cpp's validate), block_types of n_layer known types, a positive vocab_size.
void check_model_args(const Reader& r, const ModelArgs& a) {
  if (int64_t(a.block_types.size()) != a.n_layer)
    r.fail("model_args: block_types has " + std::to_string(a.block_types.size()) + " entries but n_layer is " +
           std::to_string(a.n_layer));
  if (a.vocab_size <= 0) r.fail("model_args: vocab_size must be positive, got " + std::to_string(a.vocab_size));
  TrainConfig cfg;
#define DGPT_COPY_MODEL_KEY(type, name, default_value, kind, help) cfg.name = a.name;
  DGPT_MODEL_KEYS(DGPT_COPY_MODEL_KEY)
#undef DGPT_COPY_MODEL_KEY
  cfg.block_size = a.block_size;
  try {
    validate(cfg, known_block_types());
  } catch (const UserError& e) {
    r.fail(std::string("model_args: ") + e.what());
  }
}

// The weights describe the model of model_args: embeddings of [vocab_size, n_embd] and
// [block_size, n_embd], layers transformer.h.0 to h.<n_layer - 1>. This bounds what building the
// model allocates by what the file holds; the model checks every other shape when it loads them.
void check_weights_match_args(const Reader& r, const DenseState& model, const ModelArgs& a) {
  auto expect_shape = [&](const std::string& name, std::vector<int64_t> shape) {
    auto it = model.find(name);
    if (it == model.end()) r.fail("model has no tensor '" + name + "'");
    if (it->second.sizes().vec() != shape)
      r.fail("model['" + name + "'] has shape " + shape_of(it->second) + ", but model_args say [" +
             std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]");
  };
  expect_shape("transformer.wte.weight", {a.vocab_size, a.n_embd});
  expect_shape("transformer.wpe.weight", {a.block_size, a.n_embd});
  std::set<int64_t> layers;
  const std::string prefix = "transformer.h.";
  for (auto& [name, t] : model) {
    if (name.rfind(prefix, 0) != 0) continue;
    const size_t dot = name.find('.', prefix.size());
    const std::string index = name.substr(prefix.size(), dot == std::string::npos ? std::string::npos : dot - prefix.size());
    if (index.empty() || index.size() > 9 || index.find_first_not_of("0123456789") != std::string::npos)
      r.fail("unexpected tensor '" + name + "' in model");
    layers.insert(std::stoll(index));
  }
  if (int64_t(layers.size()) != a.n_layer || (!layers.empty() && *layers.rbegin() != a.n_layer - 1))
    r.fail("model holds " + std::to_string(layers.size()) + " layers, but model_args say n_layer = " +
           std::to_string(a.n_layer));
}

// nanoGPT's ckpt.pt (its train.py): model_args of nanoGPT's keys alone (no model_type: every dgpt
// checkpoint has one), the model's state dict as torch.compile may leave it, the optimizer's
// state keyed by PyTorch's parameter indices, tensors for the step counts and best_val_loss, no
// sampler. Rewritten here into dgpt's layout, which load_checkpoint then reads and checks as its own.
bool is_nanogpt_checkpoint(const GenericDict& root) {
  auto it = root.find("model_args");
  return it != root.end() && it->value().isGenericDict() && !it->value().toGenericDict().contains("model_type");
}

// transformer.h.<i>.attn.bias: the causal mask nanoGPT registers as a buffer under PyTorch < 2
// (no flash attention), not a parameter.
bool is_mask_buffer(const std::string& name) {
  const std::string prefix = "transformer.h.", suffix = ".attn.bias";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  const std::string index = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  return index.find_first_not_of("0123456789") == std::string::npos;
}

// A one-element tensor (a step count, best_val_loss) as a number; anything else as it is, for the
// checks that follow to name.
c10::IValue scalar_of(const c10::IValue& v, bool integral) {
  if (!v.isTensor() || v.toTensor().numel() != 1 || v.toTensor().is_complex()) return v;
  const double x = v.toTensor().to(torch::kDouble).item<double>();
  if (!integral) return x;
  if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9e15) return int64_t(x);
  return v;
}

// The integers of a list of ints, or nullopt.
std::optional<std::vector<int64_t>> int_list(const c10::IValue& v) {
  if (!v.isList()) return std::nullopt;
  std::vector<int64_t> out;
  for (const auto& item : v.toListRef()) {
    if (!item.isInt()) return std::nullopt;
    out.push_back(item.toInt());
  }
  return out;
}

std::optional<double> number_of(const GenericDict& d, const std::string& key) {
  auto it = d.find(key);
  if (it == d.end()) return std::nullopt;
  if (it->value().isDouble()) return it->value().toDouble();
  if (it->value().isInt()) return double(it->value().toInt());
  return std::nullopt;
}

// nanoGPT's configure_optimizers: the parameters in named_parameters order (the state dict's, the
// tied lm_head.weight once, as wte), group 0 those of dim >= 2 (decayed), group 1 the others, and
// PyTorch numbers them in that order. Returns why the optimizer's state does not fit that, or "".
std::string map_nanogpt_moments(const Reader& r, const GenericDict& optimizer, const std::vector<std::string>& params,
                                const GenericDict& model, GenericDict& state_out, Checkpoint& ckpt) {
  std::vector<std::string> order;
  for (int decayed = 1; decayed >= 0; --decayed)
    for (auto& name : params) {
      const auto v = model.at(name);
      const int64_t dim = v.isTensor() ? v.toTensor().dim() : 0;
      if ((dim >= 2) == bool(decayed)) order.push_back(name);
    }
  const size_t n_decay = std::count_if(params.begin(), params.end(), [&](const std::string& name) {
    const auto v = model.at(name);
    return v.isTensor() && v.toTensor().dim() >= 2;
  });
  const auto state = r.dict(optimizer, "state", "optimizer");
  auto groups_it = optimizer.find("param_groups");
  if (groups_it == optimizer.end() || !groups_it->value().isList()) return "it has no list of param_groups";
  std::vector<std::vector<int64_t>> groups;
  std::vector<GenericDict> group_dicts;
  for (const auto& g : groups_it->value().toListRef()) {
    if (!g.isGenericDict()) return "a param_group is not a dict";
    auto params_it = g.toGenericDict().find("params");
    auto ids = params_it == g.toGenericDict().end() ? std::nullopt : int_list(params_it->value());
    if (!ids) return "a param_group has no list of parameter indices";
    groups.push_back(*ids);
    group_dicts.push_back(g.toGenericDict());
  }
  const std::string expected = "nanoGPT's two groups for this model hold " + std::to_string(n_decay) + " and " +
                               std::to_string(order.size() - n_decay) + " parameters";
  if (groups.size() != 2) return "it has " + std::to_string(groups.size()) + " param_groups; " + expected;
  if (groups[0].size() != n_decay || groups[1].size() != order.size() - n_decay)
    return "its param_groups hold " + std::to_string(groups[0].size()) + " and " + std::to_string(groups[1].size()) +
           " parameters; " + expected;
  int64_t next = 0;
  for (auto& g : groups)
    for (int64_t id : g)
      if (id != next++) return "its param_groups do not number the parameters 0, 1, 2, ... in order";
  // Every state entry: a parameter index, moments of that parameter's shape.
  std::vector<std::pair<std::string, GenericDict>> entries;
  for (const auto& kv : state) {
    if (!kv.key().isInt() || kv.key().toInt() < 0 || kv.key().toInt() >= int64_t(order.size()))
      return "its state has a key that is not a parameter index";
    const std::string& name = order[size_t(kv.key().toInt())];
    if (!kv.value().isGenericDict()) r.fail("optimizer state of parameter " + std::to_string(kv.key().toInt()) + " is not a dict");
    const auto entry = kv.value().toGenericDict();
    const torch::Tensor weights = model.at(name).isTensor() ? model.at(name).toTensor() : torch::Tensor();
    for (const char* key : {"exp_avg", "exp_avg_sq"}) {
      auto m = entry.find(key);
      if (m != entry.end() && m->value().isTensor() && weights.defined() && m->value().toTensor().sizes() != weights.sizes())
        return "the " + std::string(key) + " of parameter " + std::to_string(kv.key().toInt()) + " has shape " +
               shape_of(m->value().toTensor()) + ", but nanoGPT's parameter " + std::to_string(kv.key().toInt()) +
               " (" + name + ") has " + shape_of(weights);
    }
    entries.emplace_back(name, entry);
  }
  for (auto& [name, entry] : entries) {
    auto out = new_dict();
    for (const char* key : {"exp_avg", "exp_avg_sq"})
      if (entry.contains(key)) out.insert(key, entry.at(key));
    if (entry.contains("step")) out.insert("step", scalar_of(entry.at("step"), /*integral=*/true));
    state_out.insert(name, out);
  }
  // The settings nanoGPT's load_state_dict would restore (group 1 has no weight decay).
  const auto wd = number_of(group_dicts[0], "weight_decay"), eps = number_of(group_dicts[0], "eps");
  auto betas = group_dicts[0].find("betas");
  if (wd && eps && betas != group_dicts[0].end() && betas->value().isTuple() &&
      betas->value().toTupleRef().elements().size() == 2) {
    const auto& b = betas->value().toTupleRef().elements();
    if ((b[0].isDouble() || b[0].isInt()) && (b[1].isDouble() || b[1].isInt()))
      ckpt.nanogpt_adamw = Checkpoint::AdamWSettings{*wd, b[0].isDouble() ? b[0].toDouble() : double(b[0].toInt()),
                                                     b[1].isDouble() ? b[1].toDouble() : double(b[1].toInt()), *eps};
  }
  return "";
}

GenericDict from_nanogpt(const Reader& r, const GenericDict& root, Checkpoint& ckpt) {
  auto out = new_dict();
  auto model = new_dict();
  std::vector<std::string> params;  // named_parameters order
  for (const auto& kv : r.dict(root, "model", "the checkpoint")) {
    if (!kv.key().isString()) r.fail("model has a key that is not a string");
    std::string name = kv.key().toStringRef();
    const std::string compiled = "_orig_mod.";  // torch.compile's wrapper, which nanoGPT strips as well
    if (name.rfind(compiled, 0) == 0) name = name.substr(compiled.size());
    if (model.contains(name)) r.fail("model holds '" + name + "' twice, with and without torch.compile's '_orig_mod.'");
    if (is_mask_buffer(name)) continue;
    model.insert(name, kv.value());
    if (name != "lm_head.weight") params.push_back(name);
  }
  // dgpt's GPT ties lm_head to wte, as nanoGPT's does: an untied lm_head is another model.
  if (model.contains("lm_head.weight") && model.contains("transformer.wte.weight")) {
    const auto lm = model.at("lm_head.weight"), wte = model.at("transformer.wte.weight");
    if (lm.isTensor() && wte.isTensor() && at::isFloatingType(lm.toTensor().scalar_type()) &&
        lm.toTensor().scalar_type() == wte.toTensor().scalar_type() &&
        (lm.toTensor().sizes() != wte.toTensor().sizes() || !torch::equal(lm.toTensor(), wte.toTensor())))
      r.fail("lm_head.weight differs from transformer.wte.weight; dgpt's GPT ties them, as nanoGPT's does");
  }
  out.insert("model", model);

  auto state = new_dict();
  const std::string why_not = map_nanogpt_moments(r, r.dict(root, "optimizer", "the checkpoint"), params, model, state, ckpt);
  if (!why_not.empty()) {
    state = new_dict();
    ckpt.nanogpt_adamw.reset();
    ckpt.notices.push_back(r.path + " is a nanoGPT checkpoint whose AdamW state does not follow nanoGPT's parameter "
                           "groups (" + why_not + "): the optimizer restarts from zero moments");
  } else {
    ckpt.notices.push_back(r.path + " is a nanoGPT checkpoint: read as the dense 'gpt' model, the AdamW moments of " +
                           std::to_string(state.size()) + " tensors mapped by name from nanoGPT's parameter groups");
  }
  auto optimizer = new_dict();
  optimizer.insert("state", state);
  out.insert("optimizer", optimizer);

  out.insert("model_args", r.at(root, "model_args", "the checkpoint"));
  out.insert("iter_num", r.at(root, "iter_num", "the checkpoint"));
  out.insert("best_val_loss", scalar_of(r.at(root, "best_val_loss", "the checkpoint"), /*integral=*/false));
  out.insert("config", r.at(root, "config", "the checkpoint"));
  auto sampler = new_dict();
  sampler.insert("seed", int64_t{1337});  // nanoGPT's train.py seeds with 1337 (+ the rank)
  out.insert("sampler", sampler);
  return out;
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  const std::vector<char> bytes = read_checkpoint_bytes(path);
  Reader r{path};
  c10::IValue root_value;
  try {
    root_value = parse_torch_save(bytes.data(), bytes.size());  // never executes anything (torch_pickle.h)
  } catch (const TorchSaveError& e) {
    r.fail(e.what());
  } catch (const std::exception& e) {
    r.fail("not a readable torch checkpoint (" + first_line(e.what()) + ")");
  }
  if (!root_value.isGenericDict()) r.fail("the top level is not a dict");
  auto root = root_value.toGenericDict();

  Checkpoint ckpt;
  const bool nanogpt = is_nanogpt_checkpoint(root);
  if (nanogpt) root = from_nanogpt(r, root, ckpt);
  const auto args = r.dict(root, "model_args", "the checkpoint");
  auto& a = ckpt.model_args;
  // Keys added after the first checkpoints were written keep their default when absent: such a
  // checkpoint was written before the feature existed, so it did not use it. nanoGPT's model_args
  // have none of dgpt's keys: its model is the dense 'gpt' (block_types all 'tp').
  const auto optional_key = [&](const std::string& key) {
    return key == "vocab_parallel" || key == "activation" ||
           (nanogpt && (key == "model_type" || key == "tp_size" || key == "block_types" || key == "parallel_merge"));
  };
#define DGPT_READ_MODEL_KEY(type, name, default_value, kind, help) \
  if (!optional_key(#name) || args.contains(#name)) r.read(args, #name, a.name);
  DGPT_MODEL_KEYS(DGPT_READ_MODEL_KEY)
#undef DGPT_READ_MODEL_KEY
  a.block_size = r.integer(args, "block_size", "model_args");
  a.vocab_size = r.integer(args, "vocab_size", "model_args");
  if (nanogpt && !args.contains("block_types") && a.n_layer > 0 && a.n_layer <= (int64_t{1} << 20))
    a.block_types.assign(size_t(a.n_layer), ModelArgs::kBaselineBlockType);
  check_model_args(r, a);

  for (const auto& kv : r.dict(root, "model", "the checkpoint")) {
    if (!kv.key().isString()) r.fail("model has a key that is not a string");
    const std::string name = kv.key().toStringRef();
    const std::string what = "model['" + name + "']";
    ckpt.model[name] = r.tensor(kv.value(), what);
    check_float_tensor(r, ckpt.model[name], what);
  }
  check_weights_match_args(r, ckpt.model, a);
  const auto optimizer = r.dict(root, "optimizer", "the checkpoint");
  for (const auto& kv : r.dict(optimizer, "state", "optimizer")) {
    if (!kv.key().isString()) r.fail("optimizer state has a key that is not a string");
    const std::string name = kv.key().toStringRef();
    if (!kv.value().isGenericDict()) r.fail("optimizer state of " + name + " is not a dict");
    const auto entry = kv.value().toGenericDict();
    auto weights = ckpt.model.find(name);
    if (weights == ckpt.model.end()) r.fail("optimizer state of " + name + ", a tensor the model does not have");
    AdamMoments m{r.tensor(r.at(entry, "exp_avg", name), "exp_avg of " + name),
                  r.tensor(r.at(entry, "exp_avg_sq", name), "exp_avg_sq of " + name), r.integer(entry, "step", name)};
    for (auto [t, what] : {std::pair{m.exp_avg, "exp_avg of "}, std::pair{m.exp_avg_sq, "exp_avg_sq of "}}) {
      check_float_tensor(r, t, what + name);
      if (t.sizes() != weights->second.sizes())
        r.fail(what + name + " has shape " + shape_of(t) + ", the weights " + shape_of(weights->second));
    }
    if ((m.exp_avg_sq < 0).any().item<bool>()) r.fail("exp_avg_sq of " + name + " has negative entries");
    if (m.step < 0) r.fail("optimizer step of " + name + " is negative (" + std::to_string(m.step) + ")");
    ckpt.optimizer[name] = m;
  }
  ckpt.iter_num = r.integer(root, "iter_num", "the checkpoint");
  if (ckpt.iter_num < 0) r.fail("iter_num must be >= 0, got " + std::to_string(ckpt.iter_num));
  ckpt.best_val_loss = r.number(root, "best_val_loss", "the checkpoint");
  if (std::isnan(ckpt.best_val_loss)) r.fail("best_val_loss is nan");
  for (const auto& kv : r.dict(root, "config", "the checkpoint")) {
    if (!kv.key().isString()) r.fail("config has a key that is not a string");
    try {
      ckpt.config.emplace_back(kv.key().toStringRef(), from_ivalue(kv.value()));
    } catch (const UserError& e) {
      r.fail(std::string(e.what()) + " (key '" + kv.key().toStringRef() + "')");
    }
  }
  const auto sampler = r.dict(root, "sampler", "the checkpoint");
  ckpt.seed = r.integer(sampler, "seed", "sampler");
  auto rng = root.find("rng_state");
  if (rng != root.end()) {
    ckpt.rng_state = r.tensor(rng->value(), "rng_state");
    // What torch's CPU generator accepts back: its own state, a byte tensor of a fixed length.
    const torch::Tensor expected = at::detail::getDefaultCPUGenerator().get_state();
    if (ckpt.rng_state.scalar_type() != torch::kByte || ckpt.rng_state.dim() != 1 ||
        ckpt.rng_state.numel() != expected.numel())
      r.fail("rng_state is a " + std::string(c10::toString(ckpt.rng_state.scalar_type())) + " tensor of shape " +
             shape_of(ckpt.rng_state) + ", not the CPU generator's state (uint8, [" +
             std::to_string(expected.numel()) + "])");
  }
  return ckpt;
}

}  // namespace dgpt
