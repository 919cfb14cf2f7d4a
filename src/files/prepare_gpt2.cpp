#include "files/prepare_gpt2.h"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <thread>

#include "files/bpe.h"
#include "files/atomic_file.h"
#include "base/human_format.h"
#include "files/prepare.h"
#include "base/errors.h"

namespace dgpt {

namespace {

namespace fs = std::filesystem;

void write_gpt2_meta(const std::string& out_dir) {
  nlohmann::json meta;
  meta["tokenizer"] = "gpt2";
  meta["vocab_size"] = Gpt2Bpe::kVocabSize;
  write_file_atomically(out_dir + "/meta.json", meta.dump(1) + "\n");
}

std::string human_count(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e4)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

// ---- Inputs -----------------------------------------------------------------------------------

enum class Kind { kJsonl, kTxt };

struct InputFile {
  std::string path;
  Kind kind;
  uint64_t size;
};

std::optional<Kind> kind_of(const fs::path& p) {
  const std::string ext = p.extension().string();
  if (ext == ".jsonl") return Kind::kJsonl;
  if (ext == ".txt") return Kind::kTxt;
  return std::nullopt;
}

std::vector<InputFile> expand_inputs(const std::vector<std::string>& inputs) {
  if (inputs.empty())
    throw UserError("prepare openwebtext needs --input PATH... (.jsonl files with a \"text\" field per line, "
                    ".txt files with one document each, or folders of them)");
  std::vector<InputFile> files;
  for (const auto& in : inputs) {
    std::error_code ec;
    const auto st = fs::status(in, ec);
    if (ec || !fs::exists(st)) throw UserError("cannot read input " + in + ": no such file or folder");
    if (fs::is_directory(st)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(in, fs::directory_options::follow_directory_symlink, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file() && kind_of(it->path())) found.push_back(it->path().string());
      if (ec) throw UserError("cannot list folder " + in + ": " + ec.message());
      if (found.empty()) throw UserError("folder " + in + " holds no .jsonl or .txt files");
      std::sort(found.begin(), found.end());
      for (auto& f : found) files.push_back({f, *kind_of(f), uint64_t(fs::file_size(f, ec))});
    } else {
      const auto k = kind_of(in);
      if (!k) throw UserError("input " + in + " is neither .jsonl (one JSON object per line) nor .txt (one document)");
      if (::access(in.c_str(), R_OK) != 0) throw UserError("cannot read input " + in + ": " + std::strerror(errno));
      files.push_back({in, *k, uint64_t(fs::file_size(in, ec))});
    }
  }
  return files;
}

bool blank(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') return false;
  return true;
}

struct File {
  FILE* f = nullptr;
  explicit File(const std::string& path, const char* mode) : f(std::fopen(path.c_str(), mode)) {}
  ~File() {
    if (f) std::fclose(f);
  }
};

// Records of a .jsonl file: its non-blank lines. on_bytes(n) after each block read.
template <class F>
uint64_t count_jsonl_records(const std::string& path, F&& on_bytes) {
  File in(path, "rb");
  if (!in.f) throw UserError("cannot read input " + path + ": " + std::strerror(errno));
  std::vector<char> buf(1 << 22);
  uint64_t records = 0;
  bool line_has_content = false;
  for (;;) {
    const size_t got = std::fread(buf.data(), 1, buf.size(), in.f);
    if (got == 0) break;
    on_bytes(got);
    const char* p = buf.data();
    const char* end = p + got;
    while (p < end) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', size_t(end - p)));
      const char* stop = nl ? nl : end;
      if (!line_has_content && !blank(p, size_t(stop - p))) line_has_content = true;
      if (!nl) break;
      records += line_has_content;
      line_has_content = false;
      p = nl + 1;
    }
  }
  if (std::ferror(in.f)) throw UserError("cannot read input " + path + ": " + std::strerror(errno));
  return records + line_has_content;
}

// ---- The pipeline -----------------------------------------------------------------------------

struct Record {
  size_t off, len;
  uint32_t file;
  uint64_t line;  // 1-based line in a .jsonl file; 0 for a .txt document
};

struct Batch {
  uint64_t seq = 0;
  uint64_t first_record = 0;  // global index of records[0]
  uint64_t bytes = 0;         // input bytes this batch accounts for
  std::string buf;
  std::vector<Record> records;
};

struct Result {
  std::vector<uint16_t> train, val;
  uint64_t train_docs = 0, val_docs = 0, malformed = 0, bytes = 0;
  std::vector<std::string> problems;  // the first few malformed records, "file:line: why"
};

template <class T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t cap) : cap_(cap) {}
  // False when the queue was aborted.
  bool push(T item) {
    std::unique_lock<std::mutex> lk(mu_);
    not_full_.wait(lk, [&] { return q_.size() < cap_ || aborted_; });
    if (aborted_) return false;
    q_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }
  // nullopt once closed and drained, or aborted.
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lk(mu_);
    not_empty_.wait(lk, [&] { return !q_.empty() || closed_ || aborted_; });
    if (aborted_ || q_.empty()) return std::nullopt;
    T item = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return item;
  }
  void close() {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }
  void abort() {
    std::lock_guard<std::mutex> lk(mu_);
    aborted_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

 private:
  size_t cap_;
  std::deque<T> q_;
  bool closed_ = false, aborted_ = false;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
};

