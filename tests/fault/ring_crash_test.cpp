// Crash tests of the LMDB ring: a child process (ring_crash_child) appends, and acknowledges in one
// variant, until it is killed with SIGKILL at a random moment; the ring is then reopened here and
// must hold everything the child reported durable, once, in order, with nothing acknowledged
// coming back and nothing unacknowledged lost.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "fault_util.h"
#include "subprocess.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::buffer::FrameId;
using cistern::buffer::LmdbRing;
using cistern::buffer::ReadBatch;
using cistern::buffer::RingOptions;
using cistern::buffer::SyncMode;
using cistern::testing::binary;
using cistern::testing::Child;
using cistern::testing::seqsOf;
using cistern::testing::TempDir;
using cistern::testing::fault::ChildLine;
using cistern::testing::fault::crashRingOptions;
using cistern::testing::fault::kLastSeqKey;
using cistern::testing::fault::parseChildLines;

namespace {

const char* modeName(SyncMode m) {
  return m == SyncMode::kBatch ? "batch" : m == SyncMode::kAlways ? "always" : "none";
}

std::uint64_t baseSeed() {
  const unsigned catch_seed = Catch::rngSeed();
  return catch_seed != 0 ? catch_seed : std::random_device{}();
}

struct StoredFrame {
  FrameId id = 0;
  std::vector<std::uint64_t> seqs;
};

// What survives from one round to the next.
struct History {
  std::uint64_t next_seq = 0;  // the next child starts here
  FrameId max_id = 0;          // highest frame id seen so far (in the ring or reported)
  std::uint64_t rounds_with_ack_cut = 0;
  // Ack variant: every frame the child ever announced it would acknowledge, with its seqs.
  std::map<FrameId, std::pair<std::uint64_t, std::uint64_t>> announced;
};

// What one child printed before it was killed.
struct Report {
  bool any_commit = false;
  std::uint64_t committed_seq = 0;  // every seq up to this one is committed
  FrameId committed_frame = 0;      // highest frame id committed by the child
  FrameId first_frame = 0;          // highest frame id in its first report that had one
  FrameId announced_max = 0;        // highest frame the child was about to acknowledge
  FrameId durable_ack = 0;          // every acknowledgement up to this frame is committed
};

// Reads every frame in the ring through a fresh consumer, which is removed again afterwards.
std::vector<StoredFrame> readAll(LmdbRing& ring, bool& intact) {
  auto check = ring.consumer("check");
  REQUIRE_OK(check);
  std::vector<StoredFrame> out;
  ReadBatch batch;
  for (;;) {
    auto n = (*check)->readNext(batch);
    REQUIRE_OK(n);
    if (*n == 0) break;
    CHECK(batch.corruptSkipped() == 0);
    for (const auto& f : batch.frames()) {
      StoredFrame sf;
      sf.id = f.id;
      cistern::RecordReader reader(f.body);
      while (const auto* r = reader.next()) sf.seqs.push_back(cistern::testing::seqOf(*r));
      if (reader.failed()) intact = false;
      out.push_back(std::move(sf));
    }
    (void)seqsOf(batch, &intact);  // payload filler and timestamps
  }
  REQUIRE_OK(ring.removeConsumer("check"));
  return out;
}

struct ChildOutput {
  std::string out;
  std::string err;
};

// Runs the child until it reported a commit, then `run_for` longer, then kills it. Once the child
// has the ring open, this process must not be able to open it for writing too.
ChildOutput runAndKill(const std::vector<std::string>& argv, const RingOptions& ring_options,
                       std::chrono::milliseconds run_for) {
  Child child(argv);
  const auto first_deadline = std::chrono::steady_clock::now() + 20s;
  while (child.out().find('C') == std::string::npos) {
    if (std::chrono::steady_clock::now() > first_deadline || !child.pump(10ms)) {
      child.kill(SIGKILL);
      child.wait();
      FAIL("the child reported no commit; exit " << child.wait() << ", stderr: " << child.err());
    }
  }
  {
    auto second = LmdbRing::open(ring_options);
    REQUIRE_FALSE(second);
    CHECK_THAT(second.error().message, Catch::Contains("open for writing by another process (pid " +
                                                       std::to_string(child.pid()) + ")"));
  }
  const auto deadline = std::chrono::steady_clock::now() + run_for;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    child.pump(std::max(1ms, std::min(left, 10ms)));
  }
  child.kill(SIGKILL);
  const int code = child.wait();
  while (child.pump(100ms)) {
  }
  INFO("child stderr: " << child.err());
  REQUIRE(code == 128 + SIGKILL);  // it ran until killed: no error exit of its own
  return ChildOutput{child.out(), child.err()};
}

