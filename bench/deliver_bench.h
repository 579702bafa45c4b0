#pragma once

#include <cstdint>
#include <filesystem>

namespace cistern::bench {

struct DeliverBenchOptions {
  std::uint64_t records = 2'000'000;
  std::size_t record_size = 200;
  bool gzip = false;
  std::size_t in_flight = 4;            // the output's max_in_flight, and wrk's connections
  std::size_t batch_bytes = 1U << 20U;  // the output's max_batch_bytes
  int wrk_seconds = 5;
  bool warm = false;  // read the whole ring into the page cache before the drain
  int repeat = 3;
  std::filesystem::path dir;
};

// Runs the delivery benchmark; prints per-run lines and a final JSON line. Returns the exit
// code.
int runDeliverBench(const DeliverBenchOptions& options);

}  // namespace cistern::bench