constexpr size_t kMaxProblemsShown = 10;

// Uniform integer in [0, bound) from a 64-bit generator, without modulo bias; portable.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

// Which records go to val: k = ceil(fraction * n) of them (at most n - 1), a uniform sample drawn
// with Floyd's algorithm from `seed`.
std::vector<bool> choose_val(uint64_t n, double fraction, uint64_t seed, uint64_t* k_out) {
  std::vector<bool> val(n, false);
  uint64_t k = 0;
  if (fraction > 0 && n >= 2) k = std::min<uint64_t>(n - 1, uint64_t(std::ceil(fraction * double(n) - 1e-9)));
  std::mt19937_64 rng(seed);
  for (uint64_t j = n - k; j < n; ++j) {
    const uint64_t t = uniform_below(rng, j + 1);
    if (val[t])
      val[j] = true;
    else
      val[t] = true;
  }
  *k_out = k;
  return val;
}

struct Pipeline {
  const Gpt2Bpe& bpe;
  const std::vector<InputFile>& files;
  const std::vector<bool>& is_val;
  const size_t window;  // results allowed ahead of the writer
  const size_t batch_bytes;

  BoundedQueue<Batch> batches;
  std::mutex res_mu;
  std::condition_variable res_cv;  // a result arrived / the writer moved on / the reader finished
  std::map<uint64_t, Result> results;
  uint64_t next_write = 0;
  bool reader_done = false;
  uint64_t n_batches = 0;
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex err_mu;

