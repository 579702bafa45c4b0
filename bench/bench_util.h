// Small helpers shared by the cistern-bench subcommands.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "cistern/buffer/options.h"

namespace cistern::bench {

// The p-th percentile (0..100) by nearest rank; 0 for an empty set.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  return v[static_cast<std::size_t>(std::lround(rank))];
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

}  // namespace cistern::bench
