// The safetensors reader and writer (src/files/safetensors.h): round trips of every dtype LibTorch
// holds, scalars and empty tensors, metadata, non-contiguous and unaligned tensors; the byte layout
// the format specifies, checked by hand; and each malformed header is one UserError naming the file.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "files/safetensors.h"

using Catch::Matchers::Contains;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/dgpt_safetensors_XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  return s;
}

// A file from a header written by hand and a data buffer.
std::string file_of(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::string error_of(const std::string& path) {
  try {
    dgpt::read_safetensors(path);
  } catch (const dgpt::UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, shapes, metadata", "[safetensors]") {
  TempDir dir;
  torch::manual_seed(3);
  std::vector<std::pair<std::string, torch::Tensor>> tensors{
      {"f32", torch::randn({3, 5})},
      {"f64", torch::randn({2, 2, 2}, torch::kDouble)},
      {"f16", torch::randn({7}).to(torch::kHalf)},
      {"bf16", torch::randn({4, 1}).to(torch::kBFloat16)},
      {"i64", torch::randint(-1000, 1000, {6}, torch::kLong)},
      {"i32", torch::randint(-1000, 1000, {2, 3}, torch::kInt)},
      {"i16", torch::randint(-1000, 1000, {5}, torch::kShort)},
      {"i8", torch::randint(-100, 100, {9}, torch::kChar)},
      {"u8", torch::randint(0, 255, {3}, torch::kByte)},
      {"bool", torch::randn({4}) > 0},
      {"scalar", torch::tensor(2.5)},
      {"empty", torch::zeros({0, 4})},
      {"transposed", torch::randn({3, 4}).t()},  // non-contiguous: written row-major
  };
  const std::string path = dir.file("model.safetensors");
  dgpt::write_safetensors(path, tensors, {{"format", "pt"}, {"note", "dgpt"}});
  const auto file = dgpt::read_safetensors(path);
  REQUIRE(file.tensors.size() == tensors.size());
  for (auto& [name, t] : tensors) {
    INFO(name);
    const auto& got = file.tensors.at(name);
    CHECK(got.scalar_type() == t.scalar_type());
    CHECK(got.sizes() == t.sizes());
    CHECK(torch::equal(got, t));
  }
  CHECK(file.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "dgpt"}});

  // The bytes are the format's: u64 N, a JSON header padded to 8, then the tensors in order.
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  CHECK(header["__metadata__"]["format"] == "pt");
  CHECK(header["f32"]["dtype"] == "F32");
  CHECK(header["f32"]["shape"] == nlohmann::json::array({3, 5}));
  CHECK(header["f32"]["data_offsets"] == nlohmann::json::array({0, 60}));
  CHECK(header["bf16"]["dtype"] == "BF16");
  CHECK(header["bool"]["dtype"] == "BOOL");
  CHECK(header["scalar"]["shape"] == nlohmann::json::array());
  float first = 0;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  CHECK(first == tensors[0].second[0][0].item<float>());
  const auto t = tensors.back().second.contiguous();
  float last = 0;
  std::memcpy(&last, bytes.data() + bytes.size() - 4, 4);
  CHECK(last == t.view(-1)[-1].item<float>());
  // No temporary file left behind.
  CHECK(::access((path + ".tmp." + std::to_string(::getpid())).c_str(), F_OK) != 0);

  // Views of the mapping outlive the file object; writing to one changes nothing on disk.
  torch::Tensor view = dgpt::read_safetensors(path).tensors.at("f32");
  view.add_(1);
  CHECK(torch::equal(dgpt::read_safetensors(path).tensors.at("f32"), tensors[0].second));
  CHECK(torch::equal(view, tensors[0].second + 1));
}

TEST_CASE("safetensors: unaligned tensors are copied aligned", "[safetensors]") {
  TempDir dir;
  // A 1-byte U8 tensor first puts the F32 one at an odd address.
  const std::string header = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  float values[2] = {1.5f, -2.25f};
  std::string data(1, char(7));
  data.append(reinterpret_cast<const char*>(values), 8);
  write_bytes(dir.file("x.safetensors"), file_of(header, data));
  const auto file = dgpt::read_safetensors(dir.file("x.safetensors"));
  const auto b = file.tensors.at("b");
  CHECK(reinterpret_cast<uintptr_t>(b.data_ptr()) % 4 == 0);
  CHECK(b[0].item<float>() == 1.5f);
  CHECK(b[1].item<float>() == -2.25f);
  CHECK(file.tensors.at("a").item<uint8_t>() == 7);
}

TEST_CASE("safetensors: malformed files are one UserError naming the file", "[safetensors]") {
  TempDir dir;
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data(8, '\0');
  struct Case {
    std::string name, bytes, needle;
  };
  const std::vector<Case> cases{
      {"empty", "", "0 bytes, fewer than the 8"},
      {"short", "abc", "3 bytes"},
      {"absurd", le64(uint64_t(1) << 40) + "{}", "more than the format's limit"},
      {"longer", le64(64) + "{}", "only 2 bytes after the length"},
      {"json", file_of("{\"w\":", data), "not valid JSON"},
      {"array", file_of("[]", ""), "not a JSON object"},
      {"dtype", file_of(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", data), "unknown dtype 'Q4'"},
      {"shape", file_of(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data), "not a size"},
      {"size", file_of(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data), "needs 12 bytes"},
      {"overflow", file_of(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data),
       "needs too many bytes"},
      {"range", file_of(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data), "beyond the 8 bytes"},
      {"order", file_of(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data), "begin <= end"},
      {"overlap", file_of("{" + ok_entry + R"(,"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data),
       "overlaps"},
      {"hole", file_of(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data), "belong to no tensor"},
      {"trailing", file_of("{" + ok_entry + "}", data + "xx"), "tensors end at byte 8"},
      {"metadata", file_of("{" + ok_entry + R"(,"__metadata__":{"a":[1]}})", data), "__metadata__['a']"},
      {"offsets", file_of(R"({"w":{"dtype":"F32","shape":[2]}})", data), "no data_offsets"},
      {"unsupported", file_of(R"({"w":{"dtype":"U32","shape":[2],"data_offsets":[0,8]}})", data), "cannot hold"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const std::string path = dir.file(c.name + ".safetensors");
    write_bytes(path, c.bytes);
    const std::string err = error_of(path);
    CHECK_THAT(err, Contains(path) && Contains(c.needle));
    CHECK(err.find('\n') == std::string::npos);
  }
  // The well-formed one of the same shape reads.
  write_bytes(dir.file("good.safetensors"), file_of("{" + ok_entry + "}", data));
  CHECK(dgpt::read_safetensors(dir.file("good.safetensors")).tensors.at("w").numel() == 2);
  // Not a regular file: refused unread; missing: the system's reason.
  CHECK_THAT(error_of(dir.path), Contains("not a regular file") && Contains("a directory"));
  const std::string fifo = dir.file("fifo.safetensors");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THAT(error_of(fifo), Contains("a FIFO"));
  CHECK_THAT(error_of(dir.file("missing.safetensors")), Contains("No such file"));
  // The writer refuses names the format reserves or repeats.
  CHECK_THROWS_AS(dgpt::write_safetensors(dir.file("bad.safetensors"), {{"__metadata__", torch::zeros({1})}}),
                  dgpt::UserError);
  CHECK_THROWS_AS(dgpt::write_safetensors(dir.file("bad.safetensors"), {{"a", torch::zeros({1})}, {"a", torch::zeros({1})}}),
                  dgpt::UserError);
}