  Pipeline(const Gpt2Bpe& b, const std::vector<InputFile>& f, const std::vector<bool>& v, size_t workers,
           size_t batch)
      : bpe(b), files(f), is_val(v), window(2 * workers + 4), batch_bytes(std::max<size_t>(batch, 1)),
        batches(2 * workers + 2) {}

  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lk(err_mu);
      if (!error) error = e;
    }
    failed = true;
    batches.abort();
    std::lock_guard<std::mutex> lk(res_mu);
    res_cv.notify_all();
  }

  void reader() {
    try {
      uint64_t seq = 0, record = 0;
      Batch cur;
      auto flush = [&](bool force) {
        if (cur.records.empty() && cur.bytes == 0) return true;
        if (!force && cur.buf.size() < batch_bytes) return true;
        cur.seq = seq++;
        const uint64_t n = cur.records.size();
        Batch out = std::move(cur);
        cur = Batch{};
        cur.first_record = out.first_record + n;
        return batches.push(std::move(out));
      };
      std::vector<char> block(std::min<size_t>(batch_bytes, size_t(1) << 20));
      for (uint32_t fi = 0; fi < files.size() && !failed; ++fi) {
        const InputFile& in = files[fi];
        File f(in.path, "rb");
        if (!f.f) throw UserError("cannot read input " + in.path + ": " + std::strerror(errno));
        if (in.kind == Kind::kTxt) {
          const size_t off = cur.buf.size();
          size_t got;
          while ((got = std::fread(block.data(), 1, block.size(), f.f)) > 0) cur.buf.append(block.data(), got);
          if (std::ferror(f.f)) throw UserError("cannot read input " + in.path + ": " + std::strerror(errno));
          if (record >= is_val.size()) throw UserError("the inputs changed while being read");
          cur.records.push_back({off, cur.buf.size() - off, fi, 0});
          cur.bytes += cur.buf.size() - off;
          ++record;
          if (!flush(false)) return;
          continue;
        }
        // .jsonl: complete lines go to batches; a partial line waits for the next block.
        uint64_t line = 0;
        std::string pending;
        bool eof = false;
        while (!eof && !failed) {
          const size_t got = std::fread(block.data(), 1, block.size(), f.f);
          if (got == 0) {
            if (std::ferror(f.f)) throw UserError("cannot read input " + in.path + ": " + std::strerror(errno));
            eof = true;
            if (pending.empty()) break;
            pending += '\n';
          } else {
            pending.append(block.data(), got);
          }
          const size_t last_nl = pending.rfind('\n');
          if (last_nl == std::string::npos) continue;
          // Lines of pending[0, last_nl] go into `cur`.
          const size_t base = cur.buf.size();
          cur.buf.append(pending, 0, last_nl + 1);
          cur.bytes += last_nl + 1 - (eof ? 1 : 0);
          size_t p = base;
          const size_t end = cur.buf.size();
          while (p < end) {
            const size_t nl = cur.buf.find('\n', p);
            ++line;
            size_t len = nl - p;
            if (len > 0 && cur.buf[p + len - 1] == '\r') --len;
            if (!blank(cur.buf.data() + p, len)) {
              if (record >= is_val.size()) throw UserError("input " + in.path + " changed while being read");
              cur.records.push_back({p, len, fi, line});
              ++record;
            }
            p = nl + 1;
          }
          pending.erase(0, last_nl + 1);
          if (!flush(false)) return;
        }
        if (!flush(true)) return;
      }
      if (!flush(true)) return;
      if (record != is_val.size())
        throw UserError("the inputs changed while being read (" + std::to_string(record) + " documents, " +
                        std::to_string(is_val.size()) + " counted before)");
      batches.close();
      std::lock_guard<std::mutex> lk(res_mu);
      reader_done = true;
      n_batches = seq;
      res_cv.notify_all();
    } catch (...) {
      fail(std::current_exception());
    }
  }

  void process(const Batch& b, Result& r) const {
    r.bytes = b.bytes;
    nlohmann::json doc;
    for (size_t i = 0; i < b.records.size(); ++i) {
      const Record& rec = b.records[i];
      const InputFile& in = files[rec.file];
      const std::string_view raw(b.buf.data() + rec.off, rec.len);
      std::string_view text;
      std::string why;
      if (in.kind == Kind::kJsonl) {
        doc = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
        if (doc.is_discarded())
          why = "not valid JSON";
        else if (!doc.is_object())
          why = "not a JSON object";
        else if (auto it = doc.find("text"); it == doc.end())
          why = "no \"text\" field";
        else if (!it->is_string())
          why = "\"text\" is not a string";
        else
          text = it->get_ref<const std::string&>();
      } else {
        text = raw;
      }
      const bool val = is_val[b.first_record + i];
      std::vector<uint16_t>& out = val ? r.val : r.train;
      const size_t before = out.size();
      if (why.empty()) {
        try {
          bpe.encode_ordinary_into(text, out);
          out.push_back(uint16_t(Gpt2Bpe::kEndOfText));
        } catch (const UserError&) {
          out.resize(before);
          why = "not valid UTF-8";
        }
      }
      if (!why.empty()) {
        ++r.malformed;
        if (r.problems.size() < kMaxProblemsShown)
          r.problems.push_back(in.path + (rec.line ? ":" + std::to_string(rec.line) : std::string()) + ": " + why);
        continue;
      }
      ++(val ? r.val_docs : r.train_docs);
    }
  }

  void worker() {
    try {
      while (auto b = batches.pop()) {
        Result r;
        process(*b, r);
        std::unique_lock<std::mutex> lk(res_mu);
        res_cv.wait(lk, [&] { return b->seq < next_write + window || failed; });
        if (failed) return;
        results.emplace(b->seq, std::move(r));
        res_cv.notify_all();
      }
    } catch (...) {
      fail(std::current_exception());
    }
  }
};

