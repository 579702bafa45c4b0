// Clock: the seam where code reads time. Production code takes a Clock& and tests pass a
// ManualClock (tests/fakes) that they advance, so nothing in a unit test depends on real time.
#pragma once

#include <chrono>
#include <cstdint>

namespace cistern::platform {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time for intervals and deadlines; never goes backwards. Any thread.
  [[nodiscard]] virtual std::chrono::steady_clock::time_point now() const = 0;
  // Wall-clock time in nanoseconds since the Unix epoch, for timestamps that leave the process.
  [[nodiscard]] virtual std::uint64_t wallNanos() const = 0;
};

// The operating system's clocks (CLOCK_MONOTONIC and CLOCK_REALTIME).
class SystemClock final : public Clock {
 public:
  [[nodiscard]] std::chrono::steady_clock::time_point now() const override;
  [[nodiscard]] std::uint64_t wallNanos() const override;
  // The process-wide instance; SystemClock has no state, so sharing it is safe.
  static SystemClock& instance();
};

}  // namespace cistern::platform
