// files/torch_pickle.h, the reader of torch.save files: dgpt's own checkpoints read exactly as
// LibTorch's torch::pickle_load reads them (value for value, tensor for tensor); hand-made
// pickles of protocols 2 to 5 (frames, memo opcodes, STACK_GLOBAL, LONG1, bytes, nested
// containers, tensors with strides and offsets sharing one storage, parameters); and fuzzing: every
// truncation and thousands of random byte changes of a checkpoint's pickle and of its zip
// archive either read or throw TorchSaveError, nothing else (no crash, no other exception).
#include <catch2/catch.hpp>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "files/checkpoint.h"
#include "files/torch_pickle.h"
#include "model/model.h"

using namespace dgpt;
using namespace std::string_literals;

namespace {

// A torch.save-style archive (LibTorch's own zip writer) of data.pkl and storages data/<key>.
std::string archive_of(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages = {},
                       const std::vector<std::pair<std::string, std::string>>& records = {}) {
  std::string out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
    out.append(static_cast<const char*>(buf), n);
    return n;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (auto& [key, bytes] : storages) writer.writeRecord("data/" + key, bytes.data(), bytes.size());
  for (auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
  writer.writeEndOfFile();
  return out;
}

c10::IValue parse(const std::string& file) { return parse_torch_save(file.data(), file.size()); }

std::string u32(uint32_t v) { return std::string{char(v & 255), char((v >> 8) & 255), char((v >> 16) & 255), char(v >> 24)}; }
std::string str(const std::string& s) { return "X" + u32(uint32_t(s.size())) + s; }
std::string global(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
std::string binint(int32_t v) { return "J" + u32(uint32_t(v)); }
std::string tuple(const std::vector<std::string>& items) {
  std::string out = "(";
  for (auto& i : items) out += i;
  return out + "t";
}
// _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
// (legacy: the persistent id of torch.save's format before PyTorch 1.6, with view_metadata None)
std::string tensor(const std::string& key, int32_t numel, int32_t offset, std::vector<int32_t> size,
                   std::vector<int32_t> stride, const std::string& type = "FloatStorage", bool legacy = false) {
  std::vector<std::string> sizes, strides;
  for (auto s : size) sizes.push_back(binint(s));
  for (auto s : stride) strides.push_back(binint(s));
  std::vector<std::string> pid{str("storage"), global("torch", type), str(key), str("cpu"), binint(numel)};
  if (legacy) pid.push_back("N");
  return global("torch._utils", "_rebuild_tensor_v2") +
         tuple({tuple(pid) + "Q", binint(offset),
                tuple(sizes), tuple(strides), "\x89", global("collections", "OrderedDict") + ")R"}) +
         "R";
}

std::string floats(std::vector<float> v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

// Two values alike: the same kinds, dict keys in the same order, tensors of one dtype, shape and values.
void require_same(const c10::IValue& a, const c10::IValue& b, const std::string& where) {
  INFO(where << ": " << a.tagKind() << " vs " << b.tagKind());
  REQUIRE(a.tagKind() == b.tagKind());
  if (a.isGenericDict()) {
    auto da = a.toGenericDict(), db = b.toGenericDict();
    REQUIRE(da.size() == db.size());
    auto ia = da.begin();
    auto ib = db.begin();
    for (; ia != da.end(); ++ia, ++ib) {
      require_same(ia->key(), ib->key(), where + " key");
      require_same(ia->value(), ib->value(), where + "[" + (ia->key().isString() ? ia->key().toStringRef() : "?") + "]");
    }
  } else if (a.isList()) {
    auto la = a.toListRef(), lb = b.toListRef();
    REQUIRE(la.size() == lb.size());
    for (size_t i = 0; i < la.size(); ++i) require_same(la[i], lb[i], where + "[" + std::to_string(i) + "]");
  } else if (a.isTuple()) {
    auto& ta = a.toTupleRef().elements();
    auto& tb = b.toTupleRef().elements();
    REQUIRE(ta.size() == tb.size());
    for (size_t i = 0; i < ta.size(); ++i) require_same(ta[i], tb[i], where + "(" + std::to_string(i) + ")");
  } else if (a.isTensor()) {
    const auto& x = a.toTensor();
    const auto& y = b.toTensor();
    REQUIRE(x.scalar_type() == y.scalar_type());
    REQUIRE(x.sizes() == y.sizes());
    REQUIRE(x.strides() == y.strides());
    REQUIRE(torch::equal(x, y));
  } else if (a.isDouble()) {
    const double x = a.toDouble(), y = b.toDouble();
    REQUIRE(std::memcmp(&x, &y, 8) == 0);
  } else {
    REQUIRE(a == b);
  }
}

std::string temp_path(const std::string& stem) {
  const char* tmpdir = std::getenv("TMPDIR");
  return std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/" + stem + "_" + std::to_string(::getpid()) + ".pt";
}

std::string read_file(const std::string& path) {
  std::string out;
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f);
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

// A small dgpt checkpoint, as train writes it.
std::string dgpt_checkpoint_bytes() {
  ModelArgs a;
  a.n_layer = 2;
  a.n_head = 2;
  a.n_embd = 8;
  a.block_size = 8;
  a.vocab_size = 11;
  a.bias = true;
  a.model_type = "distributed_gpt";
  a.tp_size = 2;
  a.block_types = {"tp", "spd"};
  Checkpoint ck;
  ck.model_args = a;
  ck.model = init_dense_weights(a, 5);
  ck.model["lm_head.weight"] = ck.model["transformer.wte.weight"];
  for (auto& [name, t] : ck.model)
    if (name != "lm_head.weight") ck.optimizer[name] = {torch::randn_like(t), torch::rand_like(t), 7};
  ck.iter_num = 7;
  ck.best_val_loss = 1.25;
  ck.config = {{"out_dir", PyValue{std::string("out")}}, {"block_types", PyValue{PyValue::List{PyValue{std::string("tp")}, PyValue{std::string("spd")}}}},
               {"dropout", PyValue{0.1}}, {"bias", PyValue{true}}, {"wandb_log", PyValue{}}, {"max_iters", PyValue{int64_t{-3}}}};
  ck.seed = 1337;
  ck.rng_state = at::detail::getDefaultCPUGenerator().get_state();
  const std::string path = temp_path("dgpt_torch_pickle");
  save_checkpoint(ck, path);
  std::string bytes = read_file(path);
  std::remove(path.c_str());
  return bytes;
}

// The archive's data.pkl and storages, to build it again around a changed pickle.
struct Unzipped {
  std::string pickle;
  std::vector<std::pair<std::string, std::string>> storages;
};
Unzipped unzip(const std::string& file) {
  std::istringstream in(file);
  caffe2::serialize::PyTorchStreamReader reader(&in);
  Unzipped out;
  auto [pkl, n] = reader.getRecord("data.pkl");
  out.pickle.assign(static_cast<const char*>(pkl.get()), n);
  for (const auto& name : reader.getAllRecords())
    if (name.rfind("data/", 0) == 0) {
      auto [data, size] = reader.getRecord(name);
      out.storages.emplace_back(name.substr(5), std::string(static_cast<const char*>(data.get()), size));
    }
  return out;
}

// Parses `file`: fine, or a TorchSaveError; anything else fails the test.
bool parses_or_refuses(const std::string& file) {
  try {
    parse(file);
    return true;
  } catch (const TorchSaveError&) {
    return false;
  }
}

}  // namespace

TEST_CASE("dgpt's own checkpoints read exactly as LibTorch's unpickler reads them", "[torch_pickle]") {
  const std::string file = dgpt_checkpoint_bytes();
  const c10::IValue mine = parse(file);
  const c10::IValue libtorch = torch::pickle_load(std::vector<char>(file.begin(), file.end()));
  require_same(mine, libtorch, "checkpoint");
  // and the tied lm_head is the same storage as wte, as torch.load gives it
  auto model = mine.toGenericDict().at("model").toGenericDict();
  CHECK(model.at("lm_head.weight").toTensor().data_ptr() == model.at("transformer.wte.weight").toTensor().data_ptr());
}

TEST_CASE("Hand-made pickles of protocols 2 to 5", "[torch_pickle]") {
  SECTION("scalars, strings, bytes, containers, memo opcodes") {
    // PROTO 5, FRAME, MEMOIZE, STACK_GLOBAL, LONG1, BININT, BINFLOAT, SHORT_BINBYTES, lists, TUPLE3, DICT with
    // int keys, BINGET, LONG_BINPUT/LONG_BINGET, POP, SETITEMS into an OrderedDict, BUILD with an empty state.
    std::string p = "\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00"s +
                    "\x8c\x0b" "collections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94(" +
                    "\x8c\x01" "a" + std::string("\x8a\x06\x00\x00\x00\x00\x00\xff", 8) +
                    "\x8c\x01" "b" + binint(-7) + "\x8c\x01" "c" + std::string("G\x3f\xf8\x00\x00\x00\x00\x00\x00", 9) +
                    "\x8c\x01" "d" + std::string("C\x03\x00\x01\xff", 5) +
                    "\x8c\x01" "e" + std::string("]\x94(\x88\x89NK\x05M\x00\x01" "e", 12) +
                    "\x8c\x01" "f" + "K\x01K\x02K\x03\x87" +
                    "\x8c\x01" "g" + "(K\x01X\x01\x00\x00\x00xK\x02X\x01\x00\x00\x00yd"s +
                    "\x8c\x01" "h" + "h\x01" +
                    "\x8c\x01" "i" + std::string("K\x09r\x00\x01\x00\x00\x30j\x00\x01\x00\x00", 13) +
                    "u" "}" "b" ".";
    const auto v = parse(archive_of(p));
    REQUIRE(v.isGenericDict());
    const auto d = v.toGenericDict();
    std::vector<std::string> keys;
    for (const auto& kv : d) keys.push_back(kv.key().toStringRef());
    CHECK(keys == std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h", "i"});
    CHECK(d.at("a").toInt() == -(int64_t{1} << 40));
    CHECK(d.at("b").toInt() == -7);
    CHECK(d.at("c").toDouble() == 1.5);
    CHECK(d.at("d").toStringRef() == std::string("\x00\x01\xff", 3));
    const auto e = d.at("e").toListRef();
    REQUIRE(e.size() == 5);
    CHECK(e[0].toBool());
    CHECK(!e[1].toBool());
    CHECK(e[2].isNone());
    CHECK(e[3].toInt() == 5);
    CHECK(e[4].toInt() == 256);
    const auto& f = d.at("f").toTupleRef().elements();
    CHECK((f.size() == 3 && f[2].toInt() == 3));
    const auto g = d.at("g").toGenericDict();
    CHECK(g.at(int64_t{1}).toStringRef() == "x");
    CHECK(g.at(int64_t{2}).toStringRef() == "y");
    CHECK(d.at("h").toStringRef() == "OrderedDict");
    CHECK(d.at("i").toInt() == 9);
  }

  SECTION("tensors: strides, offsets, a shared storage, dtypes, parameters") {
    const std::string p = std::string("\x80\x02}(") + str("t") + tensor("0", 6, 0, {3, 2}, {1, 3}) +  // transposed
                          str("u") + tensor("0", 6, 4, {2}, {1}) +                                    // offset 4
                          str("s") + tensor("0", 6, 5, {}, {}) +                                      // 0-dim
                          str("e") + tensor("0", 6, 6, {0, 3}, {3, 1}) +                              // empty at the end
                          str("l") + tensor("1", 2, 0, {2}, {1}, "LongStorage") +
                          str("p") + global("torch._utils", "_rebuild_parameter") + "(" +
                          tensor("1", 2, 1, {1}, {1}, "LongStorage") + "\x88" + global("collections", "OrderedDict") +
                          ")Rt" "R" + "u.";
    const std::string longs("\x05\0\0\0\0\0\0\0\xf9\xff\xff\xff\xff\xff\xff\xff", 16);
    const auto d = parse(archive_of(p, {{"0", floats({0, 1, 2, 3, 4, 5})}, {"1", longs}})).toGenericDict();
    const auto t = d.at("t").toTensor();
    CHECK(t.sizes() == c10::IntArrayRef{3, 2});
    CHECK(torch::equal(t, torch::tensor({0.f, 1.f, 2.f, 3.f, 4.f, 5.f}).view({2, 3}).t()));
    CHECK(torch::equal(d.at("u").toTensor(), torch::tensor({4.f, 5.f})));
    CHECK(d.at("s").toTensor().dim() == 0);
    CHECK(d.at("s").toTensor().item<float>() == 5.f);
    CHECK(d.at("e").toTensor().numel() == 0);
    CHECK(t.storage().data() == d.at("u").toTensor().storage().data());  // one storage, as torch.load's
    CHECK(d.at("l").toTensor().scalar_type() == torch::kLong);
    CHECK(d.at("l").toTensor()[1].item<int64_t>() == -7);
    CHECK(d.at("p").toTensor().item<int64_t>() == -7);
  }

  SECTION("_codecs.encode bytes and _rebuild_from_type_v2") {
    const std::string p = std::string("\x80\x02}(") + str("b") + global("_codecs", "encode") +
                          tuple({str("\x01\xc3\xbf"), str("latin1")}) + "R" + str("t") +
                          global("torch._tensor", "_rebuild_from_type_v2") +
                          tuple({global("torch._utils", "_rebuild_tensor_v2"), global("torch._tensor", "Tensor"),
                                 tuple({tuple({str("storage"), global("torch", "FloatStorage"), str("0"), str("cpu"),
                                               binint(1)}) + "Q", binint(0), "(t", "(t", "\x89",
                                        global("collections", "OrderedDict") + ")R"}),
                                 "}"}) +
                          "Ru.";
    const auto d = parse(archive_of(p, {{"0", floats({2.5})}})).toGenericDict();
    CHECK(d.at("b").toStringRef() == std::string("\x01\xff", 2));
    CHECK(d.at("t").toTensor().item<float>() == 2.5f);
  }

  SECTION("what is refused, by name") {
    auto refusal = [](const std::string& file) -> std::string {
      try {
        parse(file);
      } catch (const TorchSaveError& e) {
        return e.what();
      }
      return "(read)";
    };
    CHECK_THAT(refusal(archive_of("\x80\x02" + global("os", "system") + str("true") + "\x85R.")),
               Catch::Contains("'os.system'"));
    CHECK_THAT(refusal(archive_of("\x80\x02" + global("torch", "load") + ".")), Catch::Contains("'torch.load'"));
    CHECK_THAT(refusal(archive_of("\x80\x02" + global("torch", "FloatStorage") + ".")),
               Catch::Contains("as a value"));
    CHECK_THAT(refusal(archive_of("\x80\x02" + global("collections", "OrderedDict") + tuple({binint(1)}) + "R.")),
               Catch::Contains("collections.OrderedDict with 1 arguments"));
    CHECK_THAT(refusal(archive_of("\x80\x02(" + str("x") + "b.")), Catch::Contains("BUILD"));
    CHECK_THAT(refusal(archive_of("\x80\x02}" + str("w") + tensor("0", 4, 0, {4}, {1}) + "s.",
                                  {{"0", floats({1, 2, 3})}})),
               Catch::Contains("holds 12 bytes"));
    CHECK_THAT(refusal(archive_of("\x80\x02}" + str("w") + tensor("0", 4, 0, {4}, {1}) + str("v") +
                                      tensor("0", 4, 0, {2}, {1}) + "s.",
                                  {{"0", floats({1, 2, 3, 4})}})),
               Catch::Contains("SETITEM opcode adds to a tensor"));  // (a stack one key short)
    CHECK_THAT(refusal(archive_of("\x80\x02}(" + str("w") + tensor("0", 4, 0, {4}, {1}) + str("v") +
                                      tensor("0", 4, 0, {2}, {1}, "IntStorage") + "u.",
                                  {{"0", floats({1, 2, 3, 4})}})),
               Catch::Contains("two types or sizes"));
    // PyTorch 2's byteorder record: "little" is read, "big" refused
    CHECK(parse(archive_of("\x80\x02N.", {}, {{"byteorder", "little"}})).isNone());
    CHECK_THAT(refusal(archive_of("\x80\x02N.", {}, {{"byteorder", "big"}})), Catch::Contains("byte order is 'big'"));
    // a 0-dim tensor past its storage (found by fuzzing under AddressSanitizer)
    CHECK_THAT(refusal(archive_of("\x80\x02}" + str("w") + tensor("0", 1, 41, {}, {}) + "s.", {{"0", floats({1})}})),
               Catch::Contains("reaches past"));
    CHECK_THAT(refusal(std::string("PK\x03\x04", 4) + std::string(100, '\0')), Catch::Contains("end-of-central-directory"));
    CHECK_THAT(refusal("not a zip at all"), Catch::Contains("not a zip archive"));
  }
}

TEST_CASE("torch.save's format before PyTorch 1.6 (pytorch_model.bin of older uploads)", "[torch_pickle]") {
  auto u64 = [](uint64_t v) { return u32(uint32_t(v)) + u32(uint32_t(v >> 32)); };
  auto legacy = [&](const std::string& sys_info_tail, const std::vector<std::string>& keys, int64_t k1_numel) {
    std::string keys_pickle = "\x80\x02](";
    for (auto& k : keys) keys_pickle += str(k);
    const unsigned char magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    return std::string(reinterpret_cast<const char*>(magic), sizeof magic) + "\x80\x02M\xe9\x03." +  // version 1001
           "\x80\x02}(" + str("protocol_version") + "M\xe9\x03" + str("little_endian") + sys_info_tail +
           str("type_sizes") + "}(" + str("short") + "K\x02" + str("int") + "K\x04" + str("long") + "K\x04" + "uu." +
           "\x80\x02}(" + str("a") + tensor("k1", 6, 0, {2, 3}, {3, 1}, "FloatStorage", true) + str("v") +
           tensor("k1", 6, 4, {2}, {1}, "FloatStorage", true) + str("b") +
           tensor("k2", 2, 0, {2}, {1}, "LongStorage", true) + "u." + keys_pickle + "e." +
           u64(uint64_t(k1_numel)) + floats({0, 1, 2, 3, 4, 5}) + u64(2) + "\x05\0\0\0\0\0\0\0\xf9\xff\xff\xff\xff\xff\xff\xff"s;
  };
  const std::string good = legacy("\x88", {"k1", "k2"}, 6);
  const auto d = parse(good).toGenericDict();
  CHECK(torch::equal(d.at("a").toTensor(), torch::arange(6, torch::kFloat).view({2, 3})));
  CHECK(torch::equal(d.at("v").toTensor(), torch::tensor({4.f, 5.f})));
  CHECK(d.at("a").toTensor().storage().data() == d.at("v").toTensor().storage().data());
  CHECK(d.at("b").toTensor()[1].item<int64_t>() == -7);
  auto refusal = [](const std::string& file) -> std::string {
    try {
      parse(file);
    } catch (const TorchSaveError& e) {
      return e.what();
    }
    return "(read)";
  };
  CHECK_THAT(refusal(legacy("\x89", {"k1", "k2"}, 6)), Catch::Contains("big-endian"));
  CHECK_THAT(refusal(legacy("\x88", {"k1", "k2"}, 5)), Catch::Contains("holds 5 elements"));
  CHECK_THAT(refusal(legacy("\x88", {"k1"}, 6)), Catch::Contains("1 of the 2 storages"));
  CHECK_THAT(refusal(legacy("\x88", {"k1", "k3"}, 6)), Catch::Contains("does not use"));
  CHECK_THAT(refusal(legacy("\x88", {"k1", "k1"}, 6)), Catch::Contains("twice"));
  for (size_t n = 0; n < good.size(); ++n) CHECK_FALSE(parses_or_refuses(good.substr(0, n)));
  std::mt19937_64 rng(7);
  for (int k = 0; k < 3000; ++k) {
    std::string f = good;
    for (int c = 0; c < 1 + int(rng() % 4); ++c) f[15 + rng() % (f.size() - 15)] = char(rng() % 256);
    parses_or_refuses(f);
  }
}

TEST_CASE("Corrupt pickles and archives are read or refused, never a crash", "[torch_pickle]") {
  const std::string file = dgpt_checkpoint_bytes();
  const Unzipped parts = unzip(file);
  std::mt19937_64 rng(2024);
  int read = 0, refused = 0;
  // every truncation of the pickle
  for (size_t n = 0; n < parts.pickle.size(); ++n)
    (parses_or_refuses(archive_of(parts.pickle.substr(0, n), parts.storages)) ? read : refused)++;
  CHECK(read == 0);  // a pickle without its STOP never reads
  // random byte changes in the pickle (the archive rebuilt, so its CRCs are right)
  for (int k = 0; k < 3000; ++k) {
    std::string p = parts.pickle;
    const int changes = 1 + int(rng() % 4);
    for (int c = 0; c < changes; ++c) p[rng() % p.size()] = char(rng() % 256);
    (parses_or_refuses(archive_of(p, parts.storages)) ? read : refused)++;
  }
  // every truncation of the archive, and random byte changes anywhere in it
  for (size_t n = 0; n < file.size(); n += 1 + n / 64) (parses_or_refuses(file.substr(0, n)) ? read : refused)++;
  for (int k = 0; k < 3000; ++k) {
    std::string f = file;
    const int changes = 1 + int(rng() % 3);
    for (int c = 0; c < changes; ++c) f[rng() % f.size()] = char(rng() % 256);
    (parses_or_refuses(f) ? read : refused)++;
  }
  INFO(read << " read, " << refused << " refused");
  CHECK(refused > 0);
  std::cout << "torch_pickle fuzz: " << read << " variants read, " << refused << " refused with TorchSaveError\n";
}
