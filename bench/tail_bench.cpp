// cistern-bench tail: a file of N lines through FileTailSource into a fresh LmdbRing, against a
// plain read of the same file in the same run.
//
// Each run: (1) writes a file of N lines of line_size bytes; (2) the reference: reads it with
// read(2) in 256 KiB chunks and counts the newlines (what `wc -l` does); (3) a fresh ring and a
// FileTailSource on the file with `start_at: beginning`, timed from start() until every line is
// appended and the ring's flush() returns, so every line and its offset are committed when the
// clock stops. Prints a line per run and, last, one JSON line with medians.
#include "tail_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cistern/buffer/ring.h"
#include "cistern/capture/file_tail_source.h"
#include "cistern/core/units.h"

namespace cistern::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A tail that appends nothing for this long has stalled: the run fails rather than hang.
constexpr auto kStallTimeout = 60s;

struct RunResult {
  double seconds = 0;
  double lines_per_s = 0;
  double mb_per_s = 0;
  double cpu_s = 0;
  double read_lines_per_s = 0;  // the reference
  double read_mb_per_s = 0;
  std::map<std::string, std::uint64_t> counters;
  std::uint64_t ring_records = 0;
  std::uint64_t commits = 0;
};

std::string errnoText() { return std::strerror(errno); }

Status writeLines(const fs::path& path, std::uint64_t lines, std::uint32_t line_size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(ErrorCode::kIo, "open " + path.string() + ": " + errnoText());
  std::string filler(line_size, 'x');
  for (std::size_t i = 0; i < filler.size(); ++i) {
    filler[i] = static_cast<char>('a' + static_cast<char>(i % 26));
  }
  std::string out;
  out.reserve((1U << 20U) + line_size);
  Status st = ok();
  for (std::uint64_t seq = 0; seq < lines && st; ++seq) {
    // "2024-01-01T00:00:00.000000Z seq=000000000042 abc...\n", line_size bytes in all.
    const std::size_t at = out.size();
    out += fmt::format("2024-01-01T00:00:00.000000Z seq={:012} ", seq);
    const std::size_t head = out.size() - at;
    if (head + 1 < line_size) {
      out.append(filler, 0, line_size - 1 - head);
    } else {
      out.resize(at + line_size - 1);
    }
    out += '\n';
    if (out.size() >= (1U << 20U) || seq + 1 == lines) {
      st = writeAll(fd, out, path);
      out.clear();
    }
  }
  if (::close(fd) != 0 && st) st = fail(ErrorCode::kIo, "close: " + errnoText());
  return st;
}

// The reference: newlines counted over plain reads of the file. Returns the count.
Result<std::uint64_t> countLines(const fs::path& path) {
  std::uint64_t lines = 0;
  auto read = readChunks(path, 256U << 10U, [&](std::span<const char> data) {
    const char* p = data.data();
    const char* end = p + data.size();
    while ((p = static_cast<const char*>(
                std::memchr(p, '\n', static_cast<std::size_t>(end - p)))) != nullptr) {
      ++lines;
      ++p;
    }
  });
  if (!read) return tl::unexpected(read.error());
  return lines;
}

