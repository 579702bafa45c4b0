// cistern-bench deliver: how fast the otlp output drains a buffer to a receiver, against the raw
// HTTP limit of the same receiver measured in the same run.
//
// Each run: a fresh ring is filled with N log-line records of B bytes (not timed); nginx on
// loopback answers 200 to POST /v1/logs after reading the body; an otlp output (through the real
// Transport, event loop, encoder, libcurl) drains the ring, timed from start until the ring
// holds nothing unacknowledged for it. Then wrk posts bodies of the size the output sent, over as
// many connections as the output keeps requests in flight, for the same receiver. The ratio is
// the output's request-body bytes per second over wrk's. The backlog is mostly read from the
// disk (see the ring's page-cache recycling) unless --warm; a cold sequential read of the ring
// file, timed after the drain, shows how close the drain came to the disk's read rate.
#include "deliver_bench.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cistern/buffer/ring.h"
#include "cistern/core/record_meta.h"
#include "cistern/platform/clock.h"
#include "cistern/platform/event_loop.h"
#include "cistern/platform/process.h"
#include "cistern/transport/outputs.h"
#include "otlp_encode.h"

namespace cistern::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Runs a command, returning its standard output (and status through `status`).
std::string capture(const std::string& command, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = ::pclose(p);
  if (status != nullptr) *status = rc;
  return out;
}

int freePort() {
  // Let nginx fail loudly if a port is taken between this and its bind.
  for (int port = 20000 + static_cast<int>(::getpid() % 20000);; ++port) {
    const std::string probe = fmt::format("ss -Htln 'sport = :{}' 2>/dev/null", port);
    if (capture(probe).empty()) return port;
  }
}

// nginx answering 200 to POST /v1/logs once the body is read (proxy-free: the receiver is not
// the subject), one worker: the machine has two cores, the other is the sender's.
class Receiver {
 public:
  explicit Receiver(fs::path dir) : dir_(std::move(dir)) {
    port_ = freePort();
    std::ofstream(dir_ / "nginx.conf") << fmt::format(R"(
worker_processes 1;
daemon off;
master_process on;
pid {0}/nginx.pid;
error_log {0}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {0}/body;
  proxy_temp_path {0}/proxy;
  fastcgi_temp_path {0}/fastcgi;
  uwsgi_temp_path {0}/uwsgi;
  scgi_temp_path {0}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{1};
    location = /v1/logs {{
      client_max_body_size 0;
      client_body_buffer_size 16m;
      # Read the whole body, then answer 200 with an empty ExportLogsServiceResponse.
      error_page 405 =200 @ok;
      return 405;
    }}
    location @ok {{ return 200 ""; }}
  }}
}}
)",
                                                      dir_.string(), port_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::execl("/usr/sbin/nginx", "nginx", "-p", dir_.c_str(), "-c", (dir_ / "nginx.conf").c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !listening(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  ~Receiver() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGTERM);
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  [[nodiscard]] bool listening() const {
    return !capture(fmt::format("ss -Htln 'sport = :{}' 2>/dev/null", port_)).empty();
  }
  [[nodiscard]] std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }

 private:
  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Fills the ring with `records` log lines of `size` bytes, as a file tail would store them.
void fill(buffer::LmdbRing& ring, std::uint64_t records, std::size_t size) {
  std::vector<std::byte> meta;
  LogLineMeta lm;
  lm.path = "/var/log/bench/app.log";
  std::string line(size, 'x');
  std::vector<RecordInput> batch;
  std::vector<std::vector<std::byte>> metas;
  constexpr std::uint64_t kChunk = 1024;
  const std::uint64_t now = platform::SystemClock::instance().wallNanos();
  for (std::uint64_t done = 0; done < records; done += kChunk) {
    const std::uint64_t n = std::min(kChunk, records - done);
    batch.clear();
    metas.assign(n, {});
    for (std::uint64_t i = 0; i < n; ++i) {
      lm.offset = (done + i) * (size + 1);
      encodeLogLineMeta(lm, metas[i]);
      const auto* p = reinterpret_cast<const std::byte*>(line.data());
      batch.push_back({RecordKind::kLogLine, now + done + i, "bench", metas[i], {p, line.size()}});
    }
    (void)ring.append(batch, {}, Wait::kYes);
  }
  (void)ring.flush(std::chrono::minutes(5));
}

