// cistern-bench buffer: the ring's write and read paths against raw sequential disk writes.
//
// Each run: (1) writes the same number of payload bytes to a plain file in 1 MiB writes and one
// fdatasync (the disk's reference figure, measured in the same run because shared machines are
// noisy), and again with an fdatasync every commit_max_bytes (the same durability as the ring); (2)
// appends N records through LmdbRing's writer path from one producer thread in batches of 64, until
// flush() returns; (3) closes, reopens with the whole backlog present and times opening plus
// reading the first frame; (4) reads everything back through consumer 0 (and K-1 more consumers on
// their own threads), acknowledging every frame. Prints a line per run and, last, one JSON line
// with medians.
#include "buffer_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cistern/buffer/ring.h"
#include "cistern/core/bytes.h"
#include "cistern/core/units.h"
#include "cistern/platform/clock.h"
#include "cistern/platform/process.h"

namespace cistern::bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct RunResult {
  double raw_disk_mb_per_s = 0;
  double raw_synced_mb_per_s = 0;  // same, with an fdatasync per commit_max_bytes
  double write_records_per_s = 0;
  double write_mb_per_s = 0;
  double read_records_per_s = 0;
  double read_mb_per_s = 0;
  double commit_p50_ms = 0;
  double commit_p99_ms = 0;
  double sync_p50_ms = 0;
  double reopen_first_read_ms = 0;
  std::uint64_t commits = 0;
  std::uint64_t file_bytes = 0;
  std::uint64_t records_read = 0;
  double peak_rss_mb = 0;  // this run's: VmHWM reset when it started
  double peak_rss_anon_mb = 0;
  double peak_rss_file_mb = 0;
};

bool g_phases = false;

void reportMemory(const char* phase) {
  if (!g_phases) return;
  const auto m = platform::memoryUsage();
  fmt::print("  memory {}: rss {} (anon {}, file {}), peak {}\n", phase, formatSize(m.rss_bytes),
             formatSize(m.rss_anon_bytes), formatSize(m.rss_file_bytes),
             formatSize(m.peak_rss_bytes));
}

// Sequential 1 MiB writes: what the disk does with no database in the way. With `sync_every` 0,
// one fdatasync at the end (the reference disk_ratio uses); otherwise an fdatasync after every
// `sync_every` bytes, the durability the ring gives with sync: batch.
Result<double> rawDiskMbPerS(const fs::path& dir, std::uint64_t bytes, std::uint64_t sync_every) {
  const fs::path file = dir / "raw-disk-reference.bin";
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(ErrorCode::kIo, "open " + file.string() + ": " + std::strerror(errno));
  std::vector<std::byte> chunk(1U << 20U);
  std::mt19937_64 rng(7);
  for (std::size_t i = 0; i + 8 <= chunk.size(); i += 8)
    bytes::storeLe<std::uint64_t>(&chunk[i], rng());
  const auto t0 = Clock::now();
  std::uint64_t left = bytes;
  std::uint64_t unsynced = 0;
  while (left > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size()));
    const ssize_t w = ::write(fd, chunk.data(), n);
    if (w <= 0) {
      ::close(fd);
      return fail(ErrorCode::kIo, std::string("raw write: ") + std::strerror(errno));
    }
    left -= static_cast<std::uint64_t>(w);
    unsynced += static_cast<std::uint64_t>(w);
    if (sync_every != 0 && unsynced >= sync_every) {
      ::fdatasync(fd);
      unsynced = 0;
    }
  }
  ::fdatasync(fd);
  const double s = secondsSince(t0);
  ::close(fd);
  fs::remove(file);
  return mbPerS(bytes, s);
}

