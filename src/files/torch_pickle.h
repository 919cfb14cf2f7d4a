// Python's torch.save files (a zip archive holding a pickle and the tensors' storages), read
// without Python and without executing anything: nanoGPT's ckpt.pt, Hugging Face's
// pytorch_model.bin, and dgpt's own checkpoints.
//
// The archive: entries stored uncompressed (as torch.save writes them; zip64 included), CRC-32
// checked, `<folder>/data.pkl` found by its name (the folder is `archive`, the file's stem or
// anything else), the storages in `<folder>/data/<key>`, a `<folder>/byteorder` other than
// "little" refused. The pickle: protocol 2 (torch.save's default) to 5, binary opcodes only, and
// a whitelist of globals, each one interpreted here, never looked up or called: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter(_with_state),
// torch._tensor._rebuild_from_type_v2 (of a plain Tensor or Parameter), the typed storages
// (torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage, LongStorage, IntStorage,
// ShortStorage, CharStorage, ByteStorage, BoolStorage; torch.UntypedStorage as bytes) named by the
// persistent ids ('storage', type, key, location, numel), and _codecs.encode (bytes). Any other
// global, opcode or construct is an error naming it. Every index, length, offset, size and stride
// is checked against what the file holds: a corrupt or truncated file is one error, never a crash.
// Also read: torch.save's format before PyTorch 1.6 (pickles in a row, then the raw storages;
// older pytorch_model.bin uploads, or _use_new_zipfile_serialization=False), with the same pickle
// machine and checks.
#pragma once
#include <torch/torch.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "base/errors.h"

namespace dgpt {

// A file that is not a torch.save archive dgpt can read: what() is the cause alone (no file name),
// e.g. "data.pkl refers to the Python global 'os.system', which is not loaded ...".
struct TorchSaveError : UserError {
  using UserError::UserError;
};

// The object torch.save wrote, as LibTorch's generic values: a dict (OrderedDict or dict) is a
// c10::impl::GenericDict in the file's order (keys str, int or float), a list a GenericList, a
// tuple a Tuple, bytes a string, and str, int, float, bool, None as themselves. Tensors are CPU
// tensors of the file's dtype, size, stride and offset, views of their storage as torch.load's are
// (tensors saved from one storage, e.g. nanoGPT's tied wte and lm_head, share it here too).
// Throws TorchSaveError.
c10::IValue parse_torch_save(const char* data, size_t size);

// The same, from a file: a path that is not a regular file is refused unread. Throws UserError
// "cannot load PATH: <cause>".
c10::IValue read_torch_save(const std::string& path);

// A flat state dict: name -> tensor, in the file's order (a model.state_dict() saved alone, as in
// pytorch_model.bin). `what` names the value in messages (e.g. the file). Throws UserError when the
// value is not a dict of str keys and tensor values.
std::vector<std::pair<std::string, torch::Tensor>> state_dict_from(const c10::IValue& value, const std::string& what);

// The first `size` bytes of the file at `path` (its size, as stat says), read whole; a failure (open,
// read, a file that shrank, no memory for it) is a UserError of `error_prefix` + the cause.
std::vector<char> read_whole_file(const std::string& path, int64_t size, const std::string& error_prefix);

// read_torch_save + state_dict_from: e.g. Hugging Face's pytorch_model.bin.
std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path);

}  // namespace dgpt
