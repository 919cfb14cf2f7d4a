#include "files/checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <fstream>
#include <iterator>

#include "files/atomic_file.h"

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

PyValue from_ivalue(const c10::IValue& v) {
  if (v.isNone()) return {};
  if (v.isBool()) return {v.toBool()};
  if (v.isInt()) return {v.toInt()};
  if (v.isDouble()) return {v.toDouble()};
  if (v.isString()) return {v.toStringRef()};
  if (v.isList()) {
    PyValue::List items;
    for (const auto& item : v.toListRef()) items.push_back(from_ivalue(item));
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
  auto cpu = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU).contiguous(); };
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

Checkpoint load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("no checkpoint at " + path + " (train with init_from='scratch' first)");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reader r{path};
  c10::IValue root_value;
  try {
    root_value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    r.fail("not a readable torch checkpoint (" + msg.substr(0, msg.find('\n')) + ")");
  }
  if (!root_value.isGenericDict()) r.fail("the top level is not a dict");
  const auto root = root_value.toGenericDict();

  Checkpoint ckpt;
  const auto args = r.dict(root, "model_args", "the checkpoint");
  auto& a = ckpt.model_args;
#define DGPT_READ_MODEL_KEY(type, name, default_value, kind, help) r.read(args, #name, a.name);
  DGPT_MODEL_KEYS(DGPT_READ_MODEL_KEY)
#undef DGPT_READ_MODEL_KEY
  a.block_size = r.integer(args, "block_size", "model_args");
  a.vocab_size = r.integer(args, "vocab_size", "model_args");
  if (int64_t(a.block_types.size()) != a.n_layer) r.fail("block_types does not have n_layer entries");

  for (const auto& kv : r.dict(root, "model", "the checkpoint"))
    ckpt.model[kv.key().toStringRef()] = r.tensor(kv.value(), "model['" + kv.key().toStringRef() + "']");
  const auto optimizer = r.dict(root, "optimizer", "the checkpoint");
  for (const auto& kv : r.dict(optimizer, "state", "optimizer")) {
    const std::string name = kv.key().toStringRef();
    if (!kv.value().isGenericDict()) r.fail("optimizer state of " + name + " is not a dict");
    const auto entry = kv.value().toGenericDict();
    ckpt.optimizer[name] = {r.tensor(r.at(entry, "exp_avg", name), "exp_avg of " + name),
                            r.tensor(r.at(entry, "exp_avg_sq", name), "exp_avg_sq of " + name),
                            r.integer(entry, "step", name)};
  }
  ckpt.iter_num = r.integer(root, "iter_num", "the checkpoint");
  ckpt.best_val_loss = r.number(root, "best_val_loss", "the checkpoint");
  for (const auto& kv : r.dict(root, "config", "the checkpoint"))
    ckpt.config.emplace_back(kv.key().toStringRef(), from_ivalue(kv.value()));
  const auto sampler = r.dict(root, "sampler", "the checkpoint");
  ckpt.seed = r.integer(sampler, "seed", "sampler");
  auto rng = root.find("rng_state");
  if (rng != root.end()) ckpt.rng_state = r.tensor(rng->value(), "rng_state");
  return ckpt;
}

}  // namespace dgpt