Result<RunResult> runOnce(const TailBenchOptions& o, int run) {
  RunResult r;
  const fs::path dir = o.dir / fmt::format("tail-run-{}", run);
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir / "logs", ec);
  const fs::path file = dir / "logs" / "app.log";
  if (auto st = writeLines(file, o.lines, o.line_size); !st) return tl::unexpected(st.error());
  const std::uint64_t file_bytes = o.lines * o.line_size;

  const auto r0 = BenchClock::now();
  auto counted = countLines(file);
  if (!counted) return tl::unexpected(counted.error());
  const double read_s = secondsSince(r0);
  if (*counted != o.lines) {
    return fail(ErrorCode::kCorrupt, fmt::format("wrote {} lines, read {}", o.lines, *counted));
  }
  r.read_lines_per_s = static_cast<double>(o.lines) / read_s;
  r.read_mb_per_s = mbPerS(file_bytes, read_s);

  buffer::RingOptions ro;
  ro.dir = dir / "ring";
  ro.sync = o.sync;
  ro.max_size = 2 * file_bytes + (256ULL << 20U);  // room for everything: nothing is evicted
  auto opened = buffer::LmdbRing::open(ro);
  if (!opened) return tl::unexpected(opened.error());
  auto ring = std::move(*opened);

  capture::FileTailOptions to;
  to.name = "bench";
  to.paths = {file.string()};
  to.start_at = capture::StartAt::kBeginning;
  if (o.poll_interval.count() != 0) to.poll_interval = o.poll_interval;
  auto source = capture::makeFileTailSource(to, *ring);
  if (!source) return tl::unexpected(source.error());

  const double cpu0 = processCpuSeconds();
  const auto t0 = BenchClock::now();
  if (auto st = (*source)->start(); !st) return tl::unexpected(st.error());
  std::uint64_t stored = 0;
  auto progress = BenchClock::now();
  while (stored < o.lines) {
    std::this_thread::sleep_for(1ms);
    const auto now_stored = counterMap(**source)["lines_stored"];
    if (now_stored != stored) {
      stored = now_stored;
      progress = BenchClock::now();
    } else if (BenchClock::now() - progress > kStallTimeout) {
      return fail(ErrorCode::kTimeout,
                  fmt::format("the tail stalled at {} of {} lines", stored, o.lines));
    }
  }
  if (auto st = ring->flush(std::chrono::minutes(10)); !st) return tl::unexpected(st.error());
  r.seconds = secondsSince(t0);
  r.cpu_s = processCpuSeconds() - cpu0;
  (*source)->stop();
  r.counters = counterMap(**source);
  const auto stats = ring->stats();
  r.ring_records = stats.appended_records;
  r.commits = stats.commits;
  if (auto st = ring->close(); !st) return tl::unexpected(st.error());
  ring.reset();
  if (!o.keep) fs::remove_all(dir, ec);

  r.lines_per_s = static_cast<double>(o.lines) / r.seconds;
  r.mb_per_s = mbPerS(file_bytes, r.seconds);
  auto& c = r.counters;
  if (c["lines_read"] != o.lines || c["lines_stored"] != o.lines || r.ring_records != o.lines ||
      c["bytes_read"] != file_bytes || c["read_errors"] != 0) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("expected {} lines ({} bytes): read {}, stored {}, in the ring {}, "
                            "bytes read {}, read errors {}",
                            o.lines, file_bytes, c["lines_read"], c["lines_stored"], r.ring_records,
                            c["bytes_read"], c["read_errors"]));
  }
  return r;
}

}  // namespace

int runTailBench(const TailBenchOptions& o) {
  if (o.line_size < 2) {
    fmt::print(stderr, "tail bench: --line-size must be at least 2 (a byte and the newline)\n");
    return 2;
  }
  MemorySampler sampler;
  fmt::print("tail bench: lines={} line_size={} ({}) sync={} runs={} dir={}\n", o.lines,
             o.line_size, formatSize(o.lines * o.line_size), syncName(o.sync), o.repeat,
             o.dir.string());
  std::vector<RunResult> runs;
  for (int i = 0; i < o.repeat; ++i) {
    auto r = runOnce(o, i);
    if (!r) {
      fmt::print(stderr, "tail bench failed: {}\n", r.error().describe());
      return 1;
    }
    fmt::print(
        "run {}: tail {:.0f} lines/s {:.1f} MB/s in {:.2f} s (cpu {:.2f} s, {} commits) | plain "
        "read {:.0f} lines/s {:.0f} MB/s | ratio {:.3f}\n",
        i, r->lines_per_s, r->mb_per_s, r->seconds, r->cpu_s, r->commits, r->read_lines_per_s,
        r->read_mb_per_s, r->lines_per_s / r->read_lines_per_s);
    runs.push_back(std::move(*r));
  }
  const auto mem = platform::memoryUsage();
  nlohmann::json j;
  j["bench"] = "tail";
  j["lines"] = o.lines;
  j["line_size"] = o.line_size;
  j["sync"] = syncName(o.sync);
  j["runs"] = o.repeat;
  j["seconds"] = medianOf(runs, [](const RunResult& r) { return r.seconds; });
  j["lines_per_s"] = medianOf(runs, [](const RunResult& r) { return r.lines_per_s; });
  j["mb_per_s"] = medianOf(runs, [](const RunResult& r) { return r.mb_per_s; });
  j["cpu_s"] = medianOf(runs, [](const RunResult& r) { return r.cpu_s; });
  j["read_lines_per_s"] = medianOf(runs, [](const RunResult& r) { return r.read_lines_per_s; });
  j["read_mb_per_s"] = medianOf(runs, [](const RunResult& r) { return r.read_mb_per_s; });
  j["ratio"] =
      medianOf(runs, [](const RunResult& r) { return r.lines_per_s / r.read_lines_per_s; });
  j["commits"] = medianOf(runs, [](const RunResult& r) { return static_cast<double>(r.commits); });
  j["peak_rss_mb"] = static_cast<double>(mem.peak_rss_bytes) / 1e6;
  j["peak_rss_anon_mb"] = sampler.peakAnonMb();
  j["peak_rss_file_mb"] = sampler.peakFileMb();
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [name, value] : runs.back().counters) counters[name] = value;
  j["counters"] = counters;
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace cistern::bench
