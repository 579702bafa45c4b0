#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>

#include "cistern/buffer/options.h"

namespace cistern::bench {

struct TailBenchOptions {
  std::uint64_t lines = 2'000'000;
  std::uint32_t line_size = 200;  // bytes per line, the "\n" included
  buffer::SyncMode sync = buffer::SyncMode::kBatch;
  int repeat = 3;
  // The input's poll interval; 0 keeps FileTailOptions' default.
  std::chrono::nanoseconds poll_interval{0};
  std::filesystem::path dir;  // where the file and the rings go
  bool keep = false;
};

// Runs the file tail benchmark; prints per-run lines and a final JSON line. Returns the exit code.
int runTailBench(const TailBenchOptions& options);

}  // namespace cistern::bench
