// Dispatcher against a real ring (LMDB in a temp dir) and scripted senders on a libuv loop the
// test drives: what is acknowledged in the buffer, what is resent, in which order, after how
// long, and which endpoint is used.
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "../../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "dispatcher.h"
#include "fake_sender.h"
#include "temp_dir.h"

using cistern::testing::FakeSender;
using cistern::transport::Dispatcher;
using cistern::transport::DispatcherOptions;
using cistern::transport::Outcome;
using cistern::transport::OutputState;
using cistern::transport::SendResult;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  cistern::testing::TempDir dir{"cistern-dispatch"};
  std::unique_ptr<cistern::buffer::LmdbRing> ring;
  uv_loop_t loop{};

  Fixture() {
    auto opened = cistern::buffer::LmdbRing::open(cistern::testing::smallRing(dir.path()));
    REQUIRE_OK(opened);
    ring = std::move(*opened);
    uv_loop_init(&loop);
  }
  ~Fixture() {
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    (void)ring->close();
  }

  cistern::buffer::Consumer& consumer(const std::string& name = "out") {
    auto c = ring->consumer(name);
    REQUIRE_OK(c);
    return **c;
  }

  // Appends `count` records and commits them; frames hold 16 KiB, so 200-byte records make
  // about 75 per frame.
  void append(std::uint64_t first, std::uint64_t count) {
    cistern::testing::appendSeq(*ring, first, count);
    REQUIRE_OK(ring->flush());
  }

  // Runs the loop until `done` or the timeout; returns whether `done` held.
  template <typename Pred>
  bool runUntil(Pred done, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  void close(Dispatcher& d) {
    bool closed = false;
    d.close([&] { closed = true; });
    REQUIRE(runUntil([&] { return closed; }));
  }

  [[nodiscard]] std::uint64_t pending(const std::string& name = "out") {
    // Acknowledgements become visible in the stats once committed.
    REQUIRE_OK(ring->flush());
    for (const auto& s : ring->consumerStats()) {
      if (s.name == name) return s.pending_records;
    }
    return 0;
  }
};

std::uint64_t counter(const Dispatcher& d, const std::string& name) {
  for (const auto& c : d.counters()) {
    if (c.name == name) return c.value;
  }
  FAIL("no counter " << name);
  return 0;
}

DispatcherOptions options(std::size_t in_flight = 4) {
  DispatcherOptions o;
  o.output_name = "out";
  o.batch.max_bytes = 32U << 10U;
  o.batch.max_frames = 2;
  o.batch.max_in_flight = in_flight;
  o.retry.initial_backoff = 20ms;
  o.retry.max_backoff = 200ms;
  o.retry.failover_after = 2;
  o.retry.failback_interval = 100ms;
  // Retry tests look at resends, not at outages: the output does not go DOWN unless a test says.
  o.heartbeat.failures = 1000;
  o.heartbeat.interval = 100ms;
  o.heartbeat.max_interval = 100ms;
  return o;
}

struct Built {
  std::unique_ptr<Dispatcher> dispatcher;
  std::vector<FakeSender*> senders;
};

Built build(Fixture& f, int endpoints = 1, std::size_t in_flight = 4,
            DispatcherOptions o = options()) {
  Built b;
  std::vector<std::unique_ptr<cistern::transport::Sender>> senders;
  for (int i = 0; i < endpoints; ++i) {
    auto s = std::make_unique<FakeSender>(&f.loop, "fake://" + std::to_string(i), in_flight);
    b.senders.push_back(s.get());
    senders.push_back(std::move(s));
  }
  o.batch.max_in_flight = in_flight;
  b.dispatcher = std::make_unique<Dispatcher>(&f.loop, f.consumer(), std::move(senders), o);
  return b;
}

std::uint64_t recordsSent(const FakeSender& s) {
  std::uint64_t n = 0;
  for (const auto& sent : s.sent) n += sent.records;
  return n;
}

}  // namespace

TEST_CASE("dispatcher delivers every record and the buffer deletes them", "[component]") {
  Fixture f;
  f.append(0, 5000);
  auto b = build(f);
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 5000; }));
  CHECK(f.pending() == 0);
  CHECK(counter(*b.dispatcher, "records_sent") == 5000);
  CHECK(counter(*b.dispatcher, "records_retried") == 0);
  CHECK(counter(*b.dispatcher, "batches_in_flight") == 0);
  CHECK(recordsSent(*b.senders[0]) == 5000);
  // Each frame went exactly once.
  std::set<cistern::FrameId> frames;
  std::size_t total = 0;
  for (const auto& s : b.senders[0]->sent) {
    frames.insert(s.frames.begin(), s.frames.end());
    total += s.frames.size();
  }
  CHECK(frames.size() == total);

  // Frames committed later are picked up on the next pump (the ring's commit notification).
  f.append(5000, 1000);
  b.dispatcher->pump();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 6000; }));
  f.close(*b.dispatcher);
  CHECK(f.pending() == 0);
}