Result<RunResult> runOnce(const BufferBenchOptions& o, int run) {
  RunResult r;
  const fs::path dir = o.dir / fmt::format("buffer-run-{}", run);
  std::error_code ec;
  reportMemory("run start");
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  const std::uint64_t payload_bytes = o.records * o.record_size;

  auto raw = rawDiskMbPerS(dir, payload_bytes, 0);
  if (!raw) return tl::unexpected(raw.error());
  r.raw_disk_mb_per_s = *raw;
  const std::uint64_t commit_bytes =
      o.commit_max_bytes != 0 ? o.commit_max_bytes : buffer::RingOptions{}.commit_max_bytes;
  auto synced = rawDiskMbPerS(dir, payload_bytes, commit_bytes);
  if (!synced) return tl::unexpected(synced.error());
  r.raw_synced_mb_per_s = *synced;
  reportMemory("after raw reference");

  buffer::RingOptions ro;
  ro.dir = dir / "ring";
  ro.sync = o.sync;
  ro.codec = o.codec;
  ro.max_size = o.max_size != 0
                    ? o.max_size
                    : std::max<std::uint64_t>(payload_bytes + payload_bytes / 4 + (256ULL << 20U),
                                              64ULL << 20U);
  if (o.commit_max_bytes != 0) ro.commit_max_bytes = o.commit_max_bytes;
  if (o.ingest_max_bytes != 0) ro.ingest_max_bytes = o.ingest_max_bytes;
  if (o.commit_interval.count() != 0) ro.commit_interval = o.commit_interval;
  auto opened = buffer::LmdbRing::open(ro);
  if (!opened) return tl::unexpected(opened.error());
  auto ring = std::move(*opened);
  reportMemory("after open");
  std::vector<buffer::Consumer*> consumers;
  for (int i = 0; i < o.consumers; ++i) {
    auto c = ring->consumer(fmt::format("bench-{}", i));
    if (!c) return tl::unexpected(c.error());
    consumers.push_back(*c);
  }
  std::mutex commit_mu;
  std::vector<double> commit_ms;
  std::vector<double> sync_ms;
  ring->setCommitListener([&](const buffer::CommitInfo& c) {
    if (c.records == 0) return;
    std::lock_guard lk(commit_mu);
    commit_ms.push_back(std::chrono::duration<double, std::milli>(c.duration).count());
    sync_ms.push_back(std::chrono::duration<double, std::milli>(c.sync_duration).count());
  });

  // Incompressible payloads: slices of a random pool, each stamped with its sequence number.
  // Small enough to stay in cache: the producer must not be what the benchmark measures.
  std::vector<std::byte> pool((256U << 10U) + o.record_size);
  std::mt19937_64 rng(42);
  for (std::size_t i = 0; i + 8 <= pool.size(); i += 8)
    bytes::storeLe<std::uint64_t>(&pool[i], rng());
  constexpr std::size_t kBatch = 64;
  std::vector<std::vector<std::byte>> scratch(kBatch, std::vector<std::byte>(o.record_size));
  std::vector<RecordInput> batch(kBatch);

  const std::uint64_t wall0 = platform::SystemClock::instance().wallNanos();
  const auto w0 = Clock::now();
  for (std::uint64_t seq = 0; seq < o.records;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(kBatch, o.records - seq));
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t s = seq + i;
      auto& p = scratch[i];
      std::memcpy(p.data(), pool.data() + (s * 4099U) % (pool.size() - o.record_size), p.size());
      if (p.size() >= 8) bytes::storeLe<std::uint64_t>(p.data(), s);
      batch[i] = RecordInput{RecordKind::kTest, wall0 + s * 1000U, "bench", {}, p};
    }
    auto t = ring->append(std::span(batch.data(), n), {}, buffer::Wait::kYes);
    if (!t) return tl::unexpected(t.error());
    seq += n;
  }
  if (auto st = ring->flush(std::chrono::minutes(10)); !st) return tl::unexpected(st.error());
  const double write_s = secondsSince(w0);
  reportMemory("after write");
  r.write_records_per_s = static_cast<double>(o.records) / write_s;
  r.write_mb_per_s = mbPerS(payload_bytes, write_s);
  {
    std::lock_guard lk(commit_mu);
    r.commits = commit_ms.size();
    r.commit_p50_ms = percentile(commit_ms, 50);
    r.commit_p99_ms = percentile(commit_ms, 99);
    r.sync_p50_ms = percentile(sync_ms, 50);
  }

  // Startup with the whole backlog present: close, reopen, read the first frame.
  {
    if (auto st = ring->close(); !st) return tl::unexpected(st.error());
    ring.reset();
    const auto o0 = Clock::now();
    opened = buffer::LmdbRing::open(ro);
    if (!opened) return tl::unexpected(opened.error());
    ring = std::move(*opened);
    {
      auto probe = ring->consumer("bench-0");
      if (!probe) return tl::unexpected(probe.error());
      buffer::ReadBatch first;
      auto got = (*probe)->readAt(1, buffer::Direction::kForward, first, {1, 1});
      if (!got || *got != 1) return fail(ErrorCode::kIo, "reopened ring has no first frame");
    }
    r.reopen_first_read_ms = secondsSince(o0) * 1000.0;
    reportMemory("after reopen");
    consumers.clear();
    for (int i = 0; i < o.consumers; ++i) {
      auto c = ring->consumer(fmt::format("bench-{}", i));
      if (!c) return tl::unexpected(c.error());
      consumers.push_back(*c);
    }
  }

  // Consumer 0 on this thread (timed); the others on their own threads at the same time.
  std::atomic<bool> failed{false};
  const auto acking = static_cast<std::size_t>(o.ack_consumers < 0 ? o.consumers : o.ack_consumers);
  auto consume = [&](buffer::Consumer* c, std::uint64_t* count, bool ack) {
    buffer::ReadBatch rb;
    for (;;) {
      auto n = c->readNext(rb);
      if (!n) {
        failed = true;
        return;
      }
      if (*n == 0) return;
      *count += rb.records();
      if (!ack) continue;
      for (const auto& f : rb.frames()) c->ack(f.id);
    }
  };
  std::vector<std::uint64_t> counts(consumers.size(), 0);
  std::vector<std::thread> others;
  const auto r0 = Clock::now();
  for (std::size_t i = 1; i < consumers.size(); ++i) {
    others.emplace_back(consume, consumers[i], &counts[i], i < acking);
  }
  consume(consumers[0], &counts[0], acking > 0);
  const double read_s = secondsSince(r0);
  for (auto& t : others) t.join();
  if (failed) return fail(ErrorCode::kIo, "a consumer failed to read");
  reportMemory("after read");
  r.records_read = counts[0];
  r.read_records_per_s = static_cast<double>(counts[0]) / read_s;
  r.read_mb_per_s = mbPerS(counts[0] * o.record_size, read_s);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] != o.records) {
      return fail(ErrorCode::kCorrupt,
                  fmt::format("consumer {} read {} of {} records", i, counts[i], o.records));
    }
  }
  r.file_bytes = ring->stats().file_bytes;
  (void)ring->flush();
  reportMemory("after final flush");
  if (auto st = ring->close(); !st) return tl::unexpected(st.error());
  reportMemory("after close");
  if (!o.keep) fs::remove_all(dir, ec);
  return r;
}

}  // namespace