class Progress {
 public:
  Progress(bool on, uint64_t total_bytes) : on_(on), total_(total_bytes), t0_(now()) {}
  void update(uint64_t bytes, uint64_t docs, uint64_t tokens, bool force = false) {
    if (!on_) return;
    const double t = now();
    if (!force && t - last_ < 0.2) return;
    last_ = t;
    const double el = std::max(t - t0_, 1e-9);
    const double rate = double(bytes) / el;
    const double frac = total_ ? std::min(1.0, double(bytes) / double(total_)) : 1.0;
    const int width = 24, fill = int(frac * width + 0.5);
    std::string bar(size_t(fill), '#');
    bar.append(size_t(width - fill), '.');
    std::fprintf(stderr, "\r[%s] %5.1f%% %s/%s | %s docs | %s tokens | %s/s | ETA %s \033[K", bar.c_str(),
                 100 * frac, human_bytes(double(bytes)).c_str(), human_bytes(double(total_)).c_str(),
                 human_count(double(docs)).c_str(), human_count(double(tokens)).c_str(), human_bytes(rate).c_str(),
                 human_duration(rate > 0 ? double(total_ - std::min(total_, bytes)) / rate : -1).c_str());
    std::fflush(stderr);
  }
  void done() {
    if (on_) std::fprintf(stderr, "\n");
  }
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

 private:
  bool on_;
  uint64_t total_;
  double t0_, last_ = 0;
};

// A temporary output file, removed unless committed.
struct TempOut {
  std::string final_path, tmp_path;
  FILE* f = nullptr;
  std::vector<char> buf;
  explicit TempOut(const std::string& path)
      : final_path(path), tmp_path(path + ".tmp." + std::to_string(::getpid())), buf(1 << 22) {
    f = std::fopen(tmp_path.c_str(), "wb");
    if (!f) throw UserError("cannot write " + tmp_path + ": " + std::strerror(errno));
    std::setvbuf(f, buf.data(), _IOFBF, buf.size());
  }
  void write(const std::vector<uint16_t>& ids) {
    if (ids.empty()) return;
    // uint16 little-endian, as nanoGPT's np.uint16 .tofile()
    static_assert(sizeof(uint16_t) == 2);
    if (std::fwrite(ids.data(), 2, ids.size(), f) != ids.size())
      throw UserError("cannot write " + tmp_path + ": " + std::strerror(errno));
  }
  void finish() {
    const bool ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    const bool closed = std::fclose(f) == 0;
    f = nullptr;
    if (!ok || !closed) throw UserError("cannot write " + tmp_path + ": " + std::strerror(errno));
  }
  void commit() {
    if (std::rename(tmp_path.c_str(), final_path.c_str()) != 0)
      throw UserError("cannot rename " + tmp_path + " to " + final_path + ": " + std::strerror(errno));
    tmp_path.clear();
  }
  ~TempOut() {
    if (f) std::fclose(f);
    if (!tmp_path.empty()) std::remove(tmp_path.c_str());
  }
};

}  // namespace