TEST_CASE("dispatcher keeps no more batches in flight than allowed", "[component]") {
  Fixture f;
  f.append(0, 5000);
  auto b = build(f, 1, 3);
  b.senders[0]->hold = true;
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return b.senders[0]->inFlight() == 3; }));
  f.runUntil([] { return false; }, 50ms);
  CHECK(b.senders[0]->inFlight() == 3);
  CHECK(counter(*b.dispatcher, "batches_in_flight") == 3);
  b.senders[0]->release();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 5000; }));
  CHECK(b.senders[0]->max_seen_in_flight <= 3);
  f.close(*b.dispatcher);
}

TEST_CASE("dispatcher resends a failed batch after a backoff and loses nothing", "[component]") {
  Fixture f;
  f.append(0, 300);
  auto b = build(f, 1, 1);
  SendResult fail;
  fail.outcome = Outcome::kRetry;
  fail.error = "connection refused";
  b.senders[0]->script = {fail, fail, fail};
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 300; }));
  const auto& sent = b.senders[0]->sent;
  REQUIRE(sent.size() >= 4);
  // The same frames, three more times, each attempt later than the one before by at least half
  // the (doubling) backoff: 20, 40, 80 ms.
  CHECK(sent[1].frames == sent[0].frames);
  CHECK(sent[3].frames == sent[0].frames);
  CHECK(sent[3].attempt == 3);
  CHECK(sent[1].at_ms - sent[0].at_ms >= 10);
  CHECK(sent[2].at_ms - sent[1].at_ms >= 20);
  CHECK(sent[3].at_ms - sent[2].at_ms >= 40);
  CHECK(counter(*b.dispatcher, "requests_failed") == 3);
  CHECK(counter(*b.dispatcher, "records_retried") == 3 * sent[0].records);
  CHECK(b.dispatcher->lastError().empty());
  CHECK(f.pending() == 0);
  f.close(*b.dispatcher);
}

TEST_CASE("dispatcher obeys Retry-After before sending anything again", "[component]") {
  Fixture f;
  f.append(0, 300);
  auto b = build(f, 1, 1);
  SendResult busy;
  busy.outcome = Outcome::kRetry;
  busy.pushback = true;
  busy.retry_after = 300ms;
  busy.error = "HTTP 429";
  b.senders[0]->script = {busy};
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 300; }));
  const auto& sent = b.senders[0]->sent;
  REQUIRE(sent.size() >= 2);
  CHECK(sent[1].at_ms - sent[0].at_ms >= 300);
  f.close(*b.dispatcher);
}

TEST_CASE("dispatcher acknowledges and counts what the receiver rejects", "[component]") {
  Fixture f;
  f.append(0, 300);
  auto b = build(f, 1, 1);
  SendResult rejected;
  rejected.outcome = Outcome::kRejected;
  rejected.error = "HTTP 400 from fake://0";
  SendResult partial;
  partial.outcome = Outcome::kDelivered;
  partial.rejected_records = 7;
  partial.skipped_records = 3;
  partial.error = "7 log records rejected";
  b.senders[0]->script = {rejected, partial};
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return f.pending() == 0; }));
  const auto& sent = b.senders[0]->sent;
  const std::uint64_t first = sent[0].records;
  const std::uint64_t second = sent[1].records;
  CHECK(counter(*b.dispatcher, "records_rejected") == first + 7);
  CHECK(counter(*b.dispatcher, "records_skipped") == 3);
  CHECK(counter(*b.dispatcher, "records_acked") == 300 - first - 7 - 3);
  CHECK(counter(*b.dispatcher, "records_retried") == 0);
  CHECK(second > 10);
  // Nothing was sent twice.
  for (std::size_t i = 1; i < sent.size(); ++i) CHECK(sent[i].frames != sent[0].frames);
  f.close(*b.dispatcher);
}

TEST_CASE("dispatcher fails over to the next endpoint and back", "[component]") {
  Fixture f;
  f.append(0, 3000);
  auto b = build(f, 2, 1);
  SendResult down;
  down.outcome = Outcome::kRetry;
  down.error = "connection refused";
  b.senders[0]->script = {down, down};
  // The first failback probe fails, the second succeeds.
  b.senders[0]->probe_script = {Outcome::kRetry};
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "failovers") == 1; }));
  CHECK(b.dispatcher->endpoint() == "fake://1");
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "failbacks") == 1; }));
  CHECK(b.senders[0]->probes == 2);
  CHECK(b.dispatcher->endpoint() == "fake://0");
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 3000; }));
  CHECK(recordsSent(*b.senders[1]) > 0);
  CHECK(f.pending() == 0);
  f.close(*b.dispatcher);
}

