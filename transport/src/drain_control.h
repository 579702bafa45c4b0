// Drain control: how fast an output sends its backlog to a receiver that has just come back.
//
// The backlog (frames older than the output's live lane) goes under a token bucket whose rate
// starts at `initial_percent` of `drain.rate` and ramps up linearly over `drain.ramp`, so a
// recovering processor is not flooded. Pushback from the receiver (429, 503, a timeout, or a
// response slower than `latency_target`) multiplies the rate by `backoff_percent`
// (multiplicative decrease); every run of `clean_responses` clean responses adds
// `increase_percent` of `drain.rate` back (additive increase), up to `drain.rate`.
//
// Rates count record bytes: the records' size as stored in the buffer, before OTLP encoding or
// gzip, which is what the receiver has to take in.
//
// Pure logic over time points the caller passes: no clock, no I/O, one thread.
#pragma once

#include <chrono>
#include <cstdint>

#include "cistern/transport/outputs.h"

namespace cistern::transport {

using SteadyTime = std::chrono::steady_clock::time_point;

// A byte budget refilled at a rate; consuming may go into debt (a batch is never split), which
// later refills pay back, so the long-run rate is exact whatever the batch sizes.
class TokenBucket {
 public:
  // Starts full... of nothing: no tokens, so the first batch waits one refill's worth at most.
  void reset(SteadyTime now);
  // Changes the refill rate from `now` on (what accrued before is kept). `burst` is the most the
  // bucket holds after an idle time, in seconds of the rate.
  void setRate(SteadyTime now, double bytes_per_second, double burst_seconds = 0.1);
  // True when the balance is not negative.
  [[nodiscard]] bool ready(SteadyTime now);
  void consume(std::uint64_t bytes) { tokens_ -= static_cast<double>(bytes); }
  // How long until ready(); zero when ready now. A zero rate waits "forever" (one hour).
  [[nodiscard]] std::chrono::nanoseconds waitTime(SteadyTime now);
  [[nodiscard]] double rate() const { return rate_; }

 private:
  void refill(SteadyTime now);
  double rate_ = 0;
  double capacity_ = 0;
  double tokens_ = 0;
  SteadyTime last_{};
};

class DrainController {
 public:
  explicit DrainController(const DrainOptions& options);

  // A backlog starts draining (at start with a backlog left, or on recovery): the ramp starts at
  // `now` from initial_percent, and earlier pushback is forgotten.
  void startRamp(SteadyTime now);

  // The backlog's rate limit now (bytes/s), or 0 when it is not limited.
  [[nodiscard]] double rate(SteadyTime now) const;
  [[nodiscard]] bool limited() const { return options_.rate > 0; }
  // The ramp reached the whole rate (always true when not limited).
  [[nodiscard]] bool rampDone(SteadyTime now) const;

  // Whether a backlog batch may go now (the balance is not negative).
  [[nodiscard]] bool ready(SteadyTime now);
  // Charges a backlog batch that went (a batch is never split: the balance may go negative).
  void charge(std::uint64_t bytes) { bucket_.consume(bytes); }
  // How long the next backlog batch has to wait.
  [[nodiscard]] std::chrono::nanoseconds waitTime(SteadyTime now);
  // A good size for a backlog batch at the current rate: 20 ms of it (the caller reads at least
  // one frame), at most `max_bytes`.
  [[nodiscard]] std::size_t batchBytes(SteadyTime now, std::size_t max_bytes) const;

  // The receiver answered a batch (live or backlog). `pushback`: 429/503 or a timeout.
  void onResponse(SteadyTime now, bool pushback, std::chrono::nanoseconds latency);

  // Batches of live data allowed in flight while a backlog exists, out of `max_in_flight`.
  [[nodiscard]] std::size_t liveSlots(std::size_t max_in_flight) const;

  [[nodiscard]] std::uint64_t pushbacks() const { return pushbacks_; }
  [[nodiscard]] const DrainOptions& options() const { return options_; }

 private:
  [[nodiscard]] double rampCap(SteadyTime now) const;
  void applyRate(SteadyTime now);

  DrainOptions options_;
  SteadyTime ramp_start_{};
  double aimd_ = 0;  // the AIMD limit, bytes/s; the ramp caps it while it runs
  std::uint32_t clean_ = 0;
  SteadyTime quiet_until_{};  // pushback is ignored until then (one decrease per episode)
  std::uint64_t pushbacks_ = 0;
  TokenBucket bucket_;
};

}  // namespace cistern::transport
