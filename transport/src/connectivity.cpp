#include "connectivity.h"

#include <algorithm>
#include <utility>

namespace cistern::transport {

const char* outputStateName(OutputState state) noexcept {
  switch (state) {
    case OutputState::kHealthy:
      return "healthy";
    case OutputState::kDown:
      return "down";
    case OutputState::kRecovering:
      return "recovering";
  }
  return "?";
}

Connectivity::Connectivity(HeartbeatOptions options, SteadyTime now, std::uint64_t seed)
    : options_(std::move(options)), last_heartbeat_(now), rng_(seed) {
  options_.failures = std::max<std::uint32_t>(options_.failures, 1);
  if (options_.interval.count() <= 0) options_.interval = std::chrono::milliseconds(1);
  options_.max_interval = std::max(options_.max_interval, options_.interval);
}

std::chrono::nanoseconds Connectivity::jittered(std::chrono::nanoseconds d) {
  // +-10%: outputs that went DOWN together do not probe in lockstep.
  std::uniform_real_distribution<double> factor(0.9, 1.1);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d * factor(rng_));
}

Transition Connectivity::moveTo(SteadyTime now, OutputState to, std::string cause) {
  Transition t{state_, to, std::move(cause)};
  if (state_ == OutputState::kDown) down_total_ += now - down_since_;
  if (to == OutputState::kDown) {
    down_since_ = now;
    down_backoff_ = options_.interval;
    next_down_probe_ = now + jittered(down_backoff_);
  }
  state_ = to;
  ++state_changes_;
  return t;
}

std::optional<Transition> Connectivity::onSuccess(SteadyTime now) {
  failures_ = 0;
  last_heartbeat_ = now;
  return std::nullopt;
}

std::optional<Transition> Connectivity::onFailure(SteadyTime now, bool all_endpoints_tried,
                                                  const std::string& cause) {
  ++failures_;
  if (state_ == OutputState::kDown) return std::nullopt;
  if (failures_ >= options_.failures && all_endpoints_tried) {
    return moveTo(now, OutputState::kDown,
                  std::to_string(failures_) + " consecutive failures, the last: " + cause);
  }
  return std::nullopt;
}

std::optional<Transition> Connectivity::onProbe(SteadyTime now, bool ok, bool all_endpoints_tried,
                                                const std::string& cause) {
  if (ok) {
    failures_ = 0;
    last_heartbeat_ = now;
    if (state_ == OutputState::kDown) {
      return moveTo(now, OutputState::kRecovering, "a probe succeeded: " + cause);
    }
    return std::nullopt;
  }
  if (state_ == OutputState::kDown) {
    // Back off: the next probe of a receiver that is still away comes later, up to the cap.
    down_backoff_ = std::min<std::chrono::nanoseconds>(down_backoff_ * 2, options_.max_interval);
    next_down_probe_ = now + jittered(down_backoff_);
    return std::nullopt;
  }
  last_heartbeat_ = now;  // probed: the next idle probe is an interval away again
  if (all_endpoints_tried) {
    return moveTo(now, OutputState::kDown, "a probe failed: " + cause);
  }
  return std::nullopt;
}

std::optional<Transition> Connectivity::onRampDone(SteadyTime now) {
  if (state_ != OutputState::kRecovering) return std::nullopt;
  return moveTo(now, OutputState::kHealthy, "the drain ramp is over");
}

SteadyTime Connectivity::nextProbe() const {
  if (state_ == OutputState::kDown) return next_down_probe_;
  return last_heartbeat_ + options_.interval;
}

std::chrono::nanoseconds Connectivity::downTime(SteadyTime now) const {
  return down_total_ +
         (state_ == OutputState::kDown ? now - down_since_ : std::chrono::nanoseconds(0));
}

}  // namespace cistern::transport