int runBufferBench(const BufferBenchOptions& o) {
  g_phases = o.phases;
  MemorySampler sampler;
  bool peak_per_run = true;
  fmt::print(
      "buffer bench: records={} record_size={} sync={} consumers={} codec={} runs={} "
      "dir={}\n",
      o.records, o.record_size, syncName(o.sync), o.consumers,
      o.codec == buffer::Codec::kZstd ? "zstd" : "none", o.repeat, o.dir.string());
  std::vector<RunResult> runs;
  for (int i = 0; i < o.repeat; ++i) {
    // Each run's peak memory on its own: the bound is the median of the runs, and a run
    // must not be charged with heap an earlier run left behind.
    peak_per_run = resetPeakRss() && peak_per_run;
    sampler.reset();
    auto r = runOnce(o, i);
    if (!r) {
      fmt::print(stderr, "buffer bench failed: {}\n", r.error().describe());
      return 1;
    }
    r->peak_rss_mb = static_cast<double>(platform::memoryUsage().peak_rss_bytes) / 1e6;
    r->peak_rss_anon_mb = sampler.peakAnonMb();
    r->peak_rss_file_mb = sampler.peakFileMb();
    fmt::print(
        "run {}: write {:.0f} rec/s {:.1f} MB/s | raw disk {:.1f} MB/s (ratio {:.2f}), synced "
        "every commit {:.1f} MB/s (ratio {:.2f}) | read {:.0f} rec/s | commits {} p50 {:.2f} ms "
        "(sync {:.2f} ms) p99 {:.2f} ms | reopen+first read {:.2f} ms | file {} | peak rss {:.1f} "
        "MB "
        "(anon {:.1f}, file {:.1f})\n",
        i, r->write_records_per_s, r->write_mb_per_s, r->raw_disk_mb_per_s,
        r->write_mb_per_s / r->raw_disk_mb_per_s, r->raw_synced_mb_per_s,
        r->write_mb_per_s / r->raw_synced_mb_per_s, r->read_records_per_s, r->commits,
        r->commit_p50_ms, r->sync_p50_ms, r->commit_p99_ms, r->reopen_first_read_ms,
        formatSize(r->file_bytes), r->peak_rss_mb, r->peak_rss_anon_mb, r->peak_rss_file_mb);
    runs.push_back(*r);
  }
  auto med = [&](auto field) {
    std::vector<double> v;
    v.reserve(runs.size());
    for (const auto& r : runs) v.push_back(field(r));
    return percentile(v, 50);
  };
  nlohmann::json j;
  j["bench"] = "buffer";
  j["records"] = o.records;
  j["record_size"] = o.record_size;
  j["sync"] = syncName(o.sync);
  j["consumers"] = o.consumers;
  j["runs"] = o.repeat;
  j["write_records_per_s"] = med([](const RunResult& r) { return r.write_records_per_s; });
  j["write_mb_per_s"] = med([](const RunResult& r) { return r.write_mb_per_s; });
  j["read_records_per_s"] = med([](const RunResult& r) { return r.read_records_per_s; });
  j["read_mb_per_s"] = med([](const RunResult& r) { return r.read_mb_per_s; });
  j["commit_p50_ms"] = med([](const RunResult& r) { return r.commit_p50_ms; });
  j["commit_p99_ms"] = med([](const RunResult& r) { return r.commit_p99_ms; });
  j["raw_disk_mb_per_s"] = med([](const RunResult& r) { return r.raw_disk_mb_per_s; });
  j["disk_ratio"] = med([](const RunResult& r) { return r.write_mb_per_s / r.raw_disk_mb_per_s; });
  j["raw_synced_mb_per_s"] = med([](const RunResult& r) { return r.raw_synced_mb_per_s; });
  j["synced_disk_ratio"] =
      med([](const RunResult& r) { return r.write_mb_per_s / r.raw_synced_mb_per_s; });
  j["reopen_first_read_ms"] = med([](const RunResult& r) { return r.reopen_first_read_ms; });
  j["file_mb"] = med([](const RunResult& r) { return static_cast<double>(r.file_bytes) / 1e6; });
  // Medians of the runs' peaks; the largest run's peak beside them. Without a per-run reset
  // (peak_rss_per_run false) every run's figure includes the runs before it.
  j["peak_rss_mb"] = med([](const RunResult& r) { return r.peak_rss_mb; });
  j["peak_rss_anon_mb"] = med([](const RunResult& r) { return r.peak_rss_anon_mb; });
  j["peak_rss_file_mb"] = med([](const RunResult& r) { return r.peak_rss_file_mb; });
  j["peak_rss_max_mb"] =
      std::max_element(runs.begin(), runs.end(), [](const RunResult& a, const RunResult& b) {
        return a.peak_rss_mb < b.peak_rss_mb;
      })->peak_rss_mb;
  j["peak_rss_per_run"] = peak_per_run;
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace cistern::bench
