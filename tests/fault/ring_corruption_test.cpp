// Corruption tests of the LMDB ring: bytes of one stored frame are damaged in data.mdb while the
// ring is closed. verify() must name the frame, readers must skip it (counted, never handed out,
// never a crash) and deliver every other frame intact, and the consumers' accounting must count
// its records as corrupt.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "fault_util.h"
#include "ring_files.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::buffer::Codec;
using cistern::buffer::ConsumerStats;
using cistern::buffer::Direction;
using cistern::buffer::FrameId;
using cistern::buffer::LmdbRing;
using cistern::buffer::ReadBatch;
using cistern::buffer::RingOptions;
using cistern::testing::damageFrameBody;
using cistern::testing::findAll;
using cistern::testing::frameHeadersOf;
using cistern::testing::isFrameHeaderOf;
using cistern::testing::kFrameCodecAt;
using cistern::testing::kFrameStoredLenAt;
using cistern::testing::readFile;
using cistern::testing::seqsOf;
using cistern::testing::TempDir;
using cistern::testing::writeAt;
using cistern::testing::fault::fillPayload;
using cistern::testing::fault::kTsBase;

namespace {

constexpr std::size_t kFrames = 12;
constexpr std::size_t kTarget = 5;  // the damaged frame, in the middle
constexpr std::uint64_t kRecordsPerFrame = 8;
constexpr std::size_t kPayloadBytes = 1000;  // frames of ~8 KiB: LMDB overflow pages

enum class Damage { kBody, kMagic, kStoredLength, kZstdBody };

const char* damageName(Damage d) {
  switch (d) {
    case Damage::kBody:
      return "payload bytes";
    case Damage::kMagic:
      return "header magic";
    case Damage::kStoredLength:
      return "stored length";
    case Damage::kZstdBody:
      return "compressed body";
  }
  return "?";
}

// What verify() says about each kind of damage.
const char* expectedProblem(Damage d) {
  switch (d) {
    case Damage::kMagic:
      return "bad magic";
    case Damage::kStoredLength:
      return "stored length";
    case Damage::kBody:
    case Damage::kZstdBody:
      return "checksum mismatch";
  }
  return "?";
}

RingOptions corruptionOptions(const std::filesystem::path& dir, Codec codec) {
  auto o = cistern::testing::smallRing(dir);
  o.codec = codec;
  return o;
}

struct Written {
  std::vector<FrameId> ids;  // by frame index
  std::uint64_t records = 0;
};

// Writes kFrames frames of kRecordsPerFrame records (one append and one flush each, so each
// becomes exactly one frame); a record of frame kTarget carries `marker` after its seq.
Written writeFrames(const RingOptions& o, const std::string& marker) {
  auto opened = LmdbRing::open(o);
  REQUIRE_OK(opened);
  LmdbRing& ring = **opened;
  REQUIRE_OK(ring.consumer("a"));
  REQUIRE_OK(ring.consumer("b"));
  Written w;
  std::vector<std::vector<std::byte>> payloads(kRecordsPerFrame);
  std::vector<cistern::RecordInput> records;
  for (std::size_t f = 0; f < kFrames; ++f) {
    records.clear();
    for (std::uint64_t i = 0; i < kRecordsPerFrame; ++i) {
      const std::uint64_t seq = w.records + i;
      fillPayload(payloads[i], seq, kPayloadBytes);
      if (f == kTarget && i == 3) {
        std::memcpy(payloads[i].data() + 8, marker.data(), marker.size());
      }
      records.push_back(
          cistern::RecordInput{cistern::RecordKind::kTest, kTsBase + seq, "test", {}, payloads[i]});
    }
    REQUIRE(ring.append(records, {}, cistern::buffer::Wait::kYes));
    REQUIRE_OK(ring.flush());
    w.records += kRecordsPerFrame;
    w.ids.push_back(ring.newestFrame());
    if (f > 0) REQUIRE(w.ids[f] > w.ids[f - 1]);
  }
  const auto st = ring.stats();
  REQUIRE(st.frames == kFrames);
  REQUIRE(st.records == w.records);
  REQUIRE_OK(ring.close());
  return w;
}

// Damages frame `id` in data.mdb; returns how many stored copies were damaged (an LMDB page
// that held the frame inline may survive as a stale copy in a free page; damaging it too is
// harmless, and the live one is certainly among them).
std::size_t damage(const std::filesystem::path& file, Damage what, FrameId id,
                   const std::string& marker) {
  auto data = readFile(file);
  std::vector<std::size_t> headers;
  if (what == Damage::kZstdBody) {
    // No marker survives compression: find the frame by the id in its header.
    headers = frameHeadersOf(data, id);
    REQUIRE_FALSE(headers.empty());
    for (std::size_t h : headers) {
      REQUIRE(std::to_integer<int>(data[h + kFrameCodecAt]) == static_cast<int>(Codec::kZstd));
    }
    return damageFrameBody(file, id);
  }
  const auto hits = findAll(data, std::as_bytes(std::span(marker)));
  // The frame fills LMDB overflow pages, written once: exactly one copy in the file.
  REQUIRE(hits.size() == 1);
  const std::size_t pos = hits.front();
  if (what == Damage::kBody) {
    // Filler bytes of the marked record, well inside its 1000-byte payload.
    std::vector<std::byte> b(data.begin() + static_cast<std::ptrdiff_t>(pos + 100),
                             data.begin() + static_cast<std::ptrdiff_t>(pos + 104));
    for (auto& x : b) x ^= std::byte{0x5a};
    REQUIRE(writeAt(file, pos + 100, b));
    return 1;
  }
  // The header precedes the marker within the same frame (of under 16 KiB).
  std::size_t h = pos;
  while (h > 0 && pos - h < (16U << 10U) && !isFrameHeaderOf(data, h, id)) --h;
  REQUIRE(isFrameHeaderOf(data, h, id));
  if (what == Damage::kMagic) {
    const std::byte b[1] = {std::byte{'X'}};
    REQUIRE(writeAt(file, h, b));
  } else {
    std::byte b[4];
    cistern::bytes::storeLe<std::uint32_t>(b, 0x7fffffffU);
    REQUIRE(writeAt(file, h + kFrameStoredLenAt, b));
  }
  return 1;
}

void checkVerifyReport(LmdbRing& ring, FrameId id, Damage what) {
  auto report = ring.verify();
  REQUIRE_OK(report);
  std::string problems;
  for (const auto& p : report->problems) problems += p + "\n";
  INFO("problems:\n" << problems);
  CHECK_FALSE(report->ok());
  CHECK(report->bad_frames == std::vector<FrameId>{id});
  CHECK(report->frames_checked == kFrames);
  CHECK(problems.find("frame " + std::to_string(id) + ": ") != std::string::npos);
  CHECK(problems.find(expectedProblem(what)) != std::string::npos);
}

void checkAccounting(const ConsumerStats& s) {
  INFO("consumer " << s.name);
  CHECK(s.assigned_records ==
        s.acked_records + s.evicted_records + s.corrupt_records + s.pending_records);
}

}  // namespace