// The output's cursor as the bench hands it to the transport: every call goes to the ring's
// consumer, and the acknowledgement that completes the backlog wakes the bench's main thread and
// records when it happened. Polling the ring every 2 ms instead kept the main thread at 5 % of a
// core on a 2-core VM (each sleep and wakeup costs about 100 us there), CPU taken from the drain
// under test.
class WatchedCursor final : public FrameCursor {
 public:
  WatchedCursor(FrameCursor& inner, FrameId last) : inner_(inner), last_(last) {}

  [[nodiscard]] const std::string& name() const override { return inner_.name(); }
  Result<std::size_t> readNext(ReadBatch& out, const ReadLimits& limits) override {
    return inner_.readNext(out, limits);
  }
  Result<std::size_t> readAt(FrameId from, Direction direction, ReadBatch& out,
                             const ReadLimits& limits) override {
    return inner_.readAt(from, direction, out, limits);
  }
  void ack(std::span<const FrameId> ids) override {
    inner_.ack(ids);
    if (inner_.oldestUnacked() > last_) {
      std::lock_guard lk(mu_);
      if (!done_) done_at_ = Clock::now();
      done_ = true;
      cv_.notify_all();
    }
  }
  void rewind() override { inner_.rewind(); }
  [[nodiscard]] FrameId oldestUnacked() const override { return inner_.oldestUnacked(); }
  [[nodiscard]] FrameId newestFrame() const override { return inner_.newestFrame(); }

  // Waits until every frame up to `last` is done, at most until `deadline`; returns when that
  // happened (the time of the acknowledgement, or of the check that found it: a frame skipped
  // as corrupt is done without one), or nullopt at the deadline.
  std::optional<Clock::time_point> waitDone(Clock::time_point deadline) {
    std::unique_lock lk(mu_);
    while (!done_) {
      if (inner_.oldestUnacked() > last_) return Clock::now();
      if (Clock::now() >= deadline) return std::nullopt;
      cv_.wait_for(lk, std::chrono::milliseconds(200));
    }
    return done_at_;
  }

 private:
  FrameCursor& inner_;
  const FrameId last_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Clock::time_point done_at_;
};

struct RunFigures {
  double records_per_s = 0;
  double mb_per_s = 0;       // record payload
  double wire_mb_per_s = 0;  // request bodies
  double avg_body_bytes = 0;
  double wrk_mb_per_s = 0;
  double wrk_requests_per_s = 0;
  double ratio = 0;
  // CPU seconds of this process (every thread: loop, encoders, buffer) per GB of request bodies
  // while it delivers, and its mean number of busy cores: what the output costs, which the
  // machine's other load does not change as much as it changes the rates.
  double cpu_s_per_gb = 0;
  double cpu_cores = 0;
  // The disk beneath the ring: a backlog the page cache no longer holds is read from it, which
  // no HTTP reference pays. ring_mb_per_s is the ring file's size over the drain's time, and
  // disk_read_mb_per_s a cold sequential read of that file in the same run.
  double ring_mb_per_s = 0;
  double disk_read_mb_per_s = 0;
  double disk_ratio = 0;
};

// A sequential read of `file` from the disk (evicted from the page cache first), in MB/s.
double coldReadMbPerS(const fs::path& file) {
  if (!dropPageCache(file)) return 0;
  const auto t0 = Clock::now();
  auto bytes = readChunks(file, 1U << 20U, [](std::span<const char>) {});
  if (!bytes) return 0;
  return mbPerS(*bytes, secondsSince(t0));
}

double wrkMbPerS(const Receiver& receiver, const fs::path& dir, const std::string& body,
                 std::size_t connections, int seconds, double* requests_per_s) {
  std::ofstream(dir / "body.bin", std::ios::binary) << body;
  std::ofstream(dir / "post.lua") << fmt::format(
      "wrk.method = \"POST\"\n"
      "wrk.headers[\"Content-Type\"] = \"application/x-protobuf\"\n"
      "local f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n",
      (dir / "body.bin").string());
  const std::string out =
      capture(fmt::format("wrk -t1 -c{} -d{}s -s {} {}/v1/logs 2>&1", connections, seconds,
                          (dir / "post.lua").string(), receiver.url()));
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) {
    std::fprintf(stderr, "wrk: %s\n", out.c_str());
    return 0;
  }
  *requests_per_s = std::stod(m[1]);
  return *requests_per_s * static_cast<double>(body.size()) / 1e6;
}

