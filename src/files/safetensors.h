// Hugging Face's safetensors format (what `model.safetensors` holds), read and written here:
//
//   8 bytes    N, little-endian u64
//   N bytes    a UTF-8 JSON object: {name: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]},
//              ..., optionally "__metadata__": {str: str}}, padded with spaces
//   the rest   the tensors' bytes, little-endian, row-major; offsets are relative to the start of this
//              buffer, and the tensors tile it exactly (no overlap, no hole, nothing after the last)
//
// Reading maps the file (no copy): the tensors are views on the mapping, which lives as long as any
// of them does. Every inconsistency is a UserError naming the file and the problem.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dgpt {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data buffer
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in the order of their data
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N: where the data buffer starts in the file
};

// The header of a file of `file_size` bytes whose first bytes are `head` (at least 8, and 8 + N when
// N fits in the file). Throws UserError naming `path`: fewer than 8 bytes, a header longer than the
// file or than 100 MB, bad JSON or not an object, an entry without a known dtype, a shape of
// negative or overflowing sizes, data_offsets out of the buffer, overlapping, leaving holes or not
// shape x dtype size bytes long, bytes after the last tensor, a __metadata__ that is not {str: str}.
// `head` may be all of the file; only its first 8 + N bytes are read.
SafetensorsHeader parse_safetensors_header(const std::string& path, const char* head, size_t head_size,
                                           uint64_t file_size);
// The header's N is at most this (the reference implementation's limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU views on the mapped file (copies if unaligned)
  std::map<std::string, std::string> metadata;
};

// Maps and checks `path`. A path that is not a regular file (a FIFO, a directory, a device) is refused
// before reading. The views are read-only in effect (a private mapping: a write would change only this
// process's copy of the page).
SafetensorsFile read_safetensors(const std::string& path);

// The dtype's safetensors name ("F32"); throws UserError for a torch dtype safetensors has no name for.
std::string safetensors_dtype_name(torch::Dtype dtype);

// Writes the tensors (CPU or not; made contiguous one at a time) in this order, with `metadata` as
// __metadata__ (omitted when empty), atomically (files/atomic_file.h), streaming: no copy of the
// whole file is held in memory. Throws UserError for a duplicate or empty name, or "__metadata__".
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dgpt
