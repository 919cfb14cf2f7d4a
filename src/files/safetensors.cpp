#include "files/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <set>

#include "base/errors.h"
#include "files/atomic_file.h"

namespace dgpt {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian, as this host must be");

namespace {

struct DtypeInfo {
  const char* name;
  uint64_t bytes;
  std::optional<torch::Dtype> torch_dtype;  // none: valid safetensors, but no LibTorch dtype here
};

// Every dtype of the format's specification, with its element size.
const std::vector<DtypeInfo>& dtypes() {
  static const std::vector<DtypeInfo> table = {
      {"F64", 8, torch::kFloat64},  {"F32", 4, torch::kFloat32}, {"F16", 2, torch::kFloat16},
      {"BF16", 2, torch::kBFloat16}, {"I64", 8, torch::kInt64},  {"I32", 4, torch::kInt32},
      {"I16", 2, torch::kInt16},     {"I8", 1, torch::kInt8},    {"U8", 1, torch::kUInt8},
      {"BOOL", 1, torch::kBool},     {"U64", 8, std::nullopt},   {"U32", 4, std::nullopt},
      {"U16", 2, std::nullopt},      {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
  };
  return table;
}

const DtypeInfo* find_dtype(const std::string& name) {
  for (auto& d : dtypes())
    if (name == d.name) return &d;
  return nullptr;
}

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  throw UserError("safetensors file " + path + " is invalid: " + what);
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);  // the host is little-endian (static_assert above)
  return v;
}

// A JSON number that is a non-negative integer, as uint64.
std::optional<uint64_t> as_index(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return uint64_t(j.get<int64_t>());
  return std::nullopt;
}

// The file mapped into memory, unmapped when the last tensor viewing it goes.
struct Mapping {
  void* data = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (data != MAP_FAILED) ::munmap(data, size);
  }
};

