// Small helpers shared by the cistern-bench subcommands.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cistern/buffer/options.h"
#include "cistern/capture/source.h"
#include "cistern/core/result.h"
#include "cistern/platform/process.h"

namespace cistern::bench {

using BenchClock = std::chrono::steady_clock;

// The p-th percentile (0..100) by nearest rank; 0 for an empty set.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  return v[static_cast<std::size_t>(std::lround(rank))];
}

// The median of field(run) over the runs.
template <typename Run, typename Field>
double medianOf(const std::vector<Run>& runs, Field field) {
  std::vector<double> v;
  v.reserve(runs.size());
  for (const auto& r : runs) v.push_back(field(r));
  return percentile(std::move(v), 50);
}

inline double mbPerS(std::uint64_t bytes, double seconds) {
  return static_cast<double>(bytes) / 1e6 / seconds;
}

inline double secondsSince(BenchClock::time_point t0) {
  return std::chrono::duration<double>(BenchClock::now() - t0).count();
}

inline const char* syncName(buffer::SyncMode m) {
  switch (m) {
    case buffer::SyncMode::kBatch:
      return "batch";
    case buffer::SyncMode::kAlways:
      return "always";
    case buffer::SyncMode::kNone:
      return "none";
  }
  return "?";
}

// Samples resident memory every 5 ms: VmHWM alone cannot tell heap from mapped file pages.
class MemorySampler {
 public:
  MemorySampler() : thread_([this] { run(); }) {}
  ~MemorySampler() {
    stop_ = true;
    thread_.join();
  }
  MemorySampler(const MemorySampler&) = delete;
  MemorySampler& operator=(const MemorySampler&) = delete;

  double peakAnonMb() const { return static_cast<double>(peak_anon_.load()) / 1e6; }
  double peakFileMb() const { return static_cast<double>(peak_file_.load()) / 1e6; }
  // Starts the peaks again from the current figures (one run of several in one process).
  void reset() {
    const auto m = platform::memoryUsage();
    peak_anon_ = m.rss_anon_bytes;
    peak_file_ = m.rss_file_bytes;
  }

 private:
  void run() {
    while (!stop_) {
      const auto m = platform::memoryUsage();
      peak_anon_ = std::max(peak_anon_.load(), m.rss_anon_bytes);
      peak_file_ = std::max(peak_file_.load(), m.rss_file_bytes);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> peak_anon_{0};
  std::atomic<std::uint64_t> peak_file_{0};
  std::thread thread_;
};

// A source's counters by name (all of them known for the sources the benchmarks use).
std::map<std::string, std::uint64_t> counterMap(const capture::Source& source);

// Writes all of `data` to `fd`, retrying short writes. `path` names the file in errors (kIo).
Status writeAll(int fd, std::span<const char> data, const std::filesystem::path& path);

// Reads the file from start to end in reads of `chunk` bytes, handing each to `consume`.
// Returns the bytes read. Errors: kIo.
Result<std::uint64_t> readChunks(const std::filesystem::path& path, std::size_t chunk,
                                 const std::function<void(std::span<const char>)>& consume);

// Evicts the file's pages from the page cache (they must be clean: written back or synced), so
// the next reads come from the disk. Errors: kIo.
Status dropPageCache(const std::filesystem::path& path);

// Starts a run's memory figures afresh in a process that ran others before: returns the heap the
// earlier runs freed to the system (malloc_trim) and resets the kernel's peak resident size
// (VmHWM) to the current one. Returns false when the kernel refused the reset (then VmHWM still
// covers the earlier runs).
bool resetPeakRss();

// CPU seconds (user + system) this process used so far, all threads.
double processCpuSeconds();

// A reference program run to completion: how long it took and what it used.
struct ChildRun {
  int exit_code = 0;  // 128 + signal when killed by one
  double wall_s = 0;
  double cpu_s = 0;  // user + system of the child
  double peak_rss_mb = 0;
};

// Runs argv[0] (searched in PATH) with stdin, stdout and stderr on /dev/null and waits for it.
// Errors: kNotFound (no such program), kIo (cannot start it).
Result<ChildRun> runChild(const std::vector<std::string>& argv);

}  // namespace cistern::bench
