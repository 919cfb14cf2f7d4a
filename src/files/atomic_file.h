// Small file-system helpers with user-facing errors: whole files written atomically, files written
// a line at a time, the lock that keeps one training run per out_dir, and the signals that must
// not leave torn or temporary files behind.
//
// Every write here is checked (write, fsync, close, rename): a failure is a UserError naming the
// file and the cause ("No space left on device", "File too large"), and leaves nothing torn.
#pragma once
#include <functional>
#include <iosfwd>
#include <stdexcept>
#include <string>

namespace dgpt {

// Writes `bytes` to `path` through a temporary file (`path.tmp.PID`), fsync and a rename, so
// `path` is never torn: it is the old file or the new one. On any failure, and on SIGINT/SIGTERM
// (see install_signal_handlers), the temporary file is removed.
void write_file_atomically(const std::string& path, const std::string& bytes);
// The same for a file too big to hold as one string (an exported model): `produce` hands the
// file's bytes, in order, to the sink it is given; a failed write stops the writing (later calls
// to the sink do nothing) and is reported as above once `produce` returns.
using ByteSink = std::function<void(const char* data, size_t size)>;
void write_file_atomically(const std::string& path, const std::function<void(const ByteSink& sink)>& produce);
// mkdir -p. Throws UserError when the folder cannot be made.
void make_dirs(const std::string& dir);

// Flushes `out` and checks it: a failed write is a UserError naming `what` ("the training log
// (stdout)") and the cause. A log flushed at every line loses no line when its run stops.
void flush_checked(std::ostream& out, const std::string& what);

// A file that grows a line at a time (metrics.jsonl). Each line is one checked write(2); a line
// written only in part (a full disk) is cut off again, so the file only ever holds whole lines.
class LineFile {
 public:
  LineFile() = default;
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;
  ~LineFile();  // closes without reporting (an error is already on its way, or close() was called)

  void open(const std::string& path, bool append);
  void write_line(const std::string& line);  // appends line + "\n"
  void close();                              // fsync and close, checked; a no-op when not open

 private:
  int fd_ = -1;
  std::string path_;
  long long size_ = 0;  // bytes of whole lines in the file
};

// One training run per out_dir: an flock(2) on `out_dir/train.lock`, taken by the process that
// writes (rank 0). The kernel drops it when the holder exits in any way, SIGKILL included, so a
// crashed run never blocks the next one; the file itself stays (removing it would race with a run
// that has just opened it) and holds the holder's pid and host, for the message of a run that
// finds it taken. Taking it also removes the temporary files a killed run left in out_dir.
class OutDirLock {
 public:
  // Throws UserError naming out_dir and the other run's pid and host when the lock is taken.
  explicit OutDirLock(const std::string& out_dir);
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;
  ~OutDirLock();

 private:
  int fd_ = -1;
};

// Signals, installed once by main():
// - SIGXFSZ is ignored, so a write beyond `ulimit -f` fails with EFBIG and is reported like any
//   other write error instead of killing the process silently.
// - SIGINT/SIGTERM remove the temporary file of a write_file_atomically in progress, then end the
//   process as the signal would have; except inside a GracefulStop scope (training), where the
//   first one only asks the run to stop at its next safe point, and a second one removes the
//   temporary file and exits at once with 128 + signal.
void install_signal_handlers();

// While alive, SIGINT/SIGTERM ask for a stop instead of killing: requested() is the signal (0 when
// none came), which the owner checks at points where it can stop cleanly.
class GracefulStop {
 public:
  GracefulStop();
  GracefulStop(const GracefulStop&) = delete;
  GracefulStop& operator=(const GracefulStop&) = delete;
  ~GracefulStop();
  int requested() const;
};

// Thrown by a run that stopped cleanly on a signal; main() exits with 128 + signal.
struct Interrupted : std::runtime_error {
  explicit Interrupted(int sig);
  int signal;
};

// "SIGINT", "SIGTERM", or "signal N".
std::string signal_name(int sig);

}  // namespace dgpt
