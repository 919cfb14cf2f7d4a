#include "files/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/errors.h"
#include "files/tokenizer.h"

namespace dgpt {

TokenFile::TokenFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever (it is refused below).
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    throw UserError("cannot open token file " + path + ": " + std::strerror(errno) +
                    " (run `dgpt prepare <dataset>` first, or set data_dir)");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw UserError("cannot stat token file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UserError("token file " + path + " is not a regular file (" +
                    (S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket") + ")");
  }
  if (st.st_size == 0) {
    ::close(fd);
    throw UserError("token file " + path + " is empty");
  }
  if (st.st_size % 2 != 0) {
    ::close(fd);
    throw UserError("token file " + path + " has an odd size (" + std::to_string(st.st_size) +
                    " bytes): it is truncated or not a uint16 token file");
  }
  void* p = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw UserError("cannot map token file " + path + ": " + std::strerror(errno));
  tokens_ = static_cast<const uint16_t*>(p);
  mapped_bytes_ = size_t(st.st_size);
  n_tokens_ = st.st_size / 2;
}

TokenFile::~TokenFile() {
  if (tokens_) ::munmap(const_cast<uint16_t*>(tokens_), mapped_bytes_);
}

void TokenFile::set_vocab_size(int64_t vocab_size, const std::string& vocabulary) {
  vocab_size_ = vocab_size;
  vocabulary_ = vocabulary;
  scanned_ = false;
  if (n_tokens_ <= kScanAtOpenTokens) {
    check_range(0, n_tokens_);
    scanned_ = true;
  }
}

void TokenFile::check_range(int64_t begin, int64_t length) const {
  if (scanned_ || vocab_size_ >= 65536) return;
  const uint16_t limit = uint16_t(vocab_size_);
  const uint16_t* p = tokens_ + begin;
  uint16_t max_id = 0;
  for (int64_t i = 0; i < length; ++i) max_id = std::max(max_id, p[i]);  // vectorises; the rare error looks again
  if (max_id < limit) return;
  for (int64_t i = 0; i < length; ++i)
    if (p[i] >= limit)
      throw UserError("token file " + path_ + " holds token id " + std::to_string(p[i]) + " at position " +
                      std::to_string(begin + i) + ", outside the vocabulary of " +
                      (vocabulary_.empty() ? std::to_string(vocab_size_) + " tokens" : vocabulary_) +
                      " (the data and its meta.json do not match: prepare the dataset again)");
}

torch::Tensor TokenFile::slice(int64_t begin, int64_t length) const {
  TORCH_CHECK(begin >= 0 && begin + length <= n_tokens_, "slice out of range");
  auto out = torch::empty({length}, torch::kLong);
  auto* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < length; ++i) dst[i] = tokens_[begin + i];
  return out;
}

uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t p : parts) {
    uint64_t z = h + p + 0x9E3779B97F4A7C15ull;  // splitmix64 step over the running state
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h = z ^ (z >> 31);
  }
  return h;
}

namespace {
// Uniform integers in [0, n) from a splitmix64 stream, by rejection: the same on every platform.
class Uniform {
 public:
  explicit Uniform(uint64_t seed) : state_(seed) {}
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = next(); while (r >= limit);
    return r % n;
  }

 private:
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};
}  // namespace

Batch sample_batch(const TokenFile& file, int64_t batch_size, int64_t block_size, uint64_t stream_seed,
                   torch::Device device) {
  const int64_t windows = file.size() - block_size;
  if (windows <= 0)
    throw UserError("token file " + file.path() + " has " + std::to_string(file.size()) +
                    " tokens, too few for block_size " + std::to_string(block_size));
  Uniform offsets(stream_seed);
  auto x = torch::empty({batch_size, block_size}, torch::kLong);
  auto y = torch::empty({batch_size, block_size}, torch::kLong);
  auto* xs = x.data_ptr<int64_t>();
  auto* ys = y.data_ptr<int64_t>();
  const uint16_t* tokens = file.data();
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t start = int64_t(offsets.below(uint64_t(windows)));
    file.check_range(start, block_size + 1);
    for (int64_t t = 0; t < block_size; ++t) {
      xs[b * block_size + t] = tokens[start + t];
      ys[b * block_size + t] = tokens[start + t + 1];
    }
  }
  if (device.is_cpu()) return {x, y};
  return {x.pin_memory().to(device, /*non_blocking=*/true), y.pin_memory().to(device, true)};
}

Dataset Dataset::open(const std::string& dir, int64_t block_size) {
  Dataset d;
  d.train = std::make_unique<TokenFile>(dir + "/train.bin");
  d.val = std::make_unique<TokenFile>(dir + "/val.bin");
  for (const TokenFile* f : {d.train.get(), d.val.get()})
    if (f->size() <= block_size)
      throw UserError("token file " + f->path() + " has " + std::to_string(f->size()) +
                      " tokens, too few for block_size " + std::to_string(block_size));
  d.vocab_size = dataset_vocab_size(dir);
  const std::string vocabulary = describe_dataset_vocabulary(dir);
  for (TokenFile* f : {d.train.get(), d.val.get()}) f->set_vocab_size(d.vocab_size, vocabulary);
  return d;
}

}  // namespace dgpt
