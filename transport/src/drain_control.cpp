#include "drain_control.h"

#include <algorithm>

namespace cistern::transport {
namespace {

using Seconds = std::chrono::duration<double>;

// The floor of the AIMD rate, as a share of the configured rate: pushback never stops the drain.
constexpr double kMinShare = 0.01;
// Time a batch of the current rate should stand for.
constexpr double kBatchSeconds = 0.02;

}  // namespace

void TokenBucket::reset(SteadyTime now) {
  tokens_ = 0;
  last_ = now;
}

void TokenBucket::refill(SteadyTime now) {
  if (now > last_) {
    tokens_ = std::min(capacity_, tokens_ + rate_ * Seconds(now - last_).count());
    last_ = now;
  }
}

void TokenBucket::setRate(SteadyTime now, double bytes_per_second, double burst_seconds) {
  refill(now);
  rate_ = std::max(0.0, bytes_per_second);
  capacity_ = rate_ * burst_seconds;
  tokens_ = std::min(tokens_, capacity_);
}

bool TokenBucket::ready(SteadyTime now) {
  refill(now);
  return tokens_ >= 0;
}

std::chrono::nanoseconds TokenBucket::waitTime(SteadyTime now) {
  if (ready(now)) return std::chrono::nanoseconds(0);
  if (rate_ <= 0) return std::chrono::hours(1);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(-tokens_ / rate_)) +
         std::chrono::nanoseconds(1);
}

DrainController::DrainController(const DrainOptions& options) : options_(options) {
  options_.initial_percent = std::clamp<std::uint32_t>(options_.initial_percent, 1, 100);
  options_.backoff_percent = std::clamp<std::uint32_t>(options_.backoff_percent, 1, 99);
  options_.live_share_percent = std::clamp<std::uint32_t>(options_.live_share_percent, 0, 100);
  options_.clean_responses = std::max<std::uint32_t>(options_.clean_responses, 1);
  aimd_ = static_cast<double>(options_.rate);
}

void DrainController::startRamp(SteadyTime now) {
  ramp_start_ = now;
  aimd_ = static_cast<double>(options_.rate);
  clean_ = 0;
  quiet_until_ = now;
  bucket_.reset(now);
  applyRate(now);
}

double DrainController::rampCap(SteadyTime now) const {
  const auto full = static_cast<double>(options_.rate);
  if (options_.ramp.count() <= 0 || now >= ramp_start_ + options_.ramp) return full;
  const double initial = full * options_.initial_percent / 100.0;
  const double progress =
      std::max(0.0, Seconds(now - ramp_start_).count() / Seconds(options_.ramp).count());
  return initial + (full - initial) * progress;
}

double DrainController::rate(SteadyTime now) const {
  if (!limited()) return 0;
  return std::min(rampCap(now), aimd_);
}

bool DrainController::rampDone(SteadyTime now) const {
  return !limited() || options_.ramp.count() <= 0 || now >= ramp_start_ + options_.ramp;
}

void DrainController::applyRate(SteadyTime now) {
  // A burst of 100 ms of the rate at most, and at least room for the refill between two
  // batches, so an idle pause does not turn into a flood.
  bucket_.setRate(now, rate(now), 0.1);
}

bool DrainController::ready(SteadyTime now) {
  if (!limited()) return true;
  applyRate(now);  // the ramp moves on with time
  return bucket_.ready(now);
}

std::chrono::nanoseconds DrainController::waitTime(SteadyTime now) {
  if (!limited()) return std::chrono::nanoseconds(0);
  applyRate(now);
  return bucket_.waitTime(now);
}

std::size_t DrainController::batchBytes(SteadyTime now, std::size_t max_bytes) const {
  if (!limited()) return max_bytes;
  const auto want = static_cast<std::size_t>(rate(now) * kBatchSeconds);
  return std::clamp<std::size_t>(want, 1, max_bytes);
}

void DrainController::onResponse(SteadyTime now, bool pushback, std::chrono::nanoseconds latency) {
  const bool slow = options_.latency_target.count() > 0 && latency > options_.latency_target;
  if (pushback || slow) {
    clean_ = 0;
    // Responses to batches sent before the decrease say nothing new: one decrease per episode.
    if (now < quiet_until_ || !limited()) return;
    ++pushbacks_;
    const double floor = static_cast<double>(options_.rate) * kMinShare;
    aimd_ = std::max(floor, rate(now) * options_.backoff_percent / 100.0);
    quiet_until_ = now + std::max<std::chrono::nanoseconds>(options_.latency_target,
                                                            std::chrono::milliseconds(500));
    applyRate(now);
    return;
  }
  if (!limited() || ++clean_ < options_.clean_responses) return;
  clean_ = 0;
  const auto full = static_cast<double>(options_.rate);
  aimd_ = std::min(full, aimd_ + full * options_.increase_percent / 100.0);
  applyRate(now);
}

std::size_t DrainController::liveSlots(std::size_t max_in_flight) const {
  const std::size_t share = max_in_flight * options_.live_share_percent / 100;
  // The backlog keeps at least one slot when there are two or more; live keeps at least one.
  return std::clamp<std::size_t>(share, 1, max_in_flight > 1 ? max_in_flight - 1 : 1);
}

}  // namespace cistern::transport
