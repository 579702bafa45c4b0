#include "bench_util.h"

#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string_view>
#include <thread>

extern char** environ;

namespace cistern::bench {
namespace {

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

// A "Name:   123 kB" field of a /proc/PID/status file, in KiB; 0 when absent (the process
// exited).
std::uint64_t statusKib(const std::string& path, std::string_view field) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + field.size(), nullptr, 10);
  }
  return 0;
}

}  // namespace

bool resetPeakRss() {
  ::malloc_trim(0);
  // "5" resets VmHWM to the current resident size (proc(5), /proc/PID/clear_refs).
  const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool done = ::write(fd, "5", 1) == 1;
  ::close(fd);
  return done;
}

std::map<std::string, std::uint64_t> counterMap(const capture::Source& source) {
  std::map<std::string, std::uint64_t> m;
  for (const auto& c : source.counters()) m[c.name] = c.value;
  return m;
}

Status writeAll(int fd, std::span<const char> data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      return fail(ErrorCode::kIo, "write " + path.string() + ": " + std::strerror(errno));
    }
    data = data.subspan(static_cast<std::size_t>(w));
  }
  return ok();
}

Result<std::uint64_t> readChunks(const std::filesystem::path& path, std::size_t chunk,
                                 const std::function<void(std::span<const char>)>& consume) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(ErrorCode::kIo, "open " + path.string() + ": " + std::strerror(errno));
  std::vector<char> buf(chunk);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return fail(ErrorCode::kIo, "read " + path.string() + ": " + std::strerror(err));
    }
    if (n == 0) break;
    total += static_cast<std::uint64_t>(n);
    consume(std::span<const char>(buf.data(), static_cast<std::size_t>(n)));
  }
  ::close(fd);
  return total;
}

Status dropPageCache(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(ErrorCode::kIo, "open " + path.string() + ": " + std::strerror(errno));
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  if (rc != 0) return fail(ErrorCode::kIo, "fadvise " + path.string() + ": " + std::strerror(rc));
  return ok();
}

double processCpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

Result<ChildRun> runChild(const std::vector<std::string>& argv) {
  if (argv.empty()) return fail(ErrorCode::kInvalidArgument, "runChild: no program");
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    posix_spawn_file_actions_addopen(&actions, fd, "/dev/null",
                                     fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0);
  }
  const auto t0 = BenchClock::now();
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return fail(rc == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                "cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  // The child's ru_maxrss is useless here: exec() folds the spawning process's high-water mark
  // into it. Its own VmHWM is sampled instead while it runs, beside a blocking wait so that the
  // wall time ends when the child does.
  std::atomic<bool> exited{false};
  std::atomic<std::uint64_t> peak_kib{0};
  std::thread sampler([&] {
    const std::string path = "/proc/" + std::to_string(pid) + "/status";
    while (!exited.load()) {
      peak_kib = std::max(peak_kib.load(), statusKib(path, "VmHWM:"));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  int status = 0;
  rusage ru{};
  pid_t waited = 0;
  while ((waited = ::wait4(pid, &status, 0, &ru)) < 0 && errno == EINTR) {
  }
  const double wall_s = secondsSince(t0);
  const int wait_errno = errno;
  exited = true;
  sampler.join();
  if (waited < 0) {
    return fail(ErrorCode::kIo, "waiting for " + argv[0] + ": " + std::strerror(wait_errno));
  }
  ChildRun r;
  r.wall_s = wall_s;
  r.cpu_s = seconds(ru.ru_utime) + seconds(ru.ru_stime);
  r.peak_rss_mb = static_cast<double>(peak_kib.load()) * 1024.0 / 1e6;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace cistern::bench