Report summarize(const std::vector<ChildLine>& lines, History& h) {
  Report r;
  std::uint64_t prev_seq = 0;
  for (const auto& l : lines) {
    if (l.kind == 'C') {
      INFO("line C " << l.a << " " << l.b);
      // Reports only move forward, and a commit never reports a seq this child did not write.
      CHECK(l.a >= h.next_seq);
      if (r.any_commit) CHECK(l.a >= prev_seq);
      prev_seq = l.a;
      r.any_commit = true;
      r.committed_seq = l.a;
      if (l.b != 0 && r.first_frame == 0) r.first_frame = l.b;
      r.committed_frame = std::max(r.committed_frame, l.b);
    } else if (l.kind == 'a') {
      auto [it, fresh] = h.announced.try_emplace(l.a, l.b, l.c);
      if (!fresh) {
        // A frame handed out again after a restart holds the same records.
        INFO("frame " << l.a << " announced again");
        CHECK(it->second == std::make_pair(l.b, l.c));
      }
      r.announced_max = std::max(r.announced_max, l.a);
    } else if (l.kind == 'A') {
      r.durable_ack = std::max(r.durable_ack, l.a);
    }
  }
  return r;
}

void checkRound(LmdbRing& ring, const Report& rep, bool ack, bool drain, History& h) {
  const std::uint64_t start_seq = h.next_seq;
  const FrameId max_id_before = h.max_id;

  auto report = ring.verify();
  REQUIRE_OK(report);
  {
    std::string problems;
    for (const auto& p : report->problems) problems += p + "\n";
    INFO("verify problems:\n" << problems);
    CHECK(report->ok());
    CHECK(report->bad_frames.empty());
  }
  const auto st = ring.stats();
  REQUIRE(st.evicted_frames == 0);  // sized so that nothing is ever evicted

  bool intact = true;
  const auto frames = readAll(ring, intact);
  CHECK(intact);

  // Frame ids strictly increasing; seqs contiguous, each exactly once.
  std::vector<std::uint64_t> seqs;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    if (i > 0 && frames[i].id <= frames[i - 1].id) {
      FAIL("frame " << frames[i].id << " follows frame " << frames[i - 1].id);
    }
    if (frames[i].seqs.empty()) FAIL("frame " << frames[i].id << " holds no records");
    seqs.insert(seqs.end(), frames[i].seqs.begin(), frames[i].seqs.end());
  }
  const auto gap = std::adjacent_find(seqs.begin(), seqs.end(),
                                      [](std::uint64_t a, std::uint64_t b) { return b != a + 1; });
  if (gap != seqs.end()) FAIL("seq " << *(gap + 1) << " follows seq " << *gap);

  // The highest seq ever stored: the last one present, or (acknowledged and deleted) the last
  // one of the newest frame.
  std::optional<std::uint64_t> highest;
  if (!seqs.empty()) highest = seqs.back();

  // Frames written by this child have ids above every id seen before the restart (whether the
  // frames are still here or were acknowledged and deleted).
  if (rep.first_frame != 0) CHECK(rep.first_frame > max_id_before);
  CHECK(rep.committed_frame < st.next_frame);
  for (const auto& f : frames) {
    const bool from_this_child = f.seqs.front() >= start_seq;
    if (from_this_child != (f.id > max_id_before)) {
      FAIL("frame " << f.id << " starts at seq " << f.seqs.front() << "; this child started at "
                    << start_seq << ", the highest id before it was " << max_id_before);
    }
  }

  if (!ack) {
    // Nothing is ever deleted: the ring holds every seq from 0.
    REQUIRE_FALSE(seqs.empty());
    CHECK(seqs.front() == 0);
  } else {
    auto* out_or = ring.consumer("out").value();
    REQUIRE(out_or != nullptr);
    auto& out = *out_or;
    // "out" is the only consumer during a run, so a frame is deleted in the commit that makes
    // its acknowledgement durable: the ring holds exactly the frames "out" has not acknowledged
    // durably, and they all come back to it.
    ReadBatch batch;
    std::vector<FrameId> redelivered;
    for (;;) {
      auto n = out.readNext(batch);
      REQUIRE_OK(n);
      if (*n == 0) break;
      for (const auto& f : batch.frames()) redelivered.push_back(f.id);
    }
    std::vector<FrameId> present;
    present.reserve(frames.size());
    for (const auto& f : frames) present.push_back(f.id);
    CHECK(redelivered == present);
    const auto cs = out.stats();
    CHECK(cs.pending_frames == present.size());
    CHECK(cs.assigned_records ==
          cs.acked_records + cs.evicted_records + cs.corrupt_records + cs.pending_records);

    // Acknowledged and committed: never handed out again.
    const FrameId cut = present.empty() ? st.next_frame : present.front();
    INFO("first frame not acknowledged " << cut << ", durable ack " << rep.durable_ack
                                         << ", announced " << rep.announced_max);
    CHECK(cut > rep.durable_ack);
    // Not acknowledged: still there. The frames before the cut are gone, so each was announced;
    // the one just before the cut ends right before the first seq still present.
    auto before = h.announced.lower_bound(cut);
    if (before == h.announced.begin()) {
      CHECK(cut == 1);  // nothing was ever acknowledged
      if (!seqs.empty()) CHECK(seqs.front() == 0);
    } else {
      --before;
      // The ring numbers frames consecutively (none is dropped here), so the frame just before
      // the cut was announced: no frame vanished unacknowledged.
      CHECK(before->first == cut - 1);
      if (!seqs.empty()) {
        CHECK(seqs.front() == before->second.second + 1);
      } else {
        highest = before->second.second;
      }
    }
    if (rep.durable_ack < rep.announced_max && cut <= rep.announced_max) ++h.rounds_with_ack_cut;
  }

  REQUIRE(highest.has_value());
  // Everything the child reported committed is there (and possibly a little more it committed
  // but had no time to report).
  CHECK(*highest >= rep.committed_seq);
  CHECK(*highest >= start_seq);
  if (ack) {
    const auto cs = ring.consumer("out").value()->stats();
    CHECK(cs.acked_records + cs.pending_records == *highest + 1);
  }
  // The state committed with every append names the last seq of the newest append stored, so a
  // producer resuming from it neither skips nor repeats records.
  const auto last_seq = ring.readState(kLastSeqKey);
  REQUIRE_OK(last_seq);
  REQUIRE(last_seq->has_value());
  CHECK(std::stoull(**last_seq) == *highest);

  if (drain) {
    // Everything acknowledged and deleted: the next child starts on an empty ring, and its frame
    // ids must still continue above every id used before.
    auto* out = ring.consumer("out").value();
    std::vector<FrameId> ids;
    for (const auto& f : frames) {
      ids.push_back(f.id);
      h.announced.try_emplace(f.id, f.seqs.front(), f.seqs.back());
    }
    out->ack(ids);
    REQUIRE_OK(ring.flush());
    CHECK(ring.stats().frames == 0);
  }

  h.next_seq = *highest + 1;
  h.max_id = std::max({h.max_id, rep.committed_frame, rep.announced_max,
                       frames.empty() ? FrameId{0} : frames.back().id});
}