TEST_CASE("a damaged frame is reported by verify, skipped and counted by readers", "[fault]") {
  const Damage what =
      GENERATE(Damage::kBody, Damage::kMagic, Damage::kStoredLength, Damage::kZstdBody);
  INFO("damaged: " << damageName(what));
  TempDir dir("cistern-corrupt");
  const auto opts =
      corruptionOptions(dir.path(), what == Damage::kZstdBody ? Codec::kZstd : Codec::kNone);
  std::mt19937_64 rng(std::random_device{}());
  const std::string marker = "CISTERN-CORRUPTION-MARKER-" + std::to_string(rng());
  const Written w = writeFrames(opts, marker);
  const FrameId bad = w.ids[kTarget];
  const std::size_t copies = damage(dir / "data.mdb", what, bad, marker);
  INFO("frame " << bad << ", stored copies damaged: " << copies);

  // An inspecting tool (read-only, no writer) sees the damage too.
  {
    RingOptions ro;
    ro.dir = dir.path();
    ro.read_only = true;
    auto inspect = LmdbRing::open(ro);
    REQUIRE_OK(inspect);
    checkVerifyReport(**inspect, bad, what);
    REQUIRE_OK((*inspect)->close());
  }

  auto opened = LmdbRing::open(opts);
  REQUIRE_OK(opened);
  LmdbRing& ring = **opened;
  checkVerifyReport(ring, bad, what);
  CHECK(ring.stats().corrupt_frames_seen == 0);  // verify reports; only readers count

  // Consumer "a" reads forward three frames at a time, so the bad frame falls mid-batch.
  auto* a = ring.consumer("a").value();
  ReadBatch batch;
  std::vector<FrameId> delivered;
  std::vector<std::uint64_t> seqs;
  std::uint64_t skipped = 0;
  bool intact = true;
  for (;;) {
    auto n = a->readNext(batch, {3, 1U << 30U});
    REQUIRE_OK(n);
    skipped += batch.corruptSkipped();
    if (*n == 0) break;
    for (const auto& f : batch.frames()) {
      delivered.push_back(f.id);
      CHECK(f.record_count == kRecordsPerFrame);
    }
    for (auto s : seqsOf(batch, &intact)) seqs.push_back(s);
    for (const auto& f : batch.frames()) a->ack(f.id);
  }
  std::vector<FrameId> good_ids = w.ids;
  good_ids.erase(good_ids.begin() + kTarget);
  std::vector<std::uint64_t> good_seqs;
  for (std::uint64_t s = 0; s < w.records; ++s) {
    if (s / kRecordsPerFrame != kTarget) good_seqs.push_back(s);
  }
  CHECK(skipped == 1);
  CHECK(delivered == good_ids);
  CHECK(seqs == good_seqs);  // every frame before and after it, intact
  CHECK(intact);
  CHECK(ring.stats().corrupt_frames_seen == 1);

  REQUIRE_OK(ring.flush());
  const auto sa = a->stats();
  CHECK(sa.corrupt_frames == 1);
  CHECK(sa.corrupt_records == kRecordsPerFrame);
  CHECK(sa.acked_frames == kFrames - 1);
  CHECK(sa.acked_records == w.records - kRecordsPerFrame);
  CHECK(sa.pending_records == 0);
  CHECK(sa.assigned_records == w.records);
  checkAccounting(sa);
  // "b" has not read it yet: the frame stays, still due to "b".
  CHECK(ring.stats().frames == kFrames);

  // Consumer "b" meets it reading backward from the newest frame (the live lane).
  auto* b = ring.consumer("b").value();
  std::vector<FrameId> backward;
  skipped = 0;
  for (FrameId from = ring.newestFrame(); from != 0;) {
    auto n = b->readAt(from, Direction::kBackward, batch, {3, 1U << 30U});
    REQUIRE_OK(n);
    skipped += batch.corruptSkipped();
    if (*n == 0) break;
    for (const auto& f : batch.frames()) backward.push_back(f.id);
    from = batch.frames().back().id - 1;
  }
  std::reverse(backward.begin(), backward.end());
  CHECK(backward == good_ids);
  CHECK(skipped == 1);
  CHECK(ring.stats().corrupt_frames_seen == 2);
  // Once skipped, it is done for "b" too: readNext neither hands it out nor counts it again.
  const auto rest = cistern::testing::drain(*b, true, &intact);
  CHECK(rest == good_seqs);
  CHECK(intact);
  CHECK(ring.stats().corrupt_frames_seen == 2);

  REQUIRE_OK(ring.flush());
  const auto sb = b->stats();
  CHECK(sb.corrupt_frames == 1);
  CHECK(sb.corrupt_records == kRecordsPerFrame);
  CHECK(sb.acked_records == w.records - kRecordsPerFrame);
  CHECK(sb.pending_records == 0);
  checkAccounting(sb);
  // Done for every consumer, the damaged frame is deleted with the rest; the ring is sound.
  const auto st = ring.stats();
  CHECK(st.frames == 0);
  CHECK(st.records == 0);
  CHECK(st.deleted_frames == kFrames);
  auto after = ring.verify();
  REQUIRE_OK(after);
  CHECK(after->ok());
  REQUIRE_OK(ring.close());

  // The corrupt counts are durable.
  auto reopened = LmdbRing::open(opts);
  REQUIRE_OK(reopened);
  for (const auto& s : (*reopened)->consumerStats()) {
    CHECK(s.corrupt_frames == 1);
    CHECK(s.corrupt_records == kRecordsPerFrame);
    checkAccounting(s);
  }
}
