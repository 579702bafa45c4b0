// MDB_MAP_FULL for real: another process pins an old snapshot, so nothing the ring frees can be
// reused and the map fills although the ring itself stays small. The writer must not crash, nor
// hang its callers: it grows the map up to its limit, evicts, then refuses and counts what it
// cannot store; once the reader is gone it recovers by itself.
#include <catch2/catch.hpp>

#include <csignal>
#include <thread>

#include "../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "subprocess.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::buffer::LmdbRing;
using cistern::buffer::Wait;
using cistern::testing::appendSeq;
using cistern::testing::Child;
using cistern::testing::TempDir;

TEST_CASE("a reader pinning pages fills the map: counted, never fatal, recovered after it",
          "[fault]") {
  TempDir dir;
  auto opts = cistern::testing::smallRing(dir.path());
  opts.max_size = 16ULL << 20U;
  opts.commit_max_bytes = 512U << 10U;
  opts.frame_max_bytes = 64U << 10U;
  opts.ingest_max_bytes = 2U << 20U;
  auto ring = LmdbRing::open(opts).value();
  auto* out = ring->consumer("out").value();
  const auto initial_map = ring->stats().map_size;

  std::uint64_t seq = 0;      // records offered so far
  std::uint64_t refused = 0;  // records append() refused (queue full)
  std::vector<std::uint64_t> got;
  auto drainAll = [&] {
    for (auto s : cistern::testing::drain(*out, true)) got.push_back(s);
  };
  // Offers `mib` MiB of 1000-byte records in 64-record appends.
  auto offer = [&](int mib, Wait wait) {
    for (int i = 0; i < mib * 16; ++i) {
      if (appendSeq(*ring, seq, 64, 1000, "test", wait) == 0) refused += 64;
      seq += 64;
      drainAll();
      std::this_thread::sleep_for(1ms);
    }
  };
  offer(4, Wait::kYes);
  REQUIRE_OK(ring->flush(20s));

  Child pin({cistern::testing::binary("tests/lmdb_pin_reader"), dir.path().string()});
  while (pin.out().find("pinned") == std::string::npos) REQUIRE(pin.pump(5s));
  // Three times max_size through a map that cannot reuse a page; appends never wait, so a stuck
  // writer refuses them (counted) instead of blocking this thread.
  // On a loaded machine the writer refuses much of that (its queue is full while it commits
  // slowly), so keep offering, within a bound, until the map has filled.
  offer(48, Wait::kNo);
  const auto offer_deadline = std::chrono::steady_clock::now() + 120s;
  for (int more = 0; more < 12 && ring->stats().map_full_events == 0 &&
                     std::chrono::steady_clock::now() < offer_deadline;
       ++more) {
    offer(16, Wait::kNo);
  }
  const auto pinned = ring->stats();
  CHECK(pinned.map_full_events > 0);
  CHECK(pinned.map_size > initial_map);  // the map grew before anything was refused or dropped
  // While pinned, flush() answers in bounded time (kTimeout when the writer is stuck).
  const auto t0 = std::chrono::steady_clock::now();
  (void)ring->flush(2s);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);

  pin.kill(SIGTERM);
  CHECK(pin.wait() == 0);
  REQUIRE_OK(ring->flush(30s));  // recovered by itself
  drainAll();
  REQUIRE_OK(ring->flush(30s));
  const auto dropped_before = ring->stats().dropped_map_full;
  const auto refused_before = refused;
  offer(32, Wait::kYes);
  REQUIRE_OK(ring->flush(30s));
  drainAll();
  REQUIRE_OK(ring->flush(30s));
  const auto after = ring->stats();
  CHECK(after.dropped_map_full == dropped_before);  // recovered: nothing more is dropped
  CHECK(refused == refused_before);
  // Every record offered was stored, dropped or refused, each counted exactly once.
  CHECK(after.appended_records + after.dropped_map_full + refused == seq);
  CHECK(after.refused_queue_full == refused);
  CHECK(after.file_bytes <= after.map_size);
  // Every record stored was delivered at most once and either acknowledged or evicted. A frame
  // read but evicted before its acknowledgement committed counts as evicted, so what was
  // delivered lies between the two.
  std::sort(got.begin(), got.end());
  CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
  const auto cs = out->stats();
  CHECK(cs.acked_records + cs.evicted_records == after.appended_records);
  CHECK(got.size() >= cs.acked_records);
  CHECK(got.size() <= cs.acked_records + cs.evicted_records);
  auto report = ring->verify();
  REQUIRE_OK(report);
  CHECK(report->ok());
}
