// The drain control and the connectivity state machine on a manual clock: time points are made
// up, nothing sleeps.
#include <chrono>

#include <catch2/catch.hpp>

#include "connectivity.h"
#include "drain_control.h"

using cistern::transport::Connectivity;
using cistern::transport::DrainController;
using cistern::transport::DrainOptions;
using cistern::transport::HeartbeatOptions;
using cistern::transport::OutputState;
using cistern::transport::SteadyTime;
using cistern::transport::TokenBucket;
using namespace std::chrono_literals;

namespace {

const SteadyTime t0 = SteadyTime{} + std::chrono::hours(1000);

DrainOptions drain(std::uint64_t rate, std::chrono::milliseconds ramp = 10s) {
  DrainOptions o;
  o.rate = rate;
  o.initial_percent = 10;
  o.ramp = ramp;
  o.backoff_percent = 50;
  o.increase_percent = 5;
  o.clean_responses = 4;
  o.latency_target = 1s;
  return o;
}

// Sends as fast as the controller lets a sender with `batch`-byte batches, from `from` for
// `span`; returns the bytes sent.
std::uint64_t sendFor(DrainController& d, SteadyTime from, std::chrono::milliseconds span,
                      std::uint64_t batch) {
  std::uint64_t sent = 0;
  for (auto t = from; t < from + span; t += 1ms) {
    while (d.ready(t)) {
      d.charge(batch);
      sent += batch;
    }
  }
  return sent;
}

}  // namespace

TEST_CASE("token bucket: the long-run rate is exact whatever the batch size", "[unit]") {
  for (const std::uint64_t batch : {1000U, 64000U, 300000U}) {
    TokenBucket b;
    b.reset(t0);
    b.setRate(t0, 1'000'000, 0.1);
    std::uint64_t sent = 0;
    for (auto t = t0; t < t0 + 10s; t += 1ms) {
      while (b.ready(t)) {
        b.consume(batch);
        sent += batch;
      }
    }
    INFO("batch " << batch);
    // 10 s at 1 MB/s, give or take the one batch the debt allows.
    CHECK(sent >= 10'000'000 - batch);
    CHECK(sent <= 10'000'000 + batch);
  }
}