void crashRounds(SyncMode mode, int rounds, bool ack) {
  TempDir dir("cistern-crash");
  const std::uint64_t seed = baseSeed();
  INFO("sync " << modeName(mode) << ", seed " << seed << (ack ? ", acknowledging" : ""));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> run_ms(20, 300);
  History h;
  const auto t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    const int ms = run_ms(rng);
    INFO("round " << round << ", starting at seq " << h.next_seq << ", killed after " << ms
                  << " ms");
    std::vector<std::string> argv{binary("tests/ring_crash_child"), dir.path().string(),
                                  modeName(mode), std::to_string(h.next_seq),
                                  std::to_string(rng())};
    if (ack) argv.emplace_back("ack");
    const ChildOutput out =
        runAndKill(argv, crashRingOptions(dir.path(), mode), std::chrono::milliseconds(ms));
    INFO("child stderr:\n" << out.err);
    std::vector<ChildLine> lines;
    REQUIRE(parseChildLines(out.out, lines));
    const Report rep = summarize(lines, h);
    REQUIRE(rep.any_commit);
    // The kill released the child's writer lock.
    auto ring = LmdbRing::open(crashRingOptions(dir.path(), mode));
    REQUIRE_OK(ring);
    // Every third round of the acknowledging variant ends with an empty ring.
    checkRound(**ring, rep, ack, ack && round % 3 == 2, h);
    REQUIRE_OK((*ring)->close());
  }
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("crash sync=%s%s: %d kills, %llu records, %lld ms", modeName(mode), ack ? " ack" : "",
              rounds, static_cast<unsigned long long>(h.next_seq),
              static_cast<long long>(took.count()));
  if (ack) {
    std::printf(", %llu kills between an acknowledgement and its commit",
                static_cast<unsigned long long>(h.rounds_with_ack_cut));
  }
  std::printf("\n");
}

}  // namespace