TEST_CASE("dispatcher fails over at once on a certificate error", "[component]") {
  Fixture f;
  f.append(0, 100);
  auto b = build(f, 2, 1);
  SendResult bad_cert;
  bad_cert.outcome = Outcome::kRetry;
  bad_cert.config_error = true;
  bad_cert.error = "certificate verify failed";
  b.senders[0]->script = {bad_cert};
  b.senders[0]->probe_default = Outcome::kRetry;
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 100; }));
  CHECK(counter(*b.dispatcher, "failovers") == 1);
  CHECK(b.senders[0]->sent.size() == 1);
  f.close(*b.dispatcher);
}

TEST_CASE("dispatcher resends failed batches in their original order", "[component]") {
  Fixture f;
  f.append(0, 3000);
  auto b = build(f, 1, 4);
  b.senders[0]->hold = true;
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return b.senders[0]->inFlight() == 4; }));
  std::vector<std::vector<cistern::FrameId>> first_order;
  for (const auto& s : b.senders[0]->sent) first_order.push_back(s.frames);
  // The connection breaks: all four fail; the resends come in the same order.
  b.senders[0]->failAll("connection reset");
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "requests_failed") == 4; }));
  REQUIRE(f.runUntil([&] { return b.senders[0]->sent.size() == 8; }));
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(b.senders[0]->sent[4 + i].frames == first_order[i]);
    CHECK(b.senders[0]->sent[4 + i].attempt == 1);
  }
  f.close(*b.dispatcher);
  // Not acknowledged: a new dispatcher on the same cursor sends them again, oldest first.
  f.consumer().rewind();
  auto again = build(f, 1, 4);
  again.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*again.dispatcher, "records_acked") == 3000; }));
  for (std::size_t i = 0; i < first_order.size(); ++i) {
    CHECK(again.senders[0]->sent[i].frames == first_order[i]);
  }
  CHECK(f.pending() == 0);
  f.close(*again.dispatcher);
}

TEST_CASE("dispatcher stops reading on drain and abandons what is in flight at close",
          "[component]") {
  Fixture f;
  f.append(0, 3000);
  auto b = build(f, 1, 2);
  b.senders[0]->hold = true;
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return b.senders[0]->inFlight() == 2; }));
  b.dispatcher->drain();
  f.close(*b.dispatcher);
  CHECK(counter(*b.dispatcher, "records_acked") == 0);
  CHECK(f.pending() == 3000);
}

// --- issue 5: outages, lanes, the drain rate ---

TEST_CASE("dispatcher goes DOWN after a run of failures, probes, and comes back", "[component]") {
  Fixture f;
  f.append(0, 300);
  auto o = options();
  o.heartbeat.failures = 3;
  o.heartbeat.interval = 200ms;
  o.heartbeat.max_interval = 800ms;
  auto b = build(f, 1, 1, o);
  SendResult down;
  down.outcome = Outcome::kRetry;
  down.error = "connection refused";
  b.senders[0]->script = {down, down, down};
  b.senders[0]->probe_script = {Outcome::kRetry, Outcome::kRetry};
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return b.dispatcher->state() == OutputState::kDown; }));
  const std::size_t sent_when_down = b.senders[0]->sent.size();
  CHECK(sent_when_down == 3);
  // Probes back off while DOWN (200 ms, then 400 ms, then 800 ms), nothing is sent.
  const auto down_at = std::chrono::steady_clock::now();
  REQUIRE(f.runUntil([&] { return b.senders[0]->probes == 2; }, 5s));
  CHECK(b.dispatcher->state() == OutputState::kDown);
  CHECK(b.senders[0]->sent.size() == sent_when_down);
  REQUIRE(f.runUntil([&] { return b.dispatcher->state() != OutputState::kDown; }, 5s));
  CHECK(b.senders[0]->probes == 3);
  CHECK(std::chrono::steady_clock::now() - down_at >= 1000ms);
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 300; }));
  CHECK(counter(*b.dispatcher, "state_changes") >= 2);
  CHECK(counter(*b.dispatcher, "down_ms") >= 500);
  CHECK(counter(*b.dispatcher, "probes_failed") == 2);
  CHECK(f.pending() == 0);
  f.close(*b.dispatcher);
}

