#include "files/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ostream>

#include "base/errors.h"

namespace dgpt {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw UserError(what + " " + path + ": " + std::strerror(err ? err : EIO));
}

// write(2) until every byte is out. Returns 0, or the errno of the write that failed (a short
// write is followed by one that says why: ENOSPC, EFBIG, ...).
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    data += n;
    size -= size_t(n);
  }
  return 0;
}

// fsync, where the file supports it (a pipe, /dev/null or /dev/full does not: EINVAL, EROFS).
int sync_file(int fd) {
  if (::fsync(fd) == 0 || errno == EINVAL || errno == EROFS) return 0;
  return errno;
}

// --- signals -------------------------------------------------------------------------------
// The signal handler may only touch these (lock-free atomics) and call async-signal-safe functions.

// The temporary file of the write_file_atomically in progress (one at a time: the main thread
// writes files). g_temp_set is raised only once g_temp_path holds the whole name.
char g_temp_path[4096];
std::atomic<bool> g_temp_set{false};
std::atomic<int> g_graceful{0};    // GracefulStop scopes alive
std::atomic<int> g_stop_signal{0}; // the first SIGINT/SIGTERM inside one

void write_stderr(const char* s) {
  const ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

void on_stop_signal(int sig) {
  const bool graceful = g_graceful.load() > 0;
  if (graceful && g_stop_signal.load() == 0) {
    g_stop_signal.store(sig);  // the run stops at its next safe point
    return;
  }
  if (g_temp_set.load()) ::unlink(g_temp_path);
  if (graceful) {
    write_stderr(sig == SIGINT ? "interrupted again (SIGINT): exiting at once\n"
                               : "interrupted again (SIGTERM): exiting at once\n");
    ::_exit(128 + sig);
  }
  ::signal(sig, SIG_DFL);  // end as the signal would have (the parent sees it), now without the file
  ::raise(sig);
}

// Registers a temporary file for the signal handler and removes it on scope exit, unless
// committed (renamed into place).
class TempFile {
 public:
  explicit TempFile(const std::string& path) : path_(path) {
    if (path.size() < sizeof g_temp_path) {
      std::memcpy(g_temp_path, path.c_str(), path.size() + 1);
      g_temp_set.store(true);
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!committed_) ::unlink(path_.c_str());
    g_temp_set.store(false);
  }
  void commit() { committed_ = true; }

 private:
  std::string path_;
  bool committed_ = false;
};

// The files that dgpt train writes through write_file_atomically in out_dir.
bool is_training_temp_file(const char* name) {
  return std::strncmp(name, "ckpt.pt.tmp.", 12) == 0 || std::strncmp(name, "init.pt.tmp.", 12) == 0;
}

// What a lock file says about its holder, printable and short (anyone could have written it).
std::string read_lock_holder(int fd) {
  char buf[256] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s;
  for (ssize_t i = 0; i < n; ++i)
    if (buf[i] >= 0x20 && buf[i] < 0x7f) s += buf[i];
  return s.empty() ? "pid unknown" : s;
}

std::string this_holder() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");
  return "pid " + std::to_string(::getpid()) + " on host " + host;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& bytes) {
  write_file_atomically(path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

void write_file_atomically(const std::string& path, const std::function<void(const ByteSink& sink)>& produce) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  TempFile temp(tmp);  // registered before it exists, so a signal never leaves it behind
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("cannot write", path, errno);  // the file asked for, not its temporary name
  int err = 0;
  try {
    produce([&](const char* data, size_t size) {
      if (!err) err = write_all(fd, data, size);
    });
  } catch (...) {
    ::close(fd);  // the temporary file goes with `temp`
    throw;
  }
  if (!err) err = sync_file(fd);  // the data is on disk before the rename makes it the file
  if (::close(fd) != 0 && !err) err = errno;
  if (err) fail("cannot write", path, err);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot write", path, errno);
  temp.commit();
  // Best effort: the rename itself survives a power cut once the folder is synced.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void make_dirs(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw UserError("cannot create folder " + dir + ": " + std::strerror(errno));
}

void flush_checked(std::ostream& out, const std::string& what) {
  errno = 0;
  out.flush();
  if (!out)
    throw UserError("cannot write " + what + ": " + (errno ? std::strerror(errno) : "the stream is in a failed state"));
}

// --- LineFile ------------------------------------------------------------------------------

LineFile::~LineFile() {
  if (fd_ >= 0) ::close(fd_);
}

void LineFile::open(const std::string& path, bool append) {
  close();
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0666);
  if (fd_ < 0) fail("cannot write", path, errno);
  struct stat st {};
  size_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : 0;
}

void LineFile::write_line(const std::string& line) {
  const std::string bytes = line + "\n";
  if (const int err = write_all(fd_, bytes.data(), bytes.size())) {
    // Cut off what part of the line got written. It fails only where there is nothing to cut
    // (a device such as /dev/full), so its result does not matter.
    const int cut = ::ftruncate(fd_, size_);
    (void)cut;
    fail("cannot write", path_, err);
  }
  size_ += (long long)bytes.size();
}

void LineFile::close() {
  if (fd_ < 0) return;
  int err = sync_file(fd_);
  if (::close(fd_) != 0 && !err) err = errno;
  fd_ = -1;
  if (err) fail("cannot write", path_, err);
}

// --- OutDirLock ----------------------------------------------------------------------------

OutDirLock::OutDirLock(const std::string& out_dir) {
  const std::string path = out_dir + "/train.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0) fail("cannot create the lock file", path, errno);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? read_lock_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) fail("cannot lock", path, err);
    throw UserError("out_dir " + out_dir + " is in use by another training run (" + holder + ", lock " + path +
                    "): wait for it to end, stop it, or choose another out_dir");
  }
  // The holder's name: written over the old one, then cut to length, so a reader sees a whole name.
  const std::string holder = this_holder() + "\n";
  int err = 0;
  if (::pwrite(fd_, holder.data(), holder.size(), 0) != ssize_t(holder.size())) err = errno ? errno : EIO;
  if (!err && ::ftruncate(fd_, off_t(holder.size())) != 0) err = errno;
  if (err) {
    ::close(fd_);
    fd_ = -1;
    fail("cannot write", path, err);
  }
  // No other run writes here now: what temporary files there are, a killed run left.
  if (DIR* d = ::opendir(out_dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (is_training_temp_file(e->d_name)) ::unlink((out_dir + "/" + e->d_name).c_str());
    ::closedir(d);
  }
}

OutDirLock::~OutDirLock() {
  if (fd_ >= 0) ::close(fd_);  // and the kernel drops the lock
}

// --- signals -------------------------------------------------------------------------------

void install_signal_handlers() {
  ::signal(SIGXFSZ, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;  // a stop request must not break the system calls in progress
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

GracefulStop::GracefulStop() {
  g_stop_signal.store(0);
  g_graceful.fetch_add(1);
}

GracefulStop::~GracefulStop() { g_graceful.fetch_sub(1); }

int GracefulStop::requested() const { return g_stop_signal.load(); }

std::string signal_name(int sig) {
  if (sig == SIGINT) return "SIGINT";
  if (sig == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(sig);
}

Interrupted::Interrupted(int sig) : std::runtime_error("interrupted by " + signal_name(sig)), signal(sig) {}

}  // namespace dgpt