RunFigures runOnce(const DeliverBenchOptions& o, const fs::path& dir) {
  RunFigures f;
  fs::remove_all(dir);
  fs::create_directories(dir / "nginx");
  Receiver receiver(dir / "nginx");
  if (!receiver.listening()) {
    std::fprintf(stderr, "nginx did not start; see %s\n", (dir / "nginx/error.log").c_str());
    return f;
  }
  buffer::RingOptions ro;
  ro.dir = dir / "ring";
  ro.max_size = std::max<std::uint64_t>(1ULL << 30U, o.records * (o.record_size + 64) * 2);
  auto ring = buffer::LmdbRing::open(ro);
  if (!ring) {
    std::fprintf(stderr, "ring: %s\n", ring.error().message.c_str());
    return f;
  }
  fill(**ring, o.records, o.record_size);
  const fs::path data_file = ro.dir / "data.mdb";
  // The drain starts on the backlog as the ring leaves it (it drops the pages of older frames
  // from the page cache once they are synced: all but the newest 32 MiB are on disk only), or
  // with --warm on one the page cache holds.
  if (o.warm) (void)readChunks(data_file, 1U << 20U, [](std::span<const char>) {});

  auto loop = platform::EventLoop::start("bench-loop");
  if (!loop) return f;
  transport::OtlpOutputOptions out;
  out.name = "bench";
  out.endpoints = {receiver.url()};
  out.compression = o.gzip ? transport::Compression::kGzip : transport::Compression::kNone;
  out.batch.max_in_flight = o.in_flight;
  out.batch.max_bytes = o.batch_bytes;
  out.batch.max_frames = 4096;
  auto* consumer = *(*ring)->consumer("bench");
  WatchedCursor watched(*consumer, consumer->newestFrame());
  auto made = transport::Transport::create(
      **loop, {transport::OutputOptions(out)},
      [&watched](const std::string&) -> Result<FrameCursor*> { return &watched; },
      {"bench-agent", platform::hostName(), "bench"});
  if (!made) {
    std::fprintf(stderr, "transport: %s\n", made.error().message.c_str());
    return f;
  }
  auto& transport = **made;
  // A request like the ones the output sends, for wrk: the first batch, encoded the same way.
  std::string body;
  {
    ReadBatch sample;
    (void)consumer->readAt(1, Direction::kForward, sample, {4096, o.batch_bytes});
    transport::OtlpLogsEncoder encoder({"bench-agent", platform::hostName(), "bench"});
    body = encoder.encode(sample).body;
  }
  // The drain is done when the output's cursor has every frame acknowledged: the cursor says so
  // (see WatchedCursor). Not asked of the transport: its status runs on the loop thread, the
  // thread under test. The counters are read once, at the end.
  const double cpu_start = processCpuSeconds();
  const auto start = Clock::now();
  transport.start();
  const auto done_at = watched.waitDone(start + std::chrono::minutes(10));
  const double seconds =
      std::chrono::duration<double>(done_at.value_or(Clock::now()) - start).count();
  const double cpu_seconds = processCpuSeconds() - cpu_start;
  const auto status = transport.status();
  const auto counter = [&status](const char* name) {
    for (const auto& c : status.at(0).counters) {
      if (c.name == name) return c.value;
    }
    return std::uint64_t{0};
  };
  if (counter("records_acked") + counter("records_rejected") < o.records) {
    std::fprintf(stderr, "deliver bench: not every record was acknowledged or rejected\n");
  }
  const std::uint64_t requests = std::max<std::uint64_t>(1, counter("requests_ok"));
  const std::uint64_t wire = counter("bytes_sent");
  transport.stop(std::chrono::seconds(5));
  (*loop)->stop();

  f.records_per_s = static_cast<double>(o.records) / seconds;
  f.mb_per_s = static_cast<double>(o.records * o.record_size) / seconds / 1e6;
  f.wire_mb_per_s = static_cast<double>(wire) / seconds / 1e6;
  f.avg_body_bytes = static_cast<double>(wire) / static_cast<double>(requests);
  f.cpu_s_per_gb = wire > 0 ? cpu_seconds / (static_cast<double>(wire) / 1e9) : 0;
  f.cpu_cores = cpu_seconds / seconds;

  // The same receiver's raw limit: wrk posting a request like the output's (taken above).
  if (body.size() < 64) body.assign(static_cast<std::size_t>(f.avg_body_bytes), 'x');
  (void)(*ring)->close();
  std::error_code size_error;
  const auto ring_bytes = fs::file_size(data_file, size_error);
  if (!size_error) {
    f.ring_mb_per_s = mbPerS(ring_bytes, seconds);
    f.disk_read_mb_per_s = coldReadMbPerS(data_file);
    f.disk_ratio = f.disk_read_mb_per_s > 0 ? f.ring_mb_per_s / f.disk_read_mb_per_s : 0;
  }
  f.wrk_mb_per_s =
      wrkMbPerS(receiver, dir, body, o.in_flight, o.wrk_seconds, &f.wrk_requests_per_s);
  f.ratio = f.wrk_mb_per_s > 0 ? f.wire_mb_per_s / f.wrk_mb_per_s : 0;
  fs::remove_all(dir / "ring");
  return f;
}

}  // namespace