void prepare_shakespeare_gpt2(const std::string& input, const std::string& out_dir, std::ostream& log) {
  const auto bpe = Gpt2Bpe::load();  // before any download: say first if the tokenizer files are missing
  make_dirs(out_dir);
  const std::string source = tinyshakespeare_source(input, out_dir, log);
  const std::string text = read_text_file(source);
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string::npos)
    throw UserError("input " + source + " is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  // nanoGPT: n = len(data) characters; train = data[:int(n*0.9)].
  size_t n_chars = 0;
  for (unsigned char c : text) n_chars += (c & 0xC0) != 0x80;
  if (n_chars < 2) throw UserError("input " + source + " is too short");
  const size_t split_chars = size_t(double(n_chars) * 0.9);
  size_t split = 0;
  for (size_t seen = 0; split < text.size(); ++split) {
    if ((static_cast<unsigned char>(text[split]) & 0xC0) != 0x80) {
      if (seen == split_chars) break;
      ++seen;
    }
  }
  log << "length of dataset in characters: " << n_chars << "\n";
  const auto train = bpe->encode_ordinary(std::string_view(text).substr(0, split));
  const auto val = bpe->encode_ordinary(std::string_view(text).substr(split));
  write_token_file(out_dir + "/train.bin", train);
  write_token_file(out_dir + "/val.bin", val);
  write_gpt2_meta(out_dir);
  log << "train has " << train.size() << " tokens\n";
  log << "val has " << val.size() << " tokens\n";
  log << "wrote " << out_dir << "/train.bin, val.bin, meta.json\n";
}

