#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>

#include "cistern/buffer/options.h"

namespace cistern::bench {

struct BufferBenchOptions {
  std::uint64_t records = 2'000'000;
  std::uint64_t record_size = 200;
  buffer::SyncMode sync = buffer::SyncMode::kBatch;
  buffer::Codec codec = buffer::Codec::kNone;
  int consumers = 1;
  int ack_consumers = -1;  // how many consumers acknowledge what they read; -1: all
  int repeat = 3;
  std::uint64_t max_size = 0;  // 0: large enough for the whole run
  // 0: the ring's defaults (RingOptions).
  std::uint64_t commit_max_bytes = 0;
  std::uint64_t ingest_max_bytes = 0;
  std::chrono::nanoseconds commit_interval{0};
  std::filesystem::path dir;
  bool keep = false;
  bool phases = false;  // print memory use after each phase
};

// Runs the buffer benchmark; prints per-run lines and a final JSON line. Returns the exit code.
int runBufferBench(const BufferBenchOptions& options);

}  // namespace cistern::bench
