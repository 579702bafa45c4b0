// Subprocess: runs a program as a child with stdout and stderr captured, bounded in time.
//
//   auto r = cistern::testing::run({"/path/to/cistern", "version"});
//   REQUIRE(r.exit_code == 0);
//
// For children that must be killed mid-flight (crash tests), use Child directly: it exposes
// the pid and a non-blocking reader of stdout.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

namespace cistern::testing {

struct RunResult {
  int exit_code = -1;  // exit status, or 128 + signal number when killed
  std::string out;
  std::string err;
  bool timed_out = false;
};

class Child {
 public:
  // Starts `argv[0]` with `argv`, stdin from /dev/null. Aborts the test binary if fork fails.
  explicit Child(const std::vector<std::string>& argv) {
    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) std::abort();
    // Built before the fork: the child of a threaded test binary calls only async-signal-safe
    // functions until it execs.
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      const int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::dup2(out_pipe[1], 1);
      ::dup2(err_pipe[1], 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    out_fd_ = out_pipe[0];
    err_fd_ = err_pipe[0];
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

  // Reads what is available on stdout/stderr within `timeout`; returns false at EOF on both.
  bool pump(std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(timeout.count()));
    if (n <= 0) return out_fd_ >= 0 || err_fd_ >= 0;
    drain(fds[0], out_fd_, out_);
    drain(fds[1], err_fd_, err_);
    return out_fd_ >= 0 || err_fd_ >= 0;
  }

  // Waits for exit; returns the exit code (128 + signal when killed).
  int wait() {
    if (reaped_) return exit_code_;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  void kill(int sig) { ::kill(pid_, sig); }
  std::string& out() { return out_; }
  std::string& err() { return err_; }

 private:
  static void drain(const pollfd& p, int& fd, std::string& into) {
    if (fd < 0 || (p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) return;
    char buf[65536];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
    } else {
      ::close(fd);
      fd = -1;
    }
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::string out_;
  std::string err_;
};

// Runs to completion, killing the child after `timeout`.
inline RunResult run(const std::vector<std::string>& argv,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  Child child(argv);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  RunResult r;
  while (child.pump(std::chrono::milliseconds(100))) {
    if (std::chrono::steady_clock::now() > deadline) {
      child.kill(SIGKILL);
      r.timed_out = true;
      break;
    }
  }
  r.exit_code = child.wait();
  while (child.pump(std::chrono::milliseconds(10))) {
  }
  r.out = std::move(child.out());
  r.err = std::move(child.err());
  return r;
}

// Path of a program built by this project, e.g. binary("agent/cistern").
inline std::string binary(const std::string& relative) {
  return std::string(CISTERN_BINARY_DIR) + "/" + relative;
}

}  // namespace cistern::testing