TEST_CASE("after a recovery, live frames go before the backlog, which drains at the rate",
          "[component]") {
  Fixture f;
  auto o = options();
  o.heartbeat.failures = 1;
  o.heartbeat.interval = 100ms;
  o.drain.rate = 400U << 10U;  // 400 KiB/s of records
  o.drain.initial_percent = 100;
  o.drain.ramp = 0ms;
  o.batch.max_bytes = 64U << 10U;
  auto b = build(f, 1, 4, o);
  SendResult down;
  down.outcome = Outcome::kRetry;
  down.error = "connection refused";
  b.senders[0]->script = {down};
  b.senders[0]->probe_script = {Outcome::kRetry};
  f.append(0, 10);
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return b.dispatcher->state() == OutputState::kDown; }));
  // Captured while the receiver is away: about 1 MiB of backlog.
  f.append(10, 5000);
  REQUIRE(f.runUntil([&] { return b.dispatcher->state() != OutputState::kDown; }));
  const auto recovered = std::chrono::steady_clock::now();
  // Live data captured after the recovery overtakes the backlog.
  f.append(100000, 50);
  b.dispatcher->pump();
  bool live_seen_early = false;
  REQUIRE(f.runUntil(
      [&] {
        if (counter(*b.dispatcher, "live_bytes_sent") > 0 &&
            counter(*b.dispatcher, "records_acked") < 4000) {
          live_seen_early = true;
        }
        return counter(*b.dispatcher, "records_acked") == 5060;
      },
      20s));
  CHECK(live_seen_early);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - recovered).count();
  const auto backlog = static_cast<double>(counter(*b.dispatcher, "backlog_bytes_sent"));
  // The backlog went at the rate: about backlog / rate seconds (+-25%: batches, timers).
  const double expected = backlog / (400 << 10);
  CHECK(seconds > expected * 0.75);
  CHECK(seconds < expected * 1.25 + 0.3);
  CHECK(f.pending() == 0);
  f.close(*b.dispatcher);
}

TEST_CASE("pushback slows the drain without making the output DOWN", "[component]") {
  Fixture f;
  f.append(0, 3000);
  auto o = options();
  o.heartbeat.failures = 2;
  o.drain.rate = 4U << 20U;
  o.drain.ramp = 0ms;
  o.drain.initial_percent = 100;
  auto b = build(f, 1, 2, o);
  SendResult busy;
  busy.outcome = Outcome::kRetry;
  busy.pushback = true;
  busy.retry_after = 100ms;
  busy.error = "HTTP 429";
  b.senders[0]->script = {busy, busy, busy, busy};
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 3000; }));
  CHECK(counter(*b.dispatcher, "state_changes") == 0);
  CHECK(counter(*b.dispatcher, "pushbacks") >= 1);
  CHECK(b.dispatcher->state() == OutputState::kHealthy);
  f.close(*b.dispatcher);
}

TEST_CASE("an idle output probes at the interval; a failed probe makes it DOWN", "[component]") {
  Fixture f;
  auto o = options();
  o.heartbeat.failures = 3;
  o.heartbeat.interval = 100ms;
  auto b = build(f, 1, 1, o);
  b.dispatcher->start();
  REQUIRE(f.runUntil([&] { return b.senders[0]->probes >= 3; }, 3s));
  CHECK(b.dispatcher->state() == OutputState::kHealthy);
  b.senders[0]->probe_default = Outcome::kRetry;
  REQUIRE(f.runUntil([&] { return b.dispatcher->state() == OutputState::kDown; }, 3s));
  b.senders[0]->probe_default = Outcome::kDelivered;
  REQUIRE(f.runUntil([&] { return b.dispatcher->state() == OutputState::kHealthy; }, 3s));
  f.close(*b.dispatcher);
}

TEST_CASE("a backlog left by an earlier run drains under the ramp, live first", "[component]") {
  Fixture f;
  f.append(0, 2000);  // nobody delivered these: the backlog at start
  auto o = options();
  o.drain.rate = 200U << 10U;
  o.drain.initial_percent = 50;
  o.drain.ramp = 1000ms;
  o.drain.live_share_percent = 50;
  auto b = build(f, 1, 4, o);
  b.dispatcher->start();
  f.append(5000, 20);  // live
  b.dispatcher->pump();
  REQUIRE(f.runUntil([&] { return counter(*b.dispatcher, "records_acked") == 2020; }, 20s));
  // The live records went in the first batches, not after the backlog.
  bool live_first = false;
  for (std::size_t i = 0; i < std::min<std::size_t>(3, b.senders[0]->sent.size()); ++i) {
    live_first = live_first || b.senders[0]->sent[i].records == 20;
  }
  CHECK(live_first);
  CHECK(counter(*b.dispatcher, "backlog_bytes_sent") > 0);
  f.close(*b.dispatcher);
}