TEST_CASE("killed in sync=batch, the ring keeps every reported commit exactly once", "[fault]") {
  crashRounds(SyncMode::kBatch, 30, false);
}

TEST_CASE("killed in sync=always, the ring keeps every reported commit exactly once", "[fault]") {
  crashRounds(SyncMode::kAlways, 10, false);
}

TEST_CASE("killed in sync=none, the ring keeps every reported commit exactly once", "[fault]") {
  crashRounds(SyncMode::kNone, 10, false);
}

TEST_CASE("killed while acknowledging, durable acks stick and the rest comes back", "[fault]") {
  crashRounds(SyncMode::kBatch, 15, true);
}

// The state written with an append commits in the same transaction as all the append's
// records, even when more than commit_max_bytes are queued and the writer splits them over
// several commits (a crash between such commits must not leave records whose state says they
// were never written: a file tail would resume before them and repeat them).
TEST_CASE("the state written with an append commits together with all its records", "[fault]") {
  TempDir dir("cistern-crash");
  auto o = cistern::testing::smallRing(dir.path());
  o.frame_max_bytes = 4096;                      // four 1020-byte records per frame
  o.commit_max_bytes = 8192;                     // two frames per commit
  o.commit_interval = std::chrono::seconds(10);  // nothing commits before flush()
  auto opened = LmdbRing::open(o);
  REQUIRE_OK(opened);
  LmdbRing& ring = **opened;
  // After every commit: records in the ring and the state committed with them, which names the
  // number of records appended so far (a file tail's offset).
  std::vector<std::pair<std::uint64_t, std::string>> seen;
  ring.setCommitListener([&](const cistern::buffer::CommitInfo& c) {
    if (c.records == 0) return;
    auto state = ring.readState("tail/offset");
    seen.emplace_back(ring.stats().records, state && *state ? **state : "");
  });
  std::vector<std::vector<std::byte>> payloads(6);
  std::uint64_t seq = 0;
  auto appendWithState = [&](std::size_t n) {
    std::vector<cistern::RecordInput> records;
    for (std::size_t i = 0; i < n; ++i, ++seq) {
      cistern::testing::fault::fillPayload(payloads[i], seq, 1000);
      records.push_back(cistern::RecordInput{cistern::RecordKind::kTest,
                                             cistern::testing::fault::kTsBase + seq,
                                             "test",
                                             {},
                                             payloads[i]});
    }
    std::vector<cistern::buffer::StateWrite> state{{"tail/offset", std::to_string(seq)}};
    REQUIRE(ring.append(records, state));
  };
  // Each append spans two frames (four records, then two) and two frames fill a commit, so
  // the writer must split the queue into several commits, only ever between appends.
  appendWithState(6);
  appendWithState(6);
  appendWithState(6);
  REQUIRE_OK(ring.flush());
  REQUIRE(seen.size() >= 2);
  for (const auto& [records, state] : seen) {
    INFO("a commit left " << records << " records in the ring with tail/offset=" << state);
    CHECK(std::to_string(records) == state);
  }
}
