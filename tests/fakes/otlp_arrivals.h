// OtlpArrivals: when each log record reached an OtlpMock, for tests that measure rates and delays
// at the receiver. The mock keeps no times, so a thread of its own waits for the mock's record
// count to grow and stamps the new records with the wall clock (seconds since the epoch, the clock
// nginx's logs use), within about a millisecond of the mock decoding them.
//
//   OtlpMock mock;
//   OtlpArrivals arrivals(mock);            // from now on
//   ...
//   const auto records = mock.records();
//   const auto times = arrivals.times();    // times[i]: when records[i] arrived
//
// The count is found with OtlpMock::waitForRecords(n, 0), which only compares, so watching costs
// a few lock round trips per arrival instead of a copy of every record decoded so far.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "otlp_mock.h"

namespace cistern::testing {

// The wall clock as seconds since the epoch (microsecond resolution).
inline double wallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class OtlpArrivals {
 public:
  // Records already decoded are stamped with the time of the first check.
  explicit OtlpArrivals(OtlpMock& mock) : mock_(mock), thread_([this] { run(); }) {}
  ~OtlpArrivals() {
    stop_ = true;
    thread_.join();
  }
  OtlpArrivals(const OtlpArrivals&) = delete;
  OtlpArrivals& operator=(const OtlpArrivals&) = delete;

  // One time per record the mock decoded so far, in the order of OtlpMock::records().
  [[nodiscard]] std::vector<double> times() const {
    std::lock_guard lk(mu_);
    return times_;
  }

 private:
  bool atLeast(std::size_t n) { return mock_.waitForRecords(n, std::chrono::milliseconds(0)); }

  // The mock's record count, knowing it is at least `known` + 1: doubling steps, then halving.
  std::size_t count(std::size_t known) {
    std::size_t low = known + 1;  // present
    std::size_t step = 1;
    while (atLeast(low + step)) {
      low += step;
      step *= 2;
    }
    std::size_t high = low + step;  // absent
    while (high - low > 1) {
      const std::size_t mid = low + (high - low) / 2;
      (atLeast(mid) ? low : high) = mid;
    }
    return low;
  }

  void run() {
    std::size_t known = 0;
    while (!stop_) {
      if (!mock_.waitForRecords(known + 1, std::chrono::milliseconds(20))) {
        // The mock exited (the wait returns at once then): do not spin.
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      const double now = wallSeconds();
      const std::size_t n = count(known);
      std::lock_guard lk(mu_);
      times_.resize(n, now);
      known = n;
    }
  }

  OtlpMock& mock_;
  mutable std::mutex mu_;
  std::vector<double> times_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once the members it uses exist
};

}  // namespace cistern::testing