int runDeliverBench(const DeliverBenchOptions& o) {
  // Without the reference there is no ratio: refuse rather than print one of 0.
  if (std::system("command -v wrk >/dev/null 2>&1") != 0) {
    std::fprintf(stderr,
                 "deliver bench: wrk not found (Debian package wrk; scripts/bootstrap.sh installs "
                 "it)\n");
    return 2;
  }
  std::printf(
      "deliver bench: records=%llu record_size=%zu gzip=%s in_flight=%zu batch=%zu backlog=%s "
      "runs=%d\n",
      static_cast<unsigned long long>(o.records), o.record_size, o.gzip ? "on" : "off", o.in_flight,
      o.batch_bytes, o.warm ? "in the page cache" : "as the ring left it", o.repeat);
  std::vector<RunFigures> runs;
  MemorySampler memory;
  for (int r = 0; r < o.repeat; ++r) {
    const RunFigures f = runOnce(o, o.dir / fmt::format("deliver-run{}", r));
    std::printf(
        "run %d: %.0f records/s, %.1f MB/s of records, %.1f MB/s on the wire (requests of %.0f "
        "bytes; %.2f CPU s per GB, %.2f cores) | wrk %.1f MB/s (%.0f req/s) | ratio %.2f | "
        "ring file %.1f MB/s, cold read %.1f MB/s, disk_ratio %.2f\n",
        r, f.records_per_s, f.mb_per_s, f.wire_mb_per_s, f.avg_body_bytes, f.cpu_s_per_gb,
        f.cpu_cores, f.wrk_mb_per_s, f.wrk_requests_per_s, f.ratio, f.ring_mb_per_s,
        f.disk_read_mb_per_s, f.disk_ratio);
    std::fflush(stdout);
    runs.push_back(f);
  }
  const auto med = [&runs](double RunFigures::*field) {
    return medianOf(runs, [field](const RunFigures& r) { return r.*field; });
  };
  nlohmann::json j;
  j["bench"] = "deliver";
  j["records"] = o.records;
  j["record_size"] = o.record_size;
  j["gzip"] = o.gzip;
  j["runs"] = o.repeat;
  j["records_per_s"] = med(&RunFigures::records_per_s);
  j["mb_per_s"] = med(&RunFigures::mb_per_s);
  j["wire_mb_per_s"] = med(&RunFigures::wire_mb_per_s);
  j["avg_request_bytes"] = med(&RunFigures::avg_body_bytes);
  j["wrk_mb_per_s"] = med(&RunFigures::wrk_mb_per_s);
  j["ratio"] = med(&RunFigures::ratio);
  j["cpu_s_per_gb"] = med(&RunFigures::cpu_s_per_gb);
  j["cpu_cores"] = med(&RunFigures::cpu_cores);
  j["warm"] = o.warm;
  j["ring_mb_per_s"] = med(&RunFigures::ring_mb_per_s);
  j["disk_read_mb_per_s"] = med(&RunFigures::disk_read_mb_per_s);
  j["disk_ratio"] = med(&RunFigures::disk_ratio);
  j["peak_rss_mb"] = memory.peakAnonMb() + memory.peakFileMb();
  j["peak_rss_anon_mb"] = memory.peakAnonMb();
  std::printf("%s\n", j.dump().c_str());
  // Only what this bench made: --dir may be shared (/tmp, /var/tmp).
  for (int r = 0; r < o.repeat; ++r) fs::remove_all(o.dir / fmt::format("deliver-run{}", r));
  return 0;
}

}  // namespace cistern::bench
