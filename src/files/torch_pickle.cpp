#include "files/torch_pickle.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <unordered_map>

namespace dgpt {

namespace {

[[noreturn]] void fail(const std::string& what) { throw TorchSaveError(what); }

uint16_t le16(const unsigned char* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint64_t le64(const unsigned char* p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }

// A name from the file, fit for a one-line message: at most 80 characters, control bytes escaped.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 80)) {
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return s.size() > 80 ? out + "..." : out;
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (the zip format's: reflected polynomial 0xEDB88320), eight bytes at a time.

struct Crc32Tables {
  uint32_t t[8][256];
  Crc32Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};

uint32_t crc32(const unsigned char* p, uint64_t n) {
  static const Crc32Tables tables;
  const auto& t = tables.t;
  uint32_t c = 0xFFFFFFFFu;
  for (; n >= 8; p += 8, n -= 8) {
    const uint32_t lo = le32(p) ^ c, hi = le32(p + 4);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
        t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

// ---------------------------------------------------------------------------------------------
// The zip archive: its central directory, every offset and length checked against the file.

struct ZipEntry {
  uint64_t data = 0;  // offset of the entry's bytes in the file
  uint64_t size = 0;
  uint32_t crc = 0;
};

class ZipArchive {
 public:
  ZipArchive(const unsigned char* file, uint64_t size) : file_(file), size_(size) { read_directory(); }

  const ZipEntry* find(const std::string& name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }
  const std::map<std::string, ZipEntry>& entries() const { return entries_; }
  // The bytes of an entry, once its CRC-32 is checked.
  const unsigned char* bytes(const std::string& name, const ZipEntry& e) const {
    const unsigned char* p = file_ + e.data;
    if (crc32(p, e.size) != e.crc)
      fail("zip entry " + printable(name) + " fails its CRC-32 check (a corrupt file)");
    return p;
  }

 private:
  const unsigned char* file_;
  uint64_t size_;
  std::map<std::string, ZipEntry> entries_;

  // [offset, offset + n) lies in the file.
  const unsigned char* at(uint64_t offset, uint64_t n, const char* what) const {
    if (offset > size_ || n > size_ - offset)
      fail(std::string("the zip archive's ") + what + " lies past the end of the file (a truncated file?)");
    return file_ + offset;
  }

  void read_directory() {
    constexpr uint64_t kEnd = 22;  // the end-of-central-directory record, without its comment
    if (size_ < kEnd) fail("too short for a zip archive");
    // The record is the last thing in the file, followed only by its comment (at most 65535 bytes).
    uint64_t end = UINT64_MAX;
    for (uint64_t pos = size_ - kEnd;; --pos) {
      const unsigned char* p = file_ + pos;
      if (le32(p) == 0x06054b50u && pos + kEnd + le16(p + 20) == size_) {
        end = pos;
        break;
      }
      if (pos == 0 || size_ - kEnd - pos >= 65535) break;
    }
    if (end == UINT64_MAX)
      fail("not a complete zip archive: no end-of-central-directory record (a truncated file?)");
    const unsigned char* e = file_ + end;
    uint64_t count = le16(e + 10), dir_size = le32(e + 12), dir_offset = le32(e + 16);
    if (le16(e + 4) != 0 || le16(e + 6) != 0) fail("a zip archive split over several disks");
    // zip64: a locator just before the record points at the zip64 record, which has the 64-bit values.
    if (end >= 20 && le32(file_ + end - 20) == 0x07064b50u) {
      const unsigned char* z = at(le64(file_ + end - 12), 56, "zip64 end record");
      if (le32(z) != 0x06064b50u) fail("the zip64 end-of-central-directory record is missing (a corrupt file)");
      count = le64(z + 32);
      dir_size = le64(z + 40);
      dir_offset = le64(z + 48);
    }
    const unsigned char* d = at(dir_offset, dir_size, "central directory");
    uint64_t pos = 0;
    for (uint64_t i = 0; i < count; ++i) {
      if (pos > dir_size || dir_size - pos < 46 || le32(d + pos) != 0x02014b50u)
        fail("the zip archive's central directory is corrupt (entry " + std::to_string(i) + ")");
      const unsigned char* h = d + pos;
      const uint16_t flags = le16(h + 8), method = le16(h + 10);
      const uint32_t crc = le32(h + 16);
      uint64_t compressed = le32(h + 20), size = le32(h + 24), local = le32(h + 42);
      const uint64_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
      if (dir_size - pos - 46 < name_len + extra_len + comment_len)
        fail("the zip archive's central directory is corrupt (entry " + std::to_string(i) + ")");
      const std::string name(reinterpret_cast<const char*>(h + 46), name_len);
      // zip64 extra field: the 64-bit values of those fields that are 0xFFFFFFFF, in this order.
      const unsigned char* x = h + 46 + name_len;
      for (uint64_t k = 0; k + 4 <= extra_len;) {
        const uint16_t id = le16(x + k), len = le16(x + k + 2);
        if (k + 4 + len > extra_len) break;
        if (id == 0x0001) {
          uint64_t off = k + 4;
          for (uint64_t* field : {&size, &compressed, &local}) {
            if (*field != 0xFFFFFFFFu) continue;
            if (off + 8 > k + 4 + len) fail("zip entry " + printable(name) + " has a short zip64 field");
            *field = le64(x + off);
            off += 8;
          }
        }
        k += 4 + len;
      }
      pos += 46 + name_len + extra_len + comment_len;
      if (flags & 1) fail("zip entry " + printable(name) + " is encrypted");
      if (method != 0)
        fail("zip entry " + printable(name) + " is compressed (method " + std::to_string(method) +
             "); torch.save stores its entries uncompressed");
      if (compressed != size) fail("zip entry " + printable(name) + " is corrupt (stored with two sizes)");
      const unsigned char* l = at(local, 30, "local header");
      if (le32(l) != 0x04034b50u) fail("zip entry " + printable(name) + " has no local header (a corrupt file)");
      const uint64_t data = local + 30 + le16(l + 26) + le16(l + 28);
      at(data, size, "entry data");
      if (!entries_.emplace(name, ZipEntry{data, size, crc}).second)
        fail("the zip archive holds two entries named " + printable(name));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The pickle machine. Objects live in one arena and refer to each other by index, so a hostile
// pickle's deep nesting or cycles cost no recursion until the conversion, which bounds its depth.

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Tensor, Global, Storage };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Tensor: return "tensor";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
  }
  return "?";
}

// The globals a torch.save file may name: interpreted here, nothing is looked up or called.
enum class Global : uint8_t {
  OrderedDict,
  RebuildTensorV2,
  RebuildTensor,
  RebuildParameter,
  RebuildParameterWithState,
  RebuildFromTypeV2,
  TensorType,
  ParameterType,
  Storage,
  CodecsEncode,
};

struct KnownGlobal {
  Global global;
  torch::Dtype dtype;  // of a storage type
};

const std::map<std::string, KnownGlobal>& known_globals() {
  static const std::map<std::string, KnownGlobal> known{
      {"collections.OrderedDict", {Global::OrderedDict, torch::kByte}},
      {"torch._utils._rebuild_tensor_v2", {Global::RebuildTensorV2, torch::kByte}},
      {"torch._utils._rebuild_tensor", {Global::RebuildTensor, torch::kByte}},
      {"torch._utils._rebuild_parameter", {Global::RebuildParameter, torch::kByte}},
      {"torch._utils._rebuild_parameter_with_state", {Global::RebuildParameterWithState, torch::kByte}},
      {"torch._tensor._rebuild_from_type_v2", {Global::RebuildFromTypeV2, torch::kByte}},
      {"torch._tensor.Tensor", {Global::TensorType, torch::kByte}},
      {"torch.Tensor", {Global::TensorType, torch::kByte}},
      {"torch.nn.parameter.Parameter", {Global::ParameterType, torch::kByte}},
      {"_codecs.encode", {Global::CodecsEncode, torch::kByte}},
      {"torch.FloatStorage", {Global::Storage, torch::kFloat}},
      {"torch.DoubleStorage", {Global::Storage, torch::kDouble}},
      {"torch.HalfStorage", {Global::Storage, torch::kHalf}},
      {"torch.BFloat16Storage", {Global::Storage, torch::kBFloat16}},
      {"torch.LongStorage", {Global::Storage, torch::kLong}},
      {"torch.IntStorage", {Global::Storage, torch::kInt}},
      {"torch.ShortStorage", {Global::Storage, torch::kShort}},
      {"torch.CharStorage", {Global::Storage, torch::kChar}},
      {"torch.ByteStorage", {Global::Storage, torch::kByte}},
      {"torch.BoolStorage", {Global::Storage, torch::kBool}},
      {"torch.ComplexFloatStorage", {Global::Storage, torch::kComplexFloat}},
      {"torch.ComplexDoubleStorage", {Global::Storage, torch::kComplexDouble}},
      {"torch.UntypedStorage", {Global::Storage, torch::kByte}},
      {"torch.storage.UntypedStorage", {Global::Storage, torch::kByte}},
  };
  return known;
}

struct Node {
  Kind kind = Kind::None;
  Global global = Global::OrderedDict;  // Global
  torch::Dtype dtype = torch::kByte;    // Global (a storage type), Storage
  int64_t i = 0;                        // Bool, Int
  double f = 0;                         // Float
  std::string s;                        // Str, Bytes; Global: its name; Storage: its key
  std::vector<uint32_t> items;          // Tuple, List; Dict: key, value, key, value, ...
  torch::Tensor t;                      // Tensor; Storage: its elements, 1-D
};

// Loads storage `key`: numel elements of dtype, as a 1-D tensor.
using StorageLoader = std::function<torch::Tensor(const std::string& key, torch::Dtype dtype, int64_t numel)>;

// Bounds no torch.save file comes near, so that a hostile pickle cannot make this exhaust memory.
constexpr size_t kMaxObjects = size_t{1} << 22;
constexpr int kMaxDepth = 200;  // nesting of the result
constexpr size_t kMaxTensorDims = 64;

const char* opcode_name(unsigned char op) {
  static const std::map<unsigned char, const char*> names{
      {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"}, {'F', "FLOAT"}, {'I', "INT"},
      {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"}, {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"},
      {'Q', "BINPERSID"}, {'R', "REDUCE"}, {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"},
      {'V', "UNICODE"}, {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"},
      {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"}, {'j', "LONG_BINGET"},
      {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"}, {'q', "BINPUT"}, {'r', "LONG_BINPUT"},
      {'s', "SETITEM"}, {'t', "TUPLE"}, {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"},
      {0x80, "PROTO"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"},
      {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"}, {0x8a, "LONG1"},
      {0x8b, "LONG4"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"}, {0x8c, "SHORT_BINUNICODE"},
      {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"}, {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"},
      {0x92, "NEWOBJ_EX"}, {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
      {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"}};
  auto it = names.find(op);
  return it == names.end() ? "unknown" : it->second;
}

class Unpickler {
 public:
  // `where` names the pickle in messages ("data.pkl").
  Unpickler(const unsigned char* data, uint64_t size, StorageLoader load_storage, std::string where = "data.pkl")
      : p_(data), n_(size), load_storage_(std::move(load_storage)), where_(std::move(where)) {
    add(Kind::None);                  // 0: None
    add(Kind::Bool).i = 1;            // 1: True
    add(Kind::Bool).i = 0;            // 2: False
  }

  // The bytes the pickle took, through its STOP (after run()).
  uint64_t consumed() const { return pos_; }

  c10::IValue run() {
    while (true) {
      if (pos_ >= n_) fail(where_ + " ends before its STOP opcode (a truncated file?)");
      const uint64_t at = pos_;
      const unsigned char op = p_[pos_++];
      switch (op) {
        case 0x80: {  // PROTO
          const unsigned v = take(1, op)[0];
          if (v > 5) fail(where_ + " is pickle protocol " + std::to_string(v) + "; protocols 2 to 5 are read");
          break;
        }
        case 0x95: take(8, op); break;  // FRAME: a hint for buffered readers
        case '.': {                     // STOP
          const uint32_t result = pop(op);
          std::vector<int8_t> state(nodes_.size(), 0);
          std::vector<c10::IValue> done(nodes_.size());
          return convert(result, 0, state, done);
        }
        case '(':  // MARK
          if (marks_.size() >= kMaxObjects) fail(where_ + " nests too many marks");
          marks_.push_back(stack_.size());
          break;
        case '0':  // POP (a mark when nothing is above it, as Python's)
          if (stack_.size() > floor()) stack_.pop_back();
          else pop_mark(op);
          break;
        case '1': stack_.resize(pop_mark(op)); break;  // POP_MARK
        case '2': push(top(op)); break;                 // DUP
        case 'N': push(0); break;
        case 0x88: push(1); break;  // NEWTRUE
        case 0x89: push(2); break;  // NEWFALSE
        case 'J': push_int(int32_t(le32(take(4, op)))); break;  // BININT
        case 'K': push_int(take(1, op)[0]); break;                // BININT1
        case 'M': push_int(le16(take(2, op))); break;             // BININT2
        case 0x8a: push_long(take(1, op)[0], op); break;          // LONG1
        case 0x8b: push_long(le32(take(4, op)), op); break;       // LONG4
        case 'G': {                                               // BINFLOAT: big-endian
          const unsigned char* b = take(8, op);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = bits << 8 | b[k];
          double d;
          std::memcpy(&d, &bits, 8);
          const uint32_t node = new_node(Kind::Float);
          nodes_[node].f = d;
          push(node);
          break;
        }
        case 'X': push_text(Kind::Str, le32(take(4, op)), op); break;        // BINUNICODE
        case 0x8c: push_text(Kind::Str, take(1, op)[0], op); break;          // SHORT_BINUNICODE
        case 0x8d: push_text(Kind::Str, le64(take(8, op)), op); break;       // BINUNICODE8
        case 'T': push_text(Kind::Str, le32(take(4, op)), op); break;        // BINSTRING (Python 2)
        case 'U': push_text(Kind::Str, take(1, op)[0], op); break;           // SHORT_BINSTRING
        case 'B': push_text(Kind::Bytes, le32(take(4, op)), op); break;      // BINBYTES
        case 'C': push_text(Kind::Bytes, take(1, op)[0], op); break;         // SHORT_BINBYTES
        case 0x8e: push_text(Kind::Bytes, le64(take(8, op)), op); break;     // BINBYTES8
        case ')': push(new_node(Kind::Tuple)); break;                        // EMPTY_TUPLE
        case 't': push(collect(Kind::Tuple, pop_mark(op))); break;           // TUPLE
        case 0x85: case 0x86: case 0x87: {                                   // TUPLE1, TUPLE2, TUPLE3
          const size_t k = size_t(op - 0x84);
          if (stack_.size() < floor() + k) underflow(op);
          push(collect(Kind::Tuple, stack_.size() - k));
          break;
        }
        case ']': push(new_node(Kind::List)); break;                // EMPTY_LIST
        case 'l': push(collect(Kind::List, pop_mark(op))); break;   // LIST
        case '}': push(new_node(Kind::Dict)); break;                // EMPTY_DICT
        case 'd': {                                                 // DICT
          const size_t mark = pop_mark(op);
          if ((stack_.size() - mark) % 2) fail(where_ + " has a DICT of an odd number of items");
          push(collect(Kind::Dict, mark));
          break;
        }
        case 'a': {  // APPEND
          const uint32_t value = pop(op);
          append(top(op), {value}, op);
          break;
        }
        case 'e': {  // APPENDS
          const size_t mark = pop_mark(op);
          std::vector<uint32_t> values(stack_.begin() + int64_t(mark), stack_.end());
          stack_.resize(mark);
          append(top(op), values, op);
          break;
        }
        case 's': {  // SETITEM
          const uint32_t value = pop(op), key = pop(op);
          append(top(op), {key, value}, op);
          break;
        }
        case 'u': {  // SETITEMS
          const size_t mark = pop_mark(op);
          if ((stack_.size() - mark) % 2) fail(where_ + " has a SETITEMS of an odd number of items");
          std::vector<uint32_t> items(stack_.begin() + int64_t(mark), stack_.end());
          stack_.resize(mark);
          append(top(op), items, op);
          break;
        }
        case 'c': {  // GLOBAL: "module\nname\n"
          const std::string module = line(op), name = line(op);
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const uint32_t name = pop(op), module = pop(op);
          if (nodes_[name].kind != Kind::Str || nodes_[module].kind != Kind::Str)
            fail(where_ + " has a STACK_GLOBAL whose module or name is not a str");
          push(global(nodes_[module].s, nodes_[name].s));
          break;
        }
        case 'R': {  // REDUCE
          const uint32_t args = pop(op), callable = pop(op);
          push(apply(callable, args));
          break;
        }
        case 'b': {  // BUILD
          const uint32_t state = pop(op);
          build(top(op), state);
          break;
        }
        case 'Q': push(persistent_load(pop(op))); break;  // BINPERSID
        case 'q': put(take(1, op)[0], op); break;         // BINPUT
        case 'r': put(le32(take(4, op)), op); break;      // LONG_BINPUT
        case 0x94: put(memo_.size(), op); break;          // MEMOIZE
        case 'h': get(take(1, op)[0]); break;             // BINGET
        case 'j': get(le32(take(4, op))); break;          // LONG_BINGET
        default: {
          static const char* hex = "0123456789abcdef";
          std::string code = "0x";
          code += hex[op >> 4];
          code += hex[op & 15];
          fail(where_ + " uses the pickle opcode " + code + " (" + opcode_name(op) + ") at byte " + std::to_string(at) +
               ", which a torch.save file does not need; it is not read");
        }
      }
    }
  }

 private:
  const unsigned char* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
  StorageLoader load_storage_;
  std::string where_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
  std::map<std::string, uint32_t> storages_;  // key -> its Storage node

  Node& add(Kind kind) {
    if (nodes_.size() >= kMaxObjects)
      fail(where_ + " holds more than " + std::to_string(kMaxObjects) + " objects; a checkpoint has far fewer");
    nodes_.emplace_back();
    nodes_.back().kind = kind;
    return nodes_.back();
  }
  uint32_t new_node(Kind kind) {
    add(kind);
    return uint32_t(nodes_.size() - 1);
  }

  const unsigned char* take(uint64_t k, unsigned char op) {
    if (k > n_ - pos_)
      fail((where_ + " ends inside its ") + opcode_name(op) + " opcode (a truncated file?)");
    const unsigned char* out = p_ + pos_;
    pos_ += k;
    return out;
  }
  std::string line(unsigned char op) {
    for (uint64_t k = pos_; k < n_ && k - pos_ <= 256; ++k)
      if (p_[k] == '\n') {
        std::string out(reinterpret_cast<const char*>(p_ + pos_), k - pos_);
        pos_ = k + 1;
        return out;
      }
    fail((where_ + " has a ") + opcode_name(op) + " opcode without its end of line");
  }

  // The stack above the innermost mark is what plain opcodes may pop, as in Python's unpickler.
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  [[noreturn]] void underflow(unsigned char op) const {
    fail((where_ + "'s ") + opcode_name(op) + " opcode finds too few objects on the stack (a corrupt file)");
  }
  void push(uint32_t node) {
    if (stack_.size() >= kMaxObjects) fail(where_ + "'s stack grows past " + std::to_string(kMaxObjects) + " objects");
    stack_.push_back(node);
  }
  uint32_t pop(unsigned char op) {
    if (stack_.size() <= floor()) underflow(op);
    const uint32_t out = stack_.back();
    stack_.pop_back();
    return out;
  }
  uint32_t top(unsigned char op) const {
    if (stack_.size() <= floor()) underflow(op);
    return stack_.back();
  }
  size_t pop_mark(unsigned char op) {
    if (marks_.empty()) fail((where_ + "'s ") + opcode_name(op) + " opcode has no mark to end (a corrupt file)");
    const size_t mark = marks_.back();
    marks_.pop_back();
    return mark;
  }
  // A Tuple, List or Dict of the stack's items from `first` on, which are popped.
  uint32_t collect(Kind kind, size_t first) {
    const uint32_t node = new_node(kind);
    nodes_[node].items.assign(stack_.begin() + int64_t(first), stack_.end());
    stack_.resize(first);
    return node;
  }

  void push_int(int64_t v) {
    const uint32_t node = new_node(Kind::Int);
    nodes_[node].i = v;
    push(node);
  }
  void push_long(uint64_t bytes, unsigned char op) {
    if (bytes > 8) fail(where_ + " holds an integer of " + std::to_string(bytes) + " bytes, beyond 64 bits");
    const unsigned char* b = take(bytes, op);
    uint64_t v = 0;
    for (uint64_t k = 0; k < bytes; ++k) v |= uint64_t(b[k]) << (8 * k);
    if (bytes > 0 && bytes < 8 && (b[bytes - 1] & 0x80)) v |= ~uint64_t{0} << (8 * bytes);  // sign
    push_int(int64_t(v));
  }
  void push_text(Kind kind, uint64_t length, unsigned char op) {
    const unsigned char* b = take(length, op);
    const uint32_t node = new_node(kind);
    nodes_[node].s.assign(reinterpret_cast<const char*>(b), length);
    push(node);
  }

  void put(uint64_t index, unsigned char op) {
    if (memo_.size() >= kMaxObjects && !memo_.count(index)) fail(where_ + "'s memo grows too large");
    memo_[index] = top(op);
  }
  void get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end())
      fail(where_ + " refers to memo entry " + std::to_string(index) + ", which it never stored (a corrupt file)");
    push(it->second);
  }

  void append(uint32_t target, const std::vector<uint32_t>& items, unsigned char op) {
    const Kind want = (op == 'a' || op == 'e') ? Kind::List : Kind::Dict;
    if (nodes_[target].kind != want)
      fail((where_ + "'s ") + opcode_name(op) + " opcode adds to a " + kind_name(nodes_[target].kind) +
           ", not a " + kind_name(want));
    auto& dst = nodes_[target].items;
    if (dst.size() + items.size() > kMaxObjects) fail(where_ + " builds a container too large");
    dst.insert(dst.end(), items.begin(), items.end());
  }

  uint32_t global(const std::string& module, const std::string& name) {
    const std::string qualified = module + "." + name;
    const auto& known = known_globals();
    auto it = known.find(qualified);
    if (it == known.end())
      fail(where_ + " refers to the Python global '" + printable(qualified) +
           "', which is not loaded: a torch.save file of tensors and plain values needs only torch's tensor and "
           "storage types and collections.OrderedDict, and nothing in it is executed");
    const uint32_t node = new_node(Kind::Global);
    nodes_[node].global = it->second.global;
    nodes_[node].dtype = it->second.dtype;
    nodes_[node].s = qualified;
    return node;
  }

  // The items of a tuple argument, of the counts given. (A reference into nodes_: callers that add
  // nodes copy it first.)
  const std::vector<uint32_t>& tuple_items(uint32_t args, const std::string& what, std::initializer_list<size_t> counts) {
    if (nodes_[args].kind != Kind::Tuple) fail(where_ + " calls " + what + " with a " + kind_name(nodes_[args].kind) + ", not a tuple");
    const auto& items = nodes_[args].items;
    for (size_t c : counts)
      if (items.size() == c) return items;
    fail(where_ + " calls " + what + " with " + std::to_string(items.size()) + " arguments");
  }
  const Node& expect(uint32_t node, Kind kind, const std::string& what) const {
    if (nodes_[node].kind != kind)
      fail(where_ + " gives " + what + " a " + kind_name(nodes_[node].kind) + ", not a " + kind_name(kind));
    return nodes_[node];
  }
  // An empty OrderedDict or dict (a tensor's backward hooks, a parameter's state), or None.
  void expect_empty(uint32_t node, const std::string& what) const {
    if (nodes_[node].kind == Kind::None) return;
    if (nodes_[node].kind != Kind::Dict || !nodes_[node].items.empty())
      fail(where_ + " gives a tensor " + what + "; only tensors without them are read");
  }

  uint32_t apply(uint32_t callable, uint32_t args) {
    if (nodes_[callable].kind != Kind::Global)
      fail((where_ + " calls a ") + kind_name(nodes_[callable].kind) + " (a corrupt file)");
    const Global g = nodes_[callable].global;
    const std::string name = nodes_[callable].s;
    switch (g) {
      case Global::OrderedDict:
        if (!tuple_items(args, name, {0}).empty()) fail(where_ + " calls collections.OrderedDict with arguments");
        return new_node(Kind::Dict);
      case Global::RebuildTensorV2: return rebuild_tensor(std::vector<uint32_t>(tuple_items(args, name, {6, 7})), name);
      case Global::RebuildTensor: return rebuild_tensor(std::vector<uint32_t>(tuple_items(args, name, {4})), name);
      case Global::RebuildParameter:
      case Global::RebuildParameterWithState: {
        const std::vector<uint32_t> items =
            tuple_items(args, name, {g == Global::RebuildParameter ? size_t{3} : size_t{4}});
        expect(items[0], Kind::Tensor, name + "'s data");
        expect_empty(items[2], "backward hooks");
        if (items.size() == 4) expect_empty(items[3], "Python attributes");
        return items[0];
      }
      case Global::RebuildFromTypeV2: {  // (func, new_type, args, state): a plain Tensor or Parameter only
        const std::vector<uint32_t> items = tuple_items(args, name, {4});
        if (nodes_[items[1]].kind != Kind::Global ||
            (nodes_[items[1]].global != Global::TensorType && nodes_[items[1]].global != Global::ParameterType))
          fail(where_ + " rebuilds a tensor of a type other than torch.Tensor and torch.nn.Parameter");
        expect_empty(items[3], "Python attributes");
        const uint32_t func = items[0];
        if (nodes_[func].kind != Kind::Global || nodes_[func].global == Global::RebuildFromTypeV2)
          fail(where_ + " rebuilds a tensor with something other than a tensor function");
        return apply(func, items[2]);
      }
      case Global::CodecsEncode: {  // _codecs.encode(str, 'latin1'): how protocol 2 writes bytes
        const std::vector<uint32_t> items = tuple_items(args, name, {2});
        const Node& text = expect(items[0], Kind::Str, name);
        const Node& encoding = expect(items[1], Kind::Str, name);
        if (encoding.s != "latin1" && encoding.s != "latin-1")
          fail(where_ + " calls _codecs.encode with the encoding '" + printable(encoding.s) + "'; only latin1 is read");
        std::string bytes;
        const std::string& s = text.s;
        for (size_t k = 0; k < s.size(); ++k) {  // UTF-8 of code points below 256 -> those bytes
          const unsigned char c = static_cast<unsigned char>(s[k]);
          if (c < 0x80) {
            bytes += char(c);
          } else if ((c & 0xE0) == 0xC0 && c <= 0xC3 && k + 1 < s.size() && (s[k + 1] & 0xC0) == 0x80) {
            bytes += char(((c & 0x1F) << 6) | (static_cast<unsigned char>(s[k + 1]) & 0x3F));
            ++k;
          } else {
            fail(where_ + " calls _codecs.encode on text that latin1 cannot encode");
          }
        }
        const uint32_t node = new_node(Kind::Bytes);
        nodes_[node].s = std::move(bytes);
        return node;
      }
      case Global::TensorType:
      case Global::ParameterType:
      case Global::Storage: break;
    }
    fail(where_ + " calls " + printable(name) + ", which is not read");
  }

  // torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
  // backward_hooks[, metadata]) and _rebuild_tensor(storage, storage_offset, size, stride): a view
  // of the storage, every element of it inside the storage.
  uint32_t rebuild_tensor(const std::vector<uint32_t>& items, const std::string& name) {
    const Node& storage = expect(items[0], Kind::Storage, name + "'s storage");
    const int64_t offset = expect(items[1], Kind::Int, name + "'s storage_offset").i;
    const auto& size_items = expect(items[2], Kind::Tuple, name + "'s size").items;
    const auto& stride_items = expect(items[3], Kind::Tuple, name + "'s stride").items;
    if (items.size() >= 6) expect_empty(items[5], "backward hooks");
    if (size_items.size() != stride_items.size() || size_items.size() > kMaxTensorDims)
      fail(where_ + " gives a tensor " + std::to_string(size_items.size()) + " sizes and " +
           std::to_string(stride_items.size()) + " strides");
    std::vector<int64_t> sizes, strides;
    for (size_t d = 0; d < size_items.size(); ++d) {
      sizes.push_back(expect(size_items[d], Kind::Int, "a tensor size").i);
      strides.push_back(expect(stride_items[d], Kind::Int, "a tensor stride").i);
      if (sizes.back() < 0 || strides.back() < 0) fail(where_ + " gives a tensor a negative size or stride");
    }
    const int64_t available = storage.t.numel();
    const std::string where = "storage data/" + printable(storage.s) + " of " + std::to_string(available) + " elements";
    if (offset < 0) fail(where_ + " gives a tensor a negative storage offset");
    bool empty = false;
    for (int64_t s : sizes) empty = empty || s == 0;
    if (empty) {
      if (offset > available) fail("a tensor starts past the end of its " + where);
    } else {
      // The last element's index and the number of elements; a 0-dim tensor is its offset's one element.
      __int128 last = offset, count = 1;
      for (size_t d = 0; d < sizes.size() && last < available && count <= available; ++d) {
        last += __int128(sizes[d] - 1) * strides[d];
        count *= sizes[d];
      }
      if (last >= available)
        fail("a tensor of size " + c10::str(c10::IntArrayRef(sizes)) + ", stride " +
             c10::str(c10::IntArrayRef(strides)) + " and offset " + std::to_string(offset) + " reaches past its " +
             where + " (a corrupt file)");
      // More elements than the storage: a view whose elements overlap (stride 0), which no
      // state dict holds and which could be made of any size; refused.
      if (count > available)
        fail("a tensor of size " + c10::str(c10::IntArrayRef(sizes)) + " has more elements than its " + where +
             " (an overlapping view), which is not read");
    }
    torch::Tensor view = storage.t.as_strided(sizes, strides, offset);
    const uint32_t node = new_node(Kind::Tensor);  // (storage, a reference into nodes_, is not used after this)
    nodes_[node].t = std::move(view);
    return node;
  }

  // BINPERSID: ('storage', storage type, key, location, numel) -> the storage data/<key>.
  uint32_t persistent_load(uint32_t pid) {
    const Node& id = nodes_[pid];
    if (id.kind != Kind::Tuple || (id.items.size() != 5 && id.items.size() != 6) ||
        nodes_[id.items[0]].kind != Kind::Str || nodes_[id.items[0]].s != "storage")
      fail(where_ + " has a persistent id other than torch's ('storage', type, key, location, numel)");
    // (the format before PyTorch 1.6 adds view_metadata, None but for the storage views of PyTorch 0.x)
    if (id.items.size() == 6 && nodes_[id.items[5]].kind != Kind::None)
      fail(where_ + " holds a storage view of PyTorch 0.x, which is not read");
    const Node& type = nodes_[id.items[1]];
    if (type.kind != Kind::Global || type.global != Global::Storage)
      fail(where_ + " names a storage whose type is a " + std::string(kind_name(type.kind)) +
           (type.kind == Kind::Global ? " (" + printable(type.s) + ")" : "") + ", not a torch storage type");
    const std::string key = expect(id.items[2], Kind::Str, "a storage key").s;
    expect(id.items[3], Kind::Str, "a storage location");
    const int64_t numel = expect(id.items[4], Kind::Int, "a storage size").i;
    if (numel < 0) fail(where_ + " gives storage " + printable(key) + " a negative size");
    const torch::Dtype dtype = type.dtype;
    auto it = storages_.find(key);
    if (it != storages_.end()) {
      const Node& seen = nodes_[it->second];
      if (seen.dtype != dtype || seen.t.numel() != numel)
        fail(where_ + " reads storage " + printable(key) + " with two types or sizes");
      return it->second;
    }
    torch::Tensor t = load_storage_(key, dtype, numel);
    const uint32_t node = new_node(Kind::Storage);
    nodes_[node].dtype = dtype;
    nodes_[node].s = key;
    nodes_[node].t = std::move(t);
    storages_[key] = node;
    return node;
  }

  // BUILD: only an OrderedDict's attributes (a state dict's _metadata), which are dropped.
  void build(uint32_t target, uint32_t state) {
    if (nodes_[target].kind != Kind::Dict)
      fail((where_ + " sets the state of a ") + kind_name(nodes_[target].kind) + " (BUILD), which is not read");
    const Kind k = nodes_[state].kind;
    if (k != Kind::Dict && k != Kind::None && k != Kind::Tuple)
      fail((where_ + " sets a dict's state to a ") + kind_name(k));
  }

  // The result as LibTorch values: each object converted once (shared ones stay shared), nesting
  // bounded, a container that holds itself refused.
  c10::IValue convert(uint32_t index, int depth, std::vector<int8_t>& state, std::vector<c10::IValue>& done) {
    if (state[index] == 2) return done[index];
    if (state[index] == 1) fail(where_ + " holds a container that contains itself");
    if (depth > kMaxDepth) fail(where_ + " nests its values deeper than " + std::to_string(kMaxDepth) + " levels");
    state[index] = 1;
    const Node& node = nodes_[index];
    c10::IValue out;
    switch (node.kind) {
      case Kind::None: break;
      case Kind::Bool: out = node.i != 0; break;
      case Kind::Int: out = node.i; break;
      case Kind::Float: out = node.f; break;
      case Kind::Str:
      case Kind::Bytes: out = node.s; break;
      case Kind::Tensor: out = node.t; break;
      case Kind::Tuple: {
        std::vector<c10::IValue> items;
        for (uint32_t item : node.items) items.push_back(convert(item, depth + 1, state, done));
        out = c10::ivalue::Tuple::create(std::move(items));
        break;
      }
      case Kind::List: {
        c10::impl::GenericList list(c10::AnyType::get());
        for (uint32_t item : node.items) list.push_back(convert(item, depth + 1, state, done));
        out = list;
        break;
      }
      case Kind::Dict: {
        bool all_str = true, all_int = true;
        for (size_t k = 0; k < node.items.size(); k += 2) {
          const Kind key = nodes_[node.items[k]].kind;
          if (key != Kind::Str && key != Kind::Int && key != Kind::Float && key != Kind::Bytes)
            fail((where_ + " has a dict key that is a ") + kind_name(key) + "; keys of str, int or float are read");
          all_str = all_str && (key == Kind::Str || key == Kind::Bytes);
          all_int = all_int && key == Kind::Int;
        }
        const c10::TypePtr key_type = all_str   ? c10::TypePtr(c10::StringType::get())
                                      : all_int ? c10::TypePtr(c10::IntType::get())
                                                : c10::TypePtr(c10::AnyType::get());
        c10::impl::GenericDict dict(key_type, c10::AnyType::get());
        for (size_t k = 0; k < node.items.size(); k += 2)  // a repeated key keeps its place and takes the last value
          dict.insert_or_assign(convert(node.items[k], depth + 1, state, done),
                                convert(node.items[k + 1], depth + 1, state, done));
        out = dict;
        break;
      }
      case Kind::Global: fail(where_ + " holds the Python global '" + printable(node.s) + "' as a value, which is not read");
      case Kind::Storage: fail(where_ + " holds storage " + printable(node.s) + " outside a tensor, which is not read");
    }
    state[index] = 2;
    done[index] = out;
    return out;
  }
};

// `path`'s bytes: a regular file only (a FIFO, a directory or /dev/zero are refused unread).
std::vector<char> read_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw UserError("cannot load " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw UserError("cannot load " + path + ": not a regular file; nothing was read from it");
  return read_whole_file(path, int64_t(st.st_size), "cannot load " + path + ": ");
}

}  // namespace

std::vector<char> read_whole_file(const std::string& path, int64_t size, const std::string& error_prefix) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw UserError(error_prefix + std::strerror(errno));
  std::vector<char> bytes;
  try {
    bytes.resize(size_t(size));
  } catch (const std::bad_alloc&) {
    ::close(fd);
    throw UserError(error_prefix + std::to_string(size) + " bytes do not fit in memory");
  }
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "the file shrank while it was read";
      ::close(fd);
      throw UserError(error_prefix + why);
    }
    got += size_t(n);
  }
  ::close(fd);
  return bytes;
}

namespace {

// The magic number that starts torch.save's format before PyTorch 1.6: pickle protocol 2 of
// 0x1950a86a20f9469cfc6c.
constexpr unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                         0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};

// torch.save's format before PyTorch 1.6 (still written with _use_new_zipfile_serialization=False;
// e.g. older pytorch_model.bin files): pickles one after the other (the magic number, the format's
// version 1001, sys_info, the object, the list of storage keys), then each storage in the list's
// order: its element count (8 bytes, little-endian) and its bytes.
c10::IValue parse_legacy(const unsigned char* file, uint64_t size) {
  uint64_t pos = sizeof kLegacyMagic;  // (matched by the caller)
  auto next = [&](const std::string& what, StorageLoader load) {
    Unpickler unpickler(file + pos, size - pos, std::move(load), what);
    c10::IValue v = unpickler.run();
    pos += unpickler.consumed();
    return v;
  };
  const StorageLoader no_storages = [](const std::string&, torch::Dtype, int64_t) -> torch::Tensor {
    fail("the file names a storage in its header");
  };
  const c10::IValue version = next("the file's format version", no_storages);
  if (!version.isInt() || version.toInt() != 1001)
    fail("the file is of torch.save's format before PyTorch 1.6 with a version other than 1001");
  const c10::IValue sys_info = next("the file's sys_info", no_storages);
  if (!sys_info.isGenericDict()) fail("the file's sys_info is not a dict");
  const auto info = sys_info.toGenericDict();
  auto little = info.find("little_endian");
  if (little == info.end() || !little->value().isBool() || !little->value().toBool())
    fail("the file was written on a big-endian machine; only little-endian files are read");
  // Storages are allocated when the object names them and filled from the data after it: together
  // they may claim no more bytes than the file has left.
  std::map<std::string, torch::Tensor> pending;
  uint64_t claimed = 0;
  const StorageLoader later = [&](const std::string& key, torch::Dtype dtype, int64_t numel) {
    const uint64_t element = c10::elementSize(dtype), left = size - pos;
    if (uint64_t(numel) > (left - std::min(left, claimed)) / element)
      fail("the object's storage " + printable(key) + " claims " + std::to_string(numel) + " elements of " +
           std::to_string(element) + " bytes, more than the file holds (a truncated or corrupt file)");
    claimed += uint64_t(numel) * element;
    torch::Tensor t = torch::zeros({numel}, torch::TensorOptions().dtype(dtype));
    pending[key] = t;
    return t;
  };
  c10::IValue result = next("the pickled object", later);
  const c10::IValue keys = next("the list of storage keys", no_storages);
  if (!keys.isList()) fail("the file's list of storage keys is not a list");
  size_t filled = 0;
  for (const auto& k : keys.toListRef()) {
    if (!k.isString()) fail("the file's list of storage keys holds a " + std::string(k.tagKind()));
    const std::string key = k.toStringRef();
    auto it = pending.find(key);
    if (it == pending.end()) fail("the file holds data for storage " + printable(key) + ", which its object does not use");
    torch::Tensor& t = it->second;
    if (!t.defined()) fail("the file holds storage " + printable(key) + " twice");
    if (size - pos < 8) fail("the file ends before storage " + printable(key) + " (a truncated file?)");
    const uint64_t numel = le64(file + pos);
    pos += 8;
    if (numel != uint64_t(t.numel()))
      fail("storage " + printable(key) + " holds " + std::to_string(numel) + " elements, but the object says " +
           std::to_string(t.numel()) + " (a corrupt file)");
    const uint64_t bytes = numel * uint64_t(t.element_size());  // bounded by the file when it was claimed
    if (size - pos < bytes) fail("the file ends inside storage " + printable(key) + " (a truncated file?)");
    if (bytes > 0) std::memcpy(t.data_ptr(), file + pos, bytes);
    pos += bytes;
    t = torch::Tensor();  // filled (the views keep the storage)
    ++filled;
  }
  if (filled != pending.size())
    fail("the file holds data for " + std::to_string(filled) + " of the " + std::to_string(pending.size()) +
         " storages its object uses (a truncated or corrupt file)");
  return result;
}

}  // namespace

c10::IValue parse_torch_save(const char* data, size_t size) {
  const auto* file = reinterpret_cast<const unsigned char*>(data);
  if (size >= sizeof kLegacyMagic && std::memcmp(file, kLegacyMagic, sizeof kLegacyMagic) == 0)
    return parse_legacy(file, size);
  if (size < 4 || std::memcmp(file, "PK\x03\x04", 4) != 0)
    fail("not a zip archive (the format of torch.save since PyTorch 1.6) nor torch.save's older format");
  const ZipArchive zip(file, size);
  // <folder>/data.pkl: the folder is whatever the writer chose ("archive", the file's stem, ...).
  std::string pickle_name;
  for (const auto& [name, entry] : zip.entries()) {
    const bool match = name == "data.pkl" || (name.size() > 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0 &&
                                              name.find('/') == name.size() - 9);
    if (!match) continue;
    if (!pickle_name.empty()) fail("the zip archive holds two data.pkl entries (" + printable(pickle_name) + ", " + printable(name) + ")");
    pickle_name = name;
  }
  if (pickle_name.empty()) fail("the zip archive holds no data.pkl: not a torch.save file");
  const std::string folder = pickle_name.substr(0, pickle_name.size() - 8);  // with its '/'
  if (const ZipEntry* order = zip.find(folder + "byteorder")) {
    const auto* b = zip.bytes(folder + "byteorder", *order);
    const std::string value(reinterpret_cast<const char*>(b), std::min<uint64_t>(order->size, 16));
    if (value != "little") fail("the file's byte order is '" + printable(value) + "'; only little-endian files are read");
  }
  const ZipEntry& pickle = *zip.find(pickle_name);
  const unsigned char* pickle_bytes = zip.bytes(pickle_name, pickle);
  StorageLoader load = [&](const std::string& key, torch::Dtype dtype, int64_t numel) {
    const std::string name = folder + "data/" + key;
    const ZipEntry* entry = zip.find(name);
    if (!entry) fail("data.pkl refers to storage " + printable(key) + ", which the archive lacks (no " + printable(name) + ")");
    const uint64_t element = c10::elementSize(dtype);
    if (uint64_t(numel) > entry->size / element || uint64_t(numel) * element != entry->size)
      fail("storage " + printable(name) + " holds " + std::to_string(entry->size) + " bytes, but data.pkl says " +
           std::to_string(numel) + " elements of " + std::to_string(element) + " bytes (a truncated or corrupt file)");
    const unsigned char* bytes = zip.bytes(name, *entry);
    torch::Tensor t = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    if (entry->size > 0) std::memcpy(t.data_ptr(), bytes, entry->size);
    return t;
  };
  Unpickler unpickler(pickle_bytes, pickle.size, load);
  return unpickler.run();
}

c10::IValue read_torch_save(const std::string& path) {
  const std::vector<char> bytes = read_regular_file(path);
  try {
    return parse_torch_save(bytes.data(), bytes.size());
  } catch (const TorchSaveError& e) {
    throw UserError("cannot load " + path + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw UserError("cannot load " + path + ": out of memory");
  } catch (const c10::Error& e) {
    throw UserError("cannot load " + path + ": " + first_line(e.what()));
  }
}

std::vector<std::pair<std::string, torch::Tensor>> state_dict_from(const c10::IValue& value, const std::string& what) {
  if (!value.isGenericDict()) throw UserError(what + " is not a state dict (a dict of tensors)");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& kv : value.toGenericDict()) {
    if (!kv.key().isString()) throw UserError(what + " has a key that is not a string");
    const std::string& name = kv.key().toStringRef();
    if (!kv.value().isTensor()) throw UserError(what + "['" + printable(name) + "'] is not a tensor");
    out.emplace_back(name, kv.value().toTensor());
  }
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path) {
  return state_dict_from(read_torch_save(path), path);
}

}  // namespace dgpt
