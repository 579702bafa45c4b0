// Counter: one named figure of a component (an input, an output), for metrics, heartbeats and
// the CLI's statistics.
#pragma once

#include <cstdint>
#include <string>

namespace cistern {

struct Counter {
  std::string name;  // snake_case, stable: "packets_captured", "records_acked"
  std::uint64_t value = 0;
  bool known = true;  // false: the platform does not report it (shown as unknown, not 0)
};

}  // namespace cistern