std::string shape_repr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const std::string& path, const char* head, size_t head_size,
                                           uint64_t file_size) {
  if (file_size < 8)
    bad_file(path, fmt::format("it has {} bytes, fewer than the 8 of the header's length (a truncated file?)",
                               file_size));
  const uint64_t n = read_u64_le(head);
  if (n > kMaxSafetensorsHeaderBytes)
    bad_file(path, fmt::format("its header length is {} bytes, more than the format's limit of {} (not a "
                               "safetensors file?)",
                               n, kMaxSafetensorsHeaderBytes));
  if (n > file_size - 8)
    bad_file(path, fmt::format("its header length is {} bytes, but the file has only {} bytes after the length "
                               "(a truncated file?)",
                               n, file_size - 8));
  if (head_size < 8 + n) bad_file(path, "the header could not be read whole");
  SafetensorsHeader header;
  header.data_start = 8 + n;
  const uint64_t buffer_size = file_size - header.data_start;

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(head + 8, head + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    bad_file(path, std::string("its header is not valid JSON (") + first_line(e.what()) + ")");
  }
  if (!j.is_object()) bad_file(path, "its header is not a JSON object");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad_file(path, "__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad_file(path, "__metadata__['" + m.key() + "'] is not a string");
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!v.is_object()) bad_file(path, what + " is not described by an object");
    SafetensorsEntry e;
    e.name = name;
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad_file(path, what + " has no dtype string");
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* dtype = find_dtype(e.dtype);
    if (!dtype) {
      std::string known;
      for (auto& d : dtypes()) known += (known.empty() ? "" : ", ") + std::string(d.name);
      bad_file(path, what + " has the unknown dtype '" + e.dtype + "' (known: " + known + ")");
    }
    if (!v.contains("shape") || !v["shape"].is_array()) bad_file(path, what + " has no shape list");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : v["shape"]) {
      const auto size = as_index(d);
      if (!size || *size > uint64_t(std::numeric_limits<int64_t>::max()))
        bad_file(path, what + " has a shape entry that is not a size >= 0: " + d.dump());
      e.shape.push_back(int64_t(*size));
      if (*size != 0 && numel > std::numeric_limits<uint64_t>::max() / *size) overflow = true;
      numel *= *size;
    }
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      bad_file(path, what + " has no data_offsets [begin, end]");
    const auto begin = as_index(v["data_offsets"][0]), end = as_index(v["data_offsets"][1]);
    if (!begin || !end || *begin > *end)
      bad_file(path, what + " has data_offsets " + v["data_offsets"].dump() + ", not 0 <= begin <= end");
    e.begin = *begin;
    e.end = *end;
    if (*end > buffer_size)
      bad_file(path, fmt::format("{} has data_offsets [{}, {}], beyond the {} bytes of data the file holds (a "
                                 "truncated file?)",
                                 what, e.begin, e.end, buffer_size));
    const bool too_big = overflow || numel > std::numeric_limits<uint64_t>::max() / dtype->bytes;
    if (too_big || numel * dtype->bytes != e.end - e.begin)
      bad_file(path, fmt::format("{} ({} {}) needs {} bytes, but its data_offsets [{}, {}] hold {}", what, e.dtype,
                                 shape_repr(e.shape), too_big ? std::string("too many") : std::to_string(numel * dtype->bytes),
                                 e.begin, e.end, e.end - e.begin));
    header.entries.push_back(std::move(e));
  }
  // The tensors tile the buffer exactly, as the reference implementation requires.
  std::stable_sort(header.entries.begin(), header.entries.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& e : header.entries) {
    if (e.begin < covered)
      bad_file(path, fmt::format("tensor '{}' (bytes [{}, {})) overlaps tensor '{}' (bytes [{}, {}))", e.name, e.begin,
                                 e.end, previous->name, previous->begin, previous->end));
    if (e.begin > covered)
      bad_file(path, fmt::format("bytes [{}, {}) of the data belong to no tensor (before tensor '{}')", covered,
                                 e.begin, e.name));
    covered = e.end;
    previous = &e;
  }
  if (covered != buffer_size)
    bad_file(path, fmt::format("its tensors end at byte {} of the data, but the file holds {} bytes of data after "
                               "the header",
                               covered, buffer_size));
  return header;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw UserError("cannot read " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw UserError("cannot read " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    bad_file(path, std::string("it is not a regular file (") +
                       (S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket") +
                       "); nothing was read from it");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    parse_safetensors_header(path, "\0\0\0\0\0\0\0\0", 8, size);  // throws: too short
  }
  auto mapping = std::make_shared<Mapping>();
  // Private and writable: nothing written through a view reaches the file, and torch may hold the
  // pointer as non-const.
  mapping->data = ::mmap(nullptr, size_t(size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (mapping->data == MAP_FAILED) throw UserError("cannot map " + path + " into memory: " + std::strerror(map_err));
  mapping->size = size_t(size);
  const char* bytes = static_cast<const char*>(mapping->data);
  const SafetensorsHeader header = parse_safetensors_header(path, bytes, size_t(size), size);

  SafetensorsFile file;
  file.metadata = header.metadata;
  for (const auto& e : header.entries) {
    const DtypeInfo* dtype = find_dtype(e.dtype);
    if (!dtype->torch_dtype)
      bad_file(path, "tensor '" + e.name + "' has dtype " + e.dtype + ", which this LibTorch cannot hold");
    char* data = static_cast<char*>(mapping->data) + header.data_start + e.begin;
    const auto options = torch::TensorOptions().dtype(*dtype->torch_dtype);
    torch::Tensor t;
    if (e.begin == e.end) {
      t = torch::empty(e.shape, options);
    } else {
      t = torch::from_blob(data, e.shape, [mapping](void*) {}, options);
      // The format does not align tensors; LibTorch's kernels expect aligned elements.
      if (reinterpret_cast<uintptr_t>(data) % dtype->bytes != 0) t = t.clone();
    }
    file.tensors[e.name] = t;
  }
  return file;
}

std::string safetensors_dtype_name(torch::Dtype dtype) {
  for (auto& d : dtypes())
    if (d.torch_dtype && *d.torch_dtype == dtype) return d.name;
  throw UserError(std::string("safetensors has no dtype for ") + c10::toString(dtype));
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw UserError("cannot write " + path + ": '" + name + "' is not a tensor name safetensors allows");
    if (!names.insert(name).second) throw UserError("cannot write " + path + ": tensor '" + name + "' twice");
    const uint64_t bytes = uint64_t(t.numel()) * uint64_t(t.element_size());
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned, as Hugging Face's writer does
  const uint64_t n = text.size();
  write_file_atomically(path, [&](const ByteSink& sink) {
    char length[8];
    std::memcpy(length, &n, 8);  // little-endian host
    sink(length, 8);
    sink(text.data(), text.size());
    for (const auto& item : tensors) {
      const torch::Tensor t = item.second.detach().to(torch::kCPU).contiguous();
      sink(static_cast<const char*>(t.data_ptr()), size_t(t.numel()) * size_t(t.element_size()));
    }
  });
}

}  // namespace dgpt
