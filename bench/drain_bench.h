#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>

namespace cistern::bench {

struct DrainBenchOptions {
  std::uint64_t backlog_mib = 256;            // the backlog built before the output starts
  std::uint64_t rate = 10ULL << 20U;          // drain.rate, bytes of records per second
  std::size_t record_size = 1000;             // log-line bytes per backlog record
  std::chrono::milliseconds ramp{2000};       // drain.ramp
  std::chrono::milliseconds heartbeat{1000};  // heartbeat.interval (and max_interval)
  int repeat = 1;
  std::filesystem::path dir;
};

// Runs the drain benchmark; prints per-run lines and a final JSON line. Returns the exit code.
int runDrainBench(const DrainBenchOptions& options);

}  // namespace cistern::bench