OpenWebTextSummary prepare_openwebtext(const OpenWebTextOptions& opt, std::ostream& log) {
  if (!(opt.val_fraction >= 0 && opt.val_fraction < 1))
    throw UserError("--val_fraction must be in [0, 1), got " + std::to_string(opt.val_fraction));
  if (opt.threads < 0) throw UserError("--threads must be >= 0");
  const auto files = expand_inputs(opt.inputs);
  const auto bpe = Gpt2Bpe::load();
  make_dirs(opt.out_dir);

  OpenWebTextSummary sum;
  sum.threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const bool progress = opt.progress == 1 || (opt.progress == -1 && ::isatty(2));
  const double t0 = Progress::now();

  // First pass: the number of documents, for an exact-size validation split.
  uint64_t total_bytes = 0, n_records = 0, counted = 0;
  for (const auto& f : files) total_bytes += f.size;
  double last_shown = 0;
  for (const auto& f : files) {
    if (f.kind == Kind::kTxt) {
      ++n_records;
      counted += f.size;
      continue;
    }
    n_records += count_jsonl_records(f.path, [&](size_t n) {
      counted += n;
      if (progress && Progress::now() - last_shown > 0.2) {
        last_shown = Progress::now();
        std::fprintf(stderr, "\rcounting documents: %s/%s read\033[K", human_bytes(double(counted)).c_str(),
                     human_bytes(double(total_bytes)).c_str());
      }
    });
  }
  if (progress && last_shown > 0) std::fprintf(stderr, "\r\033[K");
  if (n_records == 0) throw UserError("the inputs hold no documents");
  uint64_t k_val = 0;
  const std::vector<bool> is_val = choose_val(n_records, opt.val_fraction, opt.seed, &k_val);
  log << "openwebtext: " << files.size() << " input file" << (files.size() == 1 ? "" : "s") << ", "
      << human_bytes(double(total_bytes)) << ", " << grouped(n_records) << " documents (" << grouped(k_val)
      << " to val), " << sum.threads << " tokenizer thread" << (sum.threads == 1 ? "" : "s") << "\n"
      << std::flush;

  TempOut train(opt.out_dir + "/train.bin"), val(opt.out_dir + "/val.bin");
  Pipeline pl(*bpe, files, is_val, size_t(sum.threads), opt.batch_bytes);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { pl.reader(); });
  for (int i = 0; i < sum.threads; ++i) threads.emplace_back([&] { pl.worker(); });
  auto stop_all = [&] {
    pl.fail(std::make_exception_ptr(std::runtime_error("stopped")));
    for (auto& t : threads)
      if (t.joinable()) t.join();
  };

  Progress bar(progress, total_bytes);
  std::vector<std::string> problems;
  try {
    for (;;) {
      std::unique_lock<std::mutex> lk(pl.res_mu);
      pl.res_cv.wait_for(lk, std::chrono::milliseconds(200), [&] {
        return pl.failed || pl.results.count(pl.next_write) || (pl.reader_done && pl.next_write == pl.n_batches);
      });
      if (pl.failed) break;
      if (pl.reader_done && pl.next_write == pl.n_batches) break;
      auto it = pl.results.find(pl.next_write);
      if (it == pl.results.end()) {
        lk.unlock();
        bar.update(sum.bytes, sum.train_documents + sum.val_documents, sum.train_tokens + sum.val_tokens);
        continue;
      }
      Result r = std::move(it->second);
      pl.results.erase(it);
      ++pl.next_write;
      pl.res_cv.notify_all();
      lk.unlock();
      train.write(r.train);
      val.write(r.val);
      sum.train_tokens += r.train.size();
      sum.val_tokens += r.val.size();
      sum.train_documents += r.train_docs;
      sum.val_documents += r.val_docs;
      sum.malformed += r.malformed;
      sum.bytes += r.bytes;
      for (auto& p : r.problems)
        if (problems.size() < kMaxProblemsShown) problems.push_back(std::move(p));
      bar.update(sum.bytes, sum.train_documents + sum.val_documents, sum.train_tokens + sum.val_tokens);
    }
  } catch (...) {
    bar.done();
    stop_all();
    throw;
  }
  for (auto& t : threads) t.join();
  bar.update(sum.bytes, sum.train_documents + sum.val_documents, sum.train_tokens + sum.val_tokens, true);
  bar.done();
  if (pl.error) std::rethrow_exception(pl.error);

  sum.documents = n_records;
  sum.seconds = Progress::now() - t0;
  for (const auto& p : problems) log << "skipped " << p << "\n";
  if (sum.malformed > problems.size())
    log << "skipped " << grouped(sum.malformed - problems.size()) << " more malformed documents\n";
  if (sum.train_tokens == 0) throw UserError("no document could be read: nothing to write to train.bin");

  train.finish();
  val.finish();
  val.commit();
  train.commit();
  write_gpt2_meta(opt.out_dir);
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.1f s (%.2f MB/s)", sum.seconds,
                double(sum.bytes) / 1e6 / std::max(sum.seconds, 1e-9));
  log << "openwebtext: " << grouped(sum.train_documents + sum.val_documents) << " documents ("
      << grouped(sum.train_documents) << " train, " << grouped(sum.val_documents) << " val), "
      << grouped(sum.train_tokens) << " train tokens, " << grouped(sum.val_tokens) << " val tokens, "
      << grouped(sum.malformed) << " malformed skipped; " << human_bytes(double(sum.bytes)) << " in " << rate
      << " with " << sum.threads << " thread" << (sum.threads == 1 ? "" : "s") << "\n";
  log << "wrote " << opt.out_dir << "/train.bin, val.bin, meta.json\n";
  if (sum.val_tokens == 0 && opt.val_fraction > 0)
    log << "warning: val.bin is empty (too few documents for --val_fraction " << opt.val_fraction << ")\n";
  return sum;
}

}  // namespace dgpt
