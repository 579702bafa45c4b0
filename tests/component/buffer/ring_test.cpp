// Component tests of the LMDB ring: real LMDB in a temporary directory.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "../../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "cistern/core/record_batch.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::buffer::CommitInfo;
using cistern::buffer::ConsumerStats;
using cistern::buffer::Direction;
using cistern::buffer::FrameId;
using cistern::buffer::FullPolicy;
using cistern::buffer::LmdbRing;
using cistern::buffer::ReadBatch;
using cistern::buffer::RingOptions;
using cistern::buffer::SyncMode;
using cistern::buffer::Ticket;
using cistern::buffer::Wait;
using cistern::testing::appendSeq;
using cistern::testing::drain;
using cistern::testing::seqsOf;
using cistern::testing::smallRing;
using cistern::testing::TempDir;

namespace {

std::unique_ptr<LmdbRing> openRing(const RingOptions& o) {
  auto ring = LmdbRing::open(o);
  if (!ring) FAIL("open failed: " << ring.error().describe());
  return std::move(*ring);
}

std::vector<std::uint64_t> iota(std::uint64_t first, std::uint64_t count) {
  std::vector<std::uint64_t> v(count);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// The promise every consumer keeps: records due = acked + evicted + corrupt + pending.
void checkAccounting(const ConsumerStats& s) {
  INFO("consumer " << s.name);
  CHECK(s.assigned_records ==
        s.acked_records + s.evicted_records + s.corrupt_records + s.pending_records);
}

}  // namespace

TEST_CASE("appended records are read back in order and acknowledged frames are deleted",
          "[component]") {
  TempDir dir;
  auto ring = openRing(smallRing(dir.path()));
  auto* out = ring->consumer("out").value();
  appendSeq(*ring, 0, 1000);
  REQUIRE_OK(ring->flush());
  const auto before = ring->stats();
  CHECK(before.records == 1000);
  CHECK(before.appended_records == 1000);
  CHECK(before.frames > 1);  // 200-byte records, 16 KiB frames

  bool intact = true;
  const auto seqs = drain(*out, true, &intact);
  CHECK(intact);
  CHECK(seqs == iota(0, 1000));
  REQUIRE_OK(ring->flush());
  const auto after = ring->stats();
  CHECK(after.frames == 0);
  CHECK(after.records == 0);
  CHECK(after.used_bytes == 0);
  CHECK(after.deleted_frames == before.frames);
  const auto s = out->stats();
  CHECK(s.acked_records == 1000);
  CHECK(s.pending_records == 0);
  checkAccounting(s);
}

TEST_CASE("cursors and frame ids survive a restart; unacknowledged frames come back",
          "[component]") {
  TempDir dir;
  const auto opts = smallRing(dir.path());
  FrameId last_id = 0;
  {
    auto ring = openRing(opts);
    auto* out = ring->consumer("out").value();
    appendSeq(*ring, 0, 500);
    REQUIRE_OK(ring->flush());
    ReadBatch batch;
    REQUIRE(out->readNext(batch).value() > 0);
    // Acknowledge the first frame only; the rest were handed out but never confirmed.
    const auto first = seqsOf(batch);
    out->ack(batch.frames().front().id);
    REQUIRE_OK(ring->flush());
    last_id = ring->stats().newest_frame;
    CHECK(ring->close());
    (void)first;
  }
  auto ring = openRing(opts);
  auto* out = ring->consumer("out").value();
  const auto again = drain(*out, false);
  REQUIRE_FALSE(again.empty());
  CHECK(again.back() == 499);
  CHECK(again.front() > 0);  // the acknowledged frame is not handed out again
  // New frames get ids above every id used before the restart, even after all are deleted.
  drain(*out, true);
  out->rewind();
  drain(*out, true);
  REQUIRE_OK(ring->flush());
  CHECK(ring->stats().frames == 0);
  CHECK(ring->close());
  auto reopened = openRing(opts);
  appendSeq(*reopened, 500, 1);
  REQUIRE_OK(reopened->flush());
  CHECK(reopened->stats().newest_frame > last_id);
}

TEST_CASE("a ring open for writing refuses a second writer, not readers", "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  auto ring = openRing(opts);
  appendSeq(*ring, 0, 10);
  REQUIRE_OK(ring->flush());

  auto second = LmdbRing::open(opts);
  REQUIRE_FALSE(second);
  CHECK_THAT(second.error().message,
             Catch::Contains("is open for writing by another process (pid " +
                             std::to_string(::getpid()) + ")") &&
                 Catch::Contains("one agent per data directory"));
  // The refused open changed nothing: the first ring goes on writing.
  appendSeq(*ring, 10, 10);
  REQUIRE_OK(ring->flush());

  auto ro_opts = opts;
  ro_opts.read_only = true;
  {
    auto reader = LmdbRing::open(ro_opts);
    REQUIRE_OK(reader);
    CHECK((*reader)->stats().records == 20);
  }

  REQUIRE_OK(ring->close());
  auto after_close = LmdbRing::open(opts);
  REQUIRE_OK(after_close);
  CHECK((*after_close)->stats().records == 20);
}

TEST_CASE("each consumer has its own cursor; a frame is deleted once all acknowledged",
          "[component]") {
  TempDir dir;
  auto ring = openRing(smallRing(dir.path()));
  auto* a = ring->consumer("a").value();
  auto* b = ring->consumer("b").value();
  appendSeq(*ring, 0, 300);
  REQUIRE_OK(ring->flush());
  const auto frames = ring->stats().frames;

  CHECK(drain(*a, true) == iota(0, 300));
  REQUIRE_OK(ring->flush());
  CHECK(ring->stats().frames == frames);  // b has acknowledged nothing yet
  CHECK(a->stats().pending_records == 0);
  CHECK(b->stats().pending_records == 300);

  CHECK(drain(*b, true) == iota(0, 300));
  REQUIRE_OK(ring->flush());
  CHECK(ring->stats().frames == 0);
  checkAccounting(a->stats());
  checkAccounting(b->stats());
}

TEST_CASE("out-of-order acknowledgements persist and are skipped by readers", "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.frame_max_bytes = 1024;  // about four records per frame
  std::vector<FrameId> ids;
  {
    auto ring = openRing(opts);
    auto* out = ring->consumer("out").value();
    appendSeq(*ring, 0, 100);
    REQUIRE_OK(ring->flush());
    ReadBatch batch;
    REQUIRE(out->readNext(batch, {1000, 1U << 30U}).value() >= 10);
    for (const auto& f : batch.frames()) ids.push_back(f.id);
    // Acknowledge the 3rd, 5th and 6th frames, then the 1st: floor moves past the 1st only.
    out->ack(std::vector<FrameId>{ids[2], ids[4], ids[5], ids[0]});
    REQUIRE_OK(ring->flush());
    const auto s = out->stats();
    CHECK(s.ack_floor == ids[1]);
    CHECK(s.ack_ranges == 2);
    CHECK(s.acked_frames == 4);
    checkAccounting(s);
    CHECK(ring->close());
  }
  auto ring = openRing(opts);
  auto* out = ring->consumer("out").value();
  ReadBatch batch;
  REQUIRE(out->readNext(batch, {3, 1U << 30U}).value() == 3);
  CHECK(batch.frames()[0].id == ids[1]);
  CHECK(batch.frames()[1].id == ids[3]);
  CHECK(batch.frames()[2].id == ids[6]);
  // Filling the gaps merges everything into the floor.
  out->ack(std::vector<FrameId>{ids[1], ids[3]});
  REQUIRE_OK(ring->flush());
  CHECK(out->stats().ack_floor == ids[6]);
  CHECK(out->stats().ack_ranges == 0);
  // Acknowledging unknown, repeated or future ids changes nothing.
  out->ack(std::vector<FrameId>{ids[0], 999'999, 0});
  REQUIRE_OK(ring->flush());
  CHECK(out->stats().acked_frames == 6);
  checkAccounting(out->stats());
}

TEST_CASE("readAt reads the newest frames first for the live lane", "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.frame_max_bytes = 1024;
  auto ring = openRing(opts);
  auto* out = ring->consumer("out").value();
  appendSeq(*ring, 0, 40);
  REQUIRE_OK(ring->flush());
  const FrameId newest = ring->newestFrame();
  ReadBatch batch;
  REQUIRE(out->readAt(newest, Direction::kBackward, batch, {3, 1U << 30U}).value() == 3);
  CHECK(batch.frames()[0].id == newest);
  CHECK(batch.frames()[1].id == newest - 1);
  CHECK(batch.frames()[2].id == newest - 2);
  out->ack(newest - 1);
  REQUIRE(out->readAt(newest, Direction::kBackward, batch, {2, 1U << 30U}).value() == 2);
  CHECK(batch.frames()[0].id == newest);
  CHECK(batch.frames()[1].id == newest - 2);  // the acknowledged frame is skipped
  // readAt does not move readNext: the backlog still starts at the oldest frame.
  REQUIRE(out->readNext(batch, {1, 1U << 30U}).value() == 1);
  CHECK(seqsOf(batch).front() == 0);
}

TEST_CASE("drop_oldest evicts and every consumer counts what it lost", "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.max_size = 2ULL << 20U;
  opts.commit_max_bytes = 256U << 10U;
  auto ring = openRing(opts);
  auto* slow = ring->consumer("slow").value();
  auto* fast = ring->consumer("fast").value();
  std::uint64_t fast_got = 0;
  for (int round = 0; round < 40; ++round) {
    appendSeq(*ring, static_cast<std::uint64_t>(round) * 1000, 1000);
    REQUIRE_OK(ring->flush());
    fast_got += drain(*fast, true).size();
  }
  REQUIRE_OK(ring->flush());
  const auto st = ring->stats();
  CHECK(st.used_bytes <= opts.max_size);
  CHECK(st.evicted_frames > 0);
  CHECK(st.appended_records == 40'000);
  const auto slow_stats = slow->stats();
  CHECK(slow_stats.evicted_records > 0);
  CHECK(slow_stats.assigned_records == 40'000);
  checkAccounting(slow_stats);
  const auto fast_stats = fast->stats();
  CHECK(fast_stats.evicted_records == 0);
  CHECK(fast_got == 40'000);
  checkAccounting(fast_stats);
  // What the slow consumer still reads plus what it lost is everything, exactly once.
  const auto rest = drain(*slow, true);
  CHECK(rest.size() + slow_stats.evicted_records == 40'000);
  CHECK(std::is_sorted(rest.begin(), rest.end()));
  CHECK(rest.back() == 39'999);
}

TEST_CASE("the block policy stops the writer until consumers make room", "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.max_size = 1ULL << 20U;
  opts.commit_max_bytes = 128U << 10U;
  opts.ingest_max_bytes = 256U << 10U;
  opts.when_full = FullPolicy::kBlock;
  auto ring = openRing(opts);
  auto* out = ring->consumer("out").value();
  // Append until the ring is full and the writer holds the queue: a refusal before that only
  // means the producer outran the writer for a moment, so pause and go on.
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
  auto st = ring->stats();
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (appendSeq(*ring, accepted, 1, 200, "test", Wait::kNo) != 0) {
      ++accepted;
      continue;
    }
    ++refused;
    st = ring->stats();
    if (st.writer_blocked) break;
    std::this_thread::sleep_for(2ms);
  }
  CHECK(accepted > opts.max_size / 250);  // about a ring's worth of 200-byte records
  CHECK(st.writer_blocked);
  CHECK(st.evicted_frames == 0);
  CHECK(st.used_bytes <= opts.max_size);
  CHECK(st.used_bytes + 2ULL * opts.frame_max_bytes > opts.max_size);  // really full
  CHECK(st.refused_queue_full == refused);
  // Draining makes room: everything accepted arrives, nothing was evicted.
  std::vector<std::uint64_t> got;
  for (int i = 0; i < 200 && got.size() < accepted; ++i) {
    for (auto s : drain(*out, true)) got.push_back(s);
    std::this_thread::sleep_for(10ms);
  }
  CHECK(got == iota(0, accepted));
  REQUIRE_OK(ring->flush());
  st = ring->stats();
  CHECK_FALSE(st.writer_blocked);
  CHECK(st.evicted_frames == 0);
  checkAccounting(out->stats());
}

TEST_CASE("while appends that cannot wait are refused, transactions carry more than commit_max",
          "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.max_size = 64ULL << 20U;
  opts.commit_max_bytes = 128U << 10U;
  opts.ingest_max_bytes = 2ULL << 20U;
  auto ring = openRing(opts);
  std::mutex mu;
  std::uint64_t largest = 0;
  ring->setCommitListener([&](const CommitInfo& c) {
    const std::lock_guard lk(mu);
    largest = std::max(largest, c.bytes);
  });
  auto largestSinceLast = [&] {
    const std::lock_guard lk(mu);
    return std::exchange(largest, 0);
  };
  // A transaction ends with the frame that crosses its budget.
  const std::uint64_t frame = opts.frame_max_bytes + 4096;
  const std::uint64_t normal = opts.commit_max_bytes + frame;
  std::uint64_t seq = 0;
  auto appendWaiting = [&](std::uint64_t bytes) {
    for (std::uint64_t n = 0; n < bytes; n += std::uint64_t{64} * 1000) {
      REQUIRE(appendSeq(*ring, seq, 64, 1000) != 0);
      seq += 64;
    }
    REQUIRE_OK(ring->flush());
  };

  // Producers that wait for room keep every transaction within commit_max_bytes.
  appendWaiting(16ULL << 20U);
  CHECK(largestSinceLast() <= normal);

  // A producer that cannot wait and is refused raises the budget: fewer syncs per byte.
  std::uint64_t refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (refused < 50 && std::chrono::steady_clock::now() < deadline) {
    if (appendSeq(*ring, seq, 64, 1000, "test", Wait::kNo) != 0) {
      seq += 64;
    } else {
      ++refused;
    }
  }
  REQUIRE(refused >= 50);
  REQUIRE_OK(ring->flush());
  const auto overloaded = largestSinceLast();
  CHECK(overloaded > normal);
  CHECK(overloaded <= 4 * opts.commit_max_bytes + frame);

  // A second after the last refusal the budget is commit_max_bytes again.
  std::this_thread::sleep_for(1100ms);
  appendWaiting(16ULL << 20U);
  CHECK(largestSinceLast() <= normal);
  CHECK(ring->stats().refused_queue_full == refused * 64);
}

TEST_CASE("every sync mode commits durably across close and reopen", "[component]") {
  const auto mode = GENERATE(SyncMode::kBatch, SyncMode::kAlways, SyncMode::kNone);
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.sync = mode;
  opts.commit_interval = 50ms;
  {
    auto ring = openRing(opts);
    std::vector<CommitInfo> commits;
    std::mutex mu;
    ring->setCommitListener([&](const CommitInfo& c) {
      std::lock_guard lk(mu);
      commits.push_back(c);
    });
    const auto ticket = appendSeq(*ring, 0, 100);
    REQUIRE_OK(ring->waitCommitted(ticket, 5s));
    {
      std::lock_guard lk(mu);
      REQUIRE_FALSE(commits.empty());
      CHECK(commits.back().ticket >= ticket);
    }
    CHECK(ring->close());
  }
  auto ring = openRing(opts);
  CHECK(drain(*ring->consumer("out").value(), false) == iota(0, 100));
}

TEST_CASE("group commit batches appends within the commit window", "[component]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.commit_interval = 200ms;
  auto ring = openRing(opts);
  std::atomic<int> commits{0};
  ring->setCommitListener([&](const CommitInfo& c) {
    if (c.records > 0) ++commits;
  });
  Ticket last = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) last = appendSeq(*ring, static_cast<std::uint64_t>(i), 1);
  const auto windows = (std::chrono::steady_clock::now() - t0) / opts.commit_interval;
  REQUIRE_OK(ring->waitCommitted(last, 5s));
  // One commit per window the appends spanned (plus the one closing the last window), not 50.
  CHECK(commits.load() <= windows + 2);
}

TEST_CASE("state writes commit with the records appended alongside", "[component]") {
  TempDir dir;
  const auto opts = smallRing(dir.path());
  {
    auto ring = openRing(opts);
    std::string payload = "line";
    cistern::RecordInput r{
        cistern::RecordKind::kLogLine, 1, "file", {}, std::as_bytes(std::span(payload))};
    std::vector<cistern::buffer::StateWrite> state{{"tail/a.log", "offset=5"}};
    auto t = ring->append(std::span(&r, 1), state, Wait::kYes);
    REQUIRE(t);
    REQUIRE_OK(ring->waitCommitted(*t, 5s));
    CHECK(ring->readState("tail/a.log").value() == std::optional<std::string>("offset=5"));
    CHECK(ring->readState("tail/b.log").value() == std::nullopt);
    std::vector<cistern::buffer::StateWrite> more{{"tail/b.log", "offset=9"}};
    REQUIRE(ring->append({}, more, Wait::kYes));
    REQUIRE_OK(ring->flush());
    CHECK(ring->close());
  }
  auto ring = openRing(opts);
  const auto all = ring->readStatePrefix("tail/").value();
  REQUIRE(all.size() == 2);
  CHECK(all[0].value == "offset=5");
  CHECK(all[1].value == "offset=9");
  CHECK(ring->stats().records == 1);
}

TEST_CASE("an encoded batch stores what the same records appended one by one store",
          "[component]") {
  TempDir one_dir;
  TempDir batch_dir;
  auto opts_one = smallRing(one_dir.path());
  auto opts_batch = smallRing(batch_dir.path());
  opts_one.frame_max_bytes = opts_batch.frame_max_bytes = 1024;
  auto one = openRing(opts_one);
  auto batched = openRing(opts_batch);
  // Sizes around the frame limit, one record larger than a whole frame, timestamps out of order
  // within an append; every third append writes state.
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> size_of(0, 400);
  std::uniform_int_distribution<std::uint64_t> ts_of(1, 1'000'000);
  for (std::size_t append = 0; append < 60; ++append) {
    cistern::RecordBatch batch(cistern::RecordKind::kLogLine, "in");
    const std::size_t count = append % 7;
    std::vector<std::string> payloads;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t size = append == 20 && i == 1 ? 3000 : size_of(rng);
      payloads.emplace_back(size, static_cast<char>('a' + (append + i) % 26));
    }
    std::vector<cistern::RecordInput> records;
    const std::vector<std::byte> meta{std::byte{static_cast<unsigned char>(append)}};
    for (const auto& p : payloads) {
      const std::uint64_t ts = ts_of(rng);
      REQUIRE(batch.add(ts, meta, std::as_bytes(std::span(p))));
      records.push_back(
          {cistern::RecordKind::kLogLine, ts, "in", meta, std::as_bytes(std::span(p))});
    }
    std::vector<cistern::buffer::StateWrite> state;
    if (append % 3 == 0)
      state.push_back({"tail/" + std::to_string(append % 5), std::to_string(append)});
    REQUIRE(one->append(records, state, Wait::kYes));
    REQUIRE(batched->appendBatch(batch, state, Wait::kYes));
  }
  REQUIRE_OK(one->flush());
  REQUIRE_OK(batched->flush());
  CHECK(batched->stats().records == one->stats().records);
  CHECK(batched->readStatePrefix("tail/").value().size() == 5);
  const auto one_state = one->readStatePrefix("tail/").value();
  for (const auto& w : one_state) {
    CHECK(batched->readState(w.key).value() == std::optional<std::string>(w.value));
  }
  // Frame boundaries also depend on when each ring's writer took its open frame, so the rings
  // are compared record by record; each frame must describe its own records.
  auto contents = [&](LmdbRing& ring) {
    std::vector<std::string> records;
    std::size_t frames = 0;
    ReadBatch batch;
    FrameId next = 0;
    for (FrameId from = 1;; from = next) {
      const auto n = ring.scan(from, batch, {}, &next);
      REQUIRE(n);
      if (*n == 0) break;
      for (const auto& f : batch.frames()) {
        ++frames;
        std::uint32_t count = 0;
        std::uint64_t first = UINT64_MAX;
        std::uint64_t last = 0;
        cistern::RecordReader reader(f.body);
        while (const auto* r = reader.next()) {
          ++count;
          first = std::min(first, r->timestamp_ns);
          last = std::max(last, r->timestamp_ns);
          records.push_back(
              std::to_string(r->timestamp_ns) + "|" + std::string(r->input) + "|" +
              std::to_string(r->meta.size()) + "|" +
              std::string(reinterpret_cast<const char*>(r->payload.data()), r->payload.size()));
        }
        CHECK_FALSE(reader.failed());
        CHECK(f.record_count == count);
        CHECK(f.first_ts == first);
        CHECK(f.last_ts == last);
        CHECK((f.body.size() <= opts_one.frame_max_bytes || count == 1));
      }
    }
    return std::make_pair(records, frames);
  };
  const auto [one_records, one_frames] = contents(*one);
  const auto [batch_records, batch_frames] = contents(*batched);
  CHECK(batch_records == one_records);
  CHECK(one_records.size() == one->stats().records);
  CHECK(batch_frames > 20);  // the limit really split the appends
}

TEST_CASE("zstd frames round-trip and take less room", "[component]") {
  TempDir plain_dir;
  TempDir zstd_dir;
  auto plain_opts = smallRing(plain_dir.path());
  auto zstd_opts = smallRing(zstd_dir.path());
  zstd_opts.codec = cistern::buffer::Codec::kZstd;
  auto plain = openRing(plain_opts);
  auto packed = openRing(zstd_opts);
  appendSeq(*plain, 0, 2000);
  appendSeq(*packed, 0, 2000);
  REQUIRE_OK(plain->flush());
  REQUIRE_OK(packed->flush());
  CHECK(packed->stats().used_bytes * 2 < plain->stats().used_bytes);
  bool intact = true;
  CHECK(drain(*packed->consumer("out").value(), true, &intact) == iota(0, 2000));
  CHECK(intact);
}

TEST_CASE("a consumer created later receives the whole backlog; removal frees frames",
          "[component]") {
  TempDir dir;
  auto ring = openRing(smallRing(dir.path()));
  auto* a = ring->consumer("a").value();
  appendSeq(*ring, 0, 200);
  REQUIRE_OK(ring->flush());
  auto* late = ring->consumer("late").value();
  CHECK(late->stats().assigned_records == 200);
  CHECK(drain(*a, true) == iota(0, 200));
  REQUIRE_OK(ring->flush());
  CHECK(ring->stats().records == 200);  // "late" holds them
  REQUIRE_OK(ring->removeConsumer("late"));
  CHECK(ring->stats().records == 0);
  CHECK(ring->consumerNames() == std::vector<std::string>{"a"});
  CHECK_FALSE(ring->removeConsumer("late"));
  CHECK_FALSE(ring->consumer(""));
}

TEST_CASE("a map too small for max_size bounds the ring: eviction, no drops, never fatal",
          "[component][fault]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.max_size = 64ULL << 20U;  // the byte bound alone would never evict
  opts.map_size = 2ULL << 20U;   // but the map holds barely 2 MiB
  opts.commit_max_bytes = 128U << 10U;
  auto ring = openRing(opts);
  auto* out = ring->consumer("out").value();
  for (int round = 0; round < 50; ++round) {
    REQUIRE(appendSeq(*ring, static_cast<std::uint64_t>(round) * 500, 500) != 0);
  }
  REQUIRE_OK(ring->flush(30s));
  const auto st = ring->stats();
  CHECK(st.effective_max_size < opts.max_size);
  CHECK(st.used_bytes <= st.effective_max_size);
  CHECK(st.evicted_frames > 0);
  CHECK(st.dropped_map_full == 0);
  CHECK(st.appended_records == 25'000);
  CHECK(st.file_bytes <= st.map_size);
  const auto rest = drain(*out, true);
  CHECK(std::is_sorted(rest.begin(), rest.end()));
  REQUIRE_FALSE(rest.empty());
  CHECK(rest.back() == 24'999);
  REQUIRE_OK(ring->flush());
  checkAccounting(out->stats());
  CHECK(out->stats().acked_records + out->stats().evicted_records == 25'000);
}

TEST_CASE("concurrent producers and a consumer thread lose and repeat nothing",
          "[component][concurrent]") {
  TempDir dir;
  auto opts = smallRing(dir.path());
  opts.max_size = 256ULL << 20U;
  auto ring = openRing(opts);
  auto* out = ring->consumer("out").value();
  constexpr std::uint64_t kPerProducer = 20'000;
  std::atomic<bool> done{false};
  std::atomic<bool> read_failed{false};
  std::vector<std::uint64_t> got;
  // Catch2 assertions are not thread-safe: the reader records failures for the main thread.
  std::thread reader([&] {
    ReadBatch batch;
    while (true) {
      const bool finished = done.load();
      auto n = out->readNext(batch);
      if (!n) {
        read_failed = true;
        return;
      }
      if (*n == 0) {
        if (finished) break;
        std::this_thread::sleep_for(1ms);
        continue;
      }
      for (auto s : seqsOf(batch)) got.push_back(s);
      for (const auto& f : batch.frames()) out->ack(f.id);
    }
  });
  std::vector<std::thread> producers;
  for (std::uint64_t p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < kPerProducer; i += 50) {
        appendSeq(*ring, p * kPerProducer + i, 50);
      }
    });
  }
  for (auto& t : producers) t.join();
  REQUIRE_OK(ring->flush());
  done = true;
  reader.join();
  CHECK_FALSE(read_failed);
  std::sort(got.begin(), got.end());
  CHECK(got == iota(0, 2 * kPerProducer));
  REQUIRE_OK(ring->flush());
  CHECK(ring->stats().frames == 0);
  checkAccounting(out->stats());
}

TEST_CASE("bad options and bad records are refused with clear errors", "[component]") {
  TempDir dir;
  RingOptions o = smallRing(dir.path());
  o.max_size = 1000;
  auto bad = LmdbRing::open(o);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("max_size") != std::string::npos);

  auto ring = openRing(smallRing(dir.path()));
  cistern::RecordInput nameless{cistern::RecordKind::kTest, 0, "", {}, {}};
  auto r = ring->append(std::span(&nameless, 1));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == cistern::ErrorCode::kInvalidArgument);
  CHECK(ring->stats().refused_invalid == 1);

  RingOptions ro;
  ro.dir = dir / "nothing-here";
  ro.read_only = true;
  auto missing = LmdbRing::open(ro);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == cistern::ErrorCode::kNotFound);
}
