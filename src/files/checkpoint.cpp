#include "files/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "blocks/block.h"
#include "config/config.h"
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

namespace {

// The bytes of a checkpoint file. Anything but a regular file (a FIFO, a directory, /dev/zero) is
// refused before a byte is read, and so is a size no checkpoint has: empty, smaller than a zip
// archive's end record, or bigger than this machine's memory (it is read whole).
std::vector<char> read_checkpoint_bytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw UserError("no checkpoint at " + path + " (train with init_from='scratch' first)");
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
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw UserError("cannot read checkpoint " + path + ": " + std::strerror(errno));
  std::vector<char> bytes(static_cast<size_t>(size));
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "the file shrank while it was read";
      ::close(fd);
      throw UserError("cannot read checkpoint " + path + ": " + why);
    }
    got += size_t(n);
  }
  ::close(fd);
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

}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  const std::vector<char> bytes = read_checkpoint_bytes(path);
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
  // Keys added after the first checkpoints were written keep their default when absent: such a
  // checkpoint was written before the feature existed, so it did not use it.
  const auto added_later = [](const std::string& key) { return key == "vocab_parallel"; };
#define DGPT_READ_MODEL_KEY(type, name, default_value, kind, help) \
  if (!added_later(#name) || args.contains(#name)) r.read(args, #name, a.name);
  DGPT_MODEL_KEYS(DGPT_READ_MODEL_KEY)
#undef DGPT_READ_MODEL_KEY
  a.block_size = r.integer(args, "block_size", "model_args");
  a.vocab_size = r.integer(args, "vocab_size", "model_args");
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
