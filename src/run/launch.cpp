#include "run/launch.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "base/errors.h"

namespace dgpt {

namespace {

std::atomic<int> g_forward_signal{0};
void on_signal(int sig) { g_forward_signal = sig; }

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw UserError(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw UserError(std::string("cannot find a free port on loopback: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct Rank {
  pid_t pid = -1;
  int out_fd = -1;  // the rank's stdout and stderr, merged
  std::string partial;  // an unterminated line
  std::string last_error;  // its last "error:" line
  bool running = true;
  int status = 0;
};

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + ::strsignal(WTERMSIG(status));
  return "stopped";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void emit_lines(int rank, Rank& r, const char* data, size_t n, bool flush_partial) {
  r.partial.append(data, n);
  size_t start = 0, nl;
  while ((nl = r.partial.find('\n', start)) != std::string::npos) {
    const std::string line = r.partial.substr(start, nl - start);
    if (line.rfind("error: ", 0) == 0) r.last_error = line;
    std::cout << "[rank " << rank << "] " << line << "\n";
    start = nl + 1;
  }
  r.partial.erase(0, start);
  if (flush_partial && !r.partial.empty()) {
    std::cout << "[rank " << rank << "] " << r.partial << "\n";
    r.partial.clear();
  }
  std::cout.flush();
}

}  // namespace

int launch(const LaunchOptions& opt, const std::vector<std::string>& args) {
  if (opt.nproc < 1) throw UserError("--nproc must be at least 1");
  if (args.empty()) throw UserError("nothing to launch: give a dgpt command after --, e.g. -- train CONFIG.py --backend=gloo");
  const int port = opt.master_port > 0 ? opt.master_port : free_loopback_port();
  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) throw UserError("cannot find the dgpt executable (/proc/self/exe)");
  self[len] = '\0';
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max(1u, hw / unsigned(opt.nproc)));

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::vector<Rank> ranks(size_t(opt.nproc));
  const pid_t launcher = ::getpid();
  for (int i = 0; i < opt.nproc; ++i) {
    int fds[2];
    // O_CLOEXEC: rank j > i must not inherit rank i's read end. A rank whose pipe another rank
    // also holds open would block on a full pipe (instead of getting EPIPE) once the launcher is gone.
    if (::pipe2(fds, O_CLOEXEC) != 0) throw UserError(std::string("pipe: ") + std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) throw UserError(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // A rank dies with its launcher (even one killed by SIGKILL, which cannot forward anything):
      // orphaned ranks would otherwise train on, or wait comm_timeout in a collective, holding the
      // port and the checkpoint. SIGKILL, because a rank with nobody to report to has nothing to
      // finish (checkpoints are written to a temporary file and renamed). The flag survives execv;
      // checking getppid() afterwards closes the race of a launcher that died before prctl.
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != launcher) ::_exit(1);
      ::setpgid(0, 0);  // Ctrl-C reaches the launcher, which forwards it: one signal per rank
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::setenv("RANK", std::to_string(i).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(opt.nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(opt.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("OMP_NUM_THREADS", threads.c_str(), 0);  // as torchrun: do not oversubscribe the cores
      std::vector<char*> argv{self};
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(self, argv.data());
      std::fprintf(stderr, "error: cannot start %s: %s\n", self, std::strerror(errno));
      ::_exit(127);
    }
    ::close(fds[1]);
    ranks[size_t(i)].pid = pid;
    ranks[size_t(i)].out_fd = fds[0];
  }
  std::cout << "launch: " << opt.nproc << " ranks (pids";
  for (const auto& r : ranks) std::cout << " " << r.pid;
  std::cout << "), rendezvous on 127.0.0.1:" << port << "\n" << std::flush;

  int failed_rank = -1;
  auto failure_time = std::chrono::steady_clock::now();
  bool killed = false;
  auto signal_all = [&](int sig) {
    for (auto& r : ranks)
      if (r.running) ::kill(r.pid, sig);
  };
  while (true) {
    if (int sig = g_forward_signal.exchange(0)) signal_all(sig);

    std::vector<pollfd> fds;
    std::vector<int> owners;
    for (int i = 0; i < opt.nproc; ++i)
      if (ranks[size_t(i)].out_fd >= 0) {
        fds.push_back({ranks[size_t(i)].out_fd, POLLIN, 0});
        owners.push_back(i);
      }
    if (!fds.empty() && ::poll(fds.data(), fds.size(), 100) > 0) {
      for (size_t k = 0; k < fds.size(); ++k) {
        if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto& r = ranks[size_t(owners[k])];
        char buf[8192];
        const ssize_t n = ::read(r.out_fd, buf, sizeof buf);
        if (n > 0) {
          emit_lines(owners[k], r, buf, size_t(n), false);
        } else if (n == 0 || errno != EINTR) {
          emit_lines(owners[k], r, "", 0, true);
          ::close(r.out_fd);
          r.out_fd = -1;
        }
      }
    } else if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    bool any_running = false;
    int newly_failed = -1;
    for (int i = 0; i < opt.nproc; ++i) {
      auto& r = ranks[size_t(i)];
      if (!r.running) continue;
      int status = 0;
      if (::waitpid(r.pid, &status, WNOHANG) == r.pid) {
        r.running = false;
        r.status = status;
        // A rank killed by a signal is the likelier cause than peers that saw it vanish.
        if (exit_code_of(status) != 0 &&
            (newly_failed < 0 || (WIFSIGNALED(status) && !WIFSIGNALED(ranks[size_t(newly_failed)].status))))
          newly_failed = i;
      } else {
        any_running = true;
      }
    }
    if (newly_failed >= 0 && failed_rank < 0) {
      failed_rank = newly_failed;
      failure_time = std::chrono::steady_clock::now();
      signal_all(SIGTERM);  // fail fast: the other ranks would only wait for the failed one
    }
    if (failed_rank >= 0 && any_running && !killed &&
        std::chrono::steady_clock::now() - failure_time > std::chrono::duration<double>(opt.grace_seconds)) {
      signal_all(SIGKILL);
      killed = true;
    }
    bool any_output = false;
    for (auto& r : ranks) any_output |= r.out_fd >= 0;
    if (!any_running && !any_output) break;
  }

  if (failed_rank < 0) {
    std::cout << "launch: all " << opt.nproc << " ranks finished\n";
    return 0;
  }
  const auto& f = ranks[size_t(failed_rank)];
  std::cerr << "error: rank " << failed_rank << " " << describe(f.status)
            << (f.last_error.empty() ? "" : ": " + f.last_error.substr(7)) << "\n";
  return exit_code_of(f.status);
}

}  // namespace dgpt