TEST_CASE("token bucket: an idle time buys at most the burst", "[unit]") {
  TokenBucket b;
  b.reset(t0);
  b.setRate(t0, 1'000'000, 0.1);
  REQUIRE(b.ready(t0 + 1h));
  b.consume(100'000);  // the burst: 100 ms of the rate
  CHECK(b.ready(t0 + 1h));
  b.consume(1);
  CHECK_FALSE(b.ready(t0 + 1h));
  CHECK(b.waitTime(t0 + 1h) <= 2us);
  CHECK(b.waitTime(t0 + 1h) > 0ns);
}

TEST_CASE("drain: the rate ramps linearly from initial_percent to rate", "[unit]") {
  DrainController d(drain(1'000'000, 10s));
  d.startRamp(t0);
  CHECK(d.rate(t0) == Approx(100'000));
  CHECK(d.rate(t0 + 5s) == Approx(550'000));
  CHECK(d.rate(t0 + 10s) == Approx(1'000'000));
  CHECK(d.rate(t0 + 60s) == Approx(1'000'000));
  CHECK_FALSE(d.rampDone(t0 + 9s));
  CHECK(d.rampDone(t0 + 10s));
  // What goes out follows the ramp: the first second at about 10%, the last at 100%.
  DrainController sender(drain(1'000'000, 10s));
  sender.startRamp(t0);
  const auto first = sendFor(sender, t0, 1000ms, 10'000);
  const auto middle = sendFor(sender, t0 + 1s, 8000ms, 10'000);
  const auto last = sendFor(sender, t0 + 9s, 1000ms, 10'000);
  CHECK(first == Approx(145'000).margin(20'000));
  CHECK(last == Approx(955'000).margin(20'000));
  CHECK(middle > first);
}

TEST_CASE("drain: pushback halves the rate once per episode, clean runs add it back", "[unit]") {
  DrainController d(drain(1'000'000, 0ms));
  d.startRamp(t0);
  REQUIRE(d.rate(t0) == Approx(1'000'000));
  d.onResponse(t0, true, 10ms);
  CHECK(d.rate(t0) == Approx(500'000));
  CHECK(d.pushbacks() == 1);
  // Answers to batches sent before the decrease do not decrease it again...
  d.onResponse(t0 + 100ms, true, 10ms);
  CHECK(d.rate(t0) == Approx(500'000));
  CHECK(d.pushbacks() == 1);
  // ...a slow response after the quiet time does (latency above the target is pushback).
  d.onResponse(t0 + 2s, false, 1500ms);
  CHECK(d.rate(t0 + 2s) == Approx(250'000));
  // Four clean answers add 5% of the rate back, up to the rate.
  for (int i = 0; i < 4; ++i) d.onResponse(t0 + 3s, false, 10ms);
  CHECK(d.rate(t0 + 3s) == Approx(300'000));
  for (int i = 0; i < 4 * 100; ++i) d.onResponse(t0 + 4s, false, 10ms);
  CHECK(d.rate(t0 + 4s) == Approx(1'000'000));
  // Never below 1% of the rate.
  for (int i = 0; i < 20; ++i) d.onResponse(t0 + 10s + i * 3s, true, 10ms);
  CHECK(d.rate(t0 + 80s) == Approx(10'000));
  // A new ramp forgets the pushback.
  d.startRamp(t0 + 100s);
  CHECK(d.rate(t0 + 100s) == Approx(1'000'000));
}

TEST_CASE("drain: batches and live slots", "[unit]") {
  DrainController d(drain(1'000'000, 0ms));
  d.startRamp(t0);
  CHECK(d.batchBytes(t0, 1 << 20) == 20'000);  // 20 ms of the rate
  CHECK(d.liveSlots(4) == 2);
  CHECK(d.liveSlots(1) == 1);
  CHECK(d.liveSlots(2) == 1);
  DrainController unlimited(drain(0));
  unlimited.startRamp(t0);
  CHECK_FALSE(unlimited.limited());
  CHECK(unlimited.ready(t0));
  CHECK(unlimited.batchBytes(t0, 1 << 20) == (1 << 20));
  CHECK(unlimited.rate(t0) == 0);
}

TEST_CASE("connectivity: failures make it DOWN only with every endpoint tried", "[unit]") {
  HeartbeatOptions o;
  o.interval = 5s;
  o.max_interval = 30s;
  o.failures = 3;
  Connectivity c(o, t0, 1);
  CHECK_FALSE(c.onFailure(t0, false, "refused"));
  CHECK_FALSE(c.onFailure(t0, false, "refused"));
  CHECK_FALSE(c.onFailure(t0, false, "refused"));  // another endpoint is left to try
  const auto t = c.onFailure(t0 + 1s, true, "refused");
  REQUIRE(t);
  CHECK(t->from == OutputState::kHealthy);
  CHECK(t->to == OutputState::kDown);
  CHECK(c.state() == OutputState::kDown);
  CHECK(c.stateChanges() == 1);
  // A success resets the run.
  Connectivity d(o, t0, 1);
  d.onFailure(t0, true, "x");
  d.onFailure(t0, true, "x");
  d.onSuccess(t0);
  CHECK_FALSE(d.onFailure(t0, true, "x"));
  CHECK(d.state() == OutputState::kHealthy);
}

TEST_CASE("connectivity: DOWN probes back off with jitter up to max_interval", "[unit]") {
  HeartbeatOptions o;
  o.interval = 5s;
  o.max_interval = 30s;
  o.failures = 1;
  Connectivity c(o, t0, 7);
  REQUIRE(c.onFailure(t0, true, "refused"));
  auto at = t0;
  std::vector<double> gaps;
  for (int i = 0; i < 6; ++i) {
    const auto next = c.nextProbe();
    gaps.push_back(std::chrono::duration<double>(next - at).count());
    at = next;
    CHECK_FALSE(c.onProbe(at, false, true, "refused"));
  }
  CHECK(gaps[0] == Approx(5).epsilon(0.11));
  CHECK(gaps[1] == Approx(10).epsilon(0.11));
  CHECK(gaps[2] == Approx(20).epsilon(0.11));
  CHECK(gaps[3] == Approx(30).epsilon(0.11));
  CHECK(gaps[5] == Approx(30).epsilon(0.11));
  const auto back = c.onProbe(at + 1s, true, true, "up");
  REQUIRE(back);
  CHECK(back->to == OutputState::kRecovering);
  CHECK(c.downTime(at + 1s) == at + 1s - t0);
  CHECK_FALSE(c.onRampDone(at + 2s) == std::nullopt);
  CHECK(c.state() == OutputState::kHealthy);
  CHECK(c.stateChanges() == 3);
  // Healthy again: the next idle probe is an interval after the last heartbeat.
  c.onSuccess(at + 3s);
  CHECK(c.nextProbe() == at + 3s + 5s);
}

TEST_CASE("connectivity: a failed idle probe with nowhere else to go is DOWN", "[unit]") {
  HeartbeatOptions o;
  o.failures = 3;
  Connectivity c(o, t0, 1);
  CHECK(c.nextProbe() == t0 + o.interval);
  CHECK_FALSE(c.onProbe(t0 + 5s, false, false, "refused"));
  const auto t = c.onProbe(t0 + 10s, false, true, "refused");
  REQUIRE(t);
  CHECK(t->to == OutputState::kDown);
}
