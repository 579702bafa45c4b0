// Connectivity: an output's view of its receiver, HEALTHY -> DOWN -> RECOVERING -> HEALTHY.
//
//   HEALTHY     requests go out; answers count as heartbeats; an output idle for `interval` is
//               probed. `failures` consecutive failed requests with every endpoint tried in the
//               run, or a failed probe of the last endpoint, make it DOWN.
//   DOWN        nothing is sent; the endpoints are probed, first after `interval`, then with
//               jittered exponential backoff up to `max_interval`. A successful probe makes it
//               RECOVERING.
//   RECOVERING  live data goes first and the backlog drains under the ramp (drain_control.h);
//               when the ramp is over it is HEALTHY again (the backlog may still be draining,
//               at the full rate). A failure run makes it DOWN again, as in HEALTHY.
//
// Pure logic over the time points the caller passes; the caller logs and counts the
// transitions it is handed. One thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "drain_control.h"

namespace cistern::transport {

enum class OutputState { kHealthy, kDown, kRecovering };

// "healthy", "down", "recovering".
const char* outputStateName(OutputState state) noexcept;

struct Transition {
  OutputState from = OutputState::kHealthy;
  OutputState to = OutputState::kHealthy;
  std::string cause;
};

class Connectivity {
 public:
  Connectivity(HeartbeatOptions options, SteadyTime now, std::uint64_t seed);

  [[nodiscard]] OutputState state() const { return state_; }

  // The receiver answered (delivered or refused for good): a heartbeat.
  std::optional<Transition> onSuccess(SteadyTime now);
  // A request failed. `all_endpoints_tried`: every endpoint failed in this run of failures (the
  // output has nowhere else to go).
  std::optional<Transition> onFailure(SteadyTime now, bool all_endpoints_tried,
                                      const std::string& cause);
  // A probe's result. While DOWN a success means RECOVERING; while HEALTHY or RECOVERING a
  // failed probe with nowhere else to go means DOWN.
  std::optional<Transition> onProbe(SteadyTime now, bool ok, bool all_endpoints_tried,
                                    const std::string& cause);
  // RECOVERING: the drain ramp is over.
  std::optional<Transition> onRampDone(SteadyTime now);

  // When the next probe is due: while DOWN on the backoff schedule, otherwise `interval` after
  // the last heartbeat.
  [[nodiscard]] SteadyTime nextProbe() const;

  [[nodiscard]] std::uint64_t stateChanges() const { return state_changes_; }
  // Total time spent DOWN, the current spell included.
  [[nodiscard]] std::chrono::nanoseconds downTime(SteadyTime now) const;

 private:
  Transition moveTo(SteadyTime now, OutputState to, std::string cause);
  [[nodiscard]] std::chrono::nanoseconds jittered(std::chrono::nanoseconds d);

  HeartbeatOptions options_;
  OutputState state_ = OutputState::kHealthy;
  std::uint32_t failures_ = 0;  // consecutive failed requests
  SteadyTime last_heartbeat_;
  SteadyTime next_down_probe_{};
  std::chrono::nanoseconds down_backoff_{};
  SteadyTime down_since_{};
  std::chrono::nanoseconds down_total_{};
  std::uint64_t state_changes_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace cistern::transport
