// cistern-bench drain: how closely the otlp output holds `drain.rate` while it sends a backlog to
// a receiver that came back, and how soon live data reaches that receiver.
//
// Each run: a fresh ring gets M MiB of log-line records in 64 KiB frames (not timed). An otlp
// output (the real Transport, event loop, encoder and libcurl; gzip off) starts while nobody
// listens, so it goes DOWN. Then nginx starts on loopback, answering 200 to POST /v1/logs once it
// has read the body and logging, per request, when it ended ($msec) and its Content-Length; from
// then on the bench appends a small live record every 100 ms, as a source would. Everything is
// measured from nginx's log once the backlog is acknowledged:
//  - first_live_ms: from the receiver accepting connections to the end of the first request that
//    carries a live record. Requests are told apart by size: a probe (an empty export) is under
//    1 KiB, a live record alone about 2 KiB, a backlog request holds whole 64 KiB frames.
//  - the backlog's record bytes per 1-second and per 5-second window after the ramp, against the
//    rate; the achieved rate is their mean, the ratio achieved / target.
//
// drain.rate counts record bytes as stored in the buffer, while nginx sees request bodies. With
// gzip off, a request of k equal records is H + k x e bytes (H: the resource and scope around
// them, e: one LogRecord), so k = (Content-Length - H) / e. H and e come from encoding the ring's
// first frame, and its first two, with the output's own encoder; every backlog record has the
// same size and the same encoded size (the file offsets are kept in one varint width), so the
// conversion is exact to the record.
//
// Robustness: a missing nginx is reported before anything runs; every wait is bounded (the
// drain by 60 s + 3 x its expected time); the work goes in a directory of its own under --dir,
// removed at the end, also after SIGINT/SIGTERM (the run in progress is abandoned cleanly); nginx
// runs in its own process group, is stopped (SIGKILL after 5 s) with the run, and dies with the
// bench if the bench is killed (PR_SET_PDEATHSIG).
#include "drain_bench.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
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

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr std::uint32_t kFrameBytes = 64U << 10U;
constexpr std::size_t kLiveRecordBytes = 2000;
constexpr std::uint64_t kProbeMaxBody = 1024;     // below: a probe
constexpr std::uint64_t kLiveMaxBody = 16 << 10;  // below (and above a probe): live records
// Offsets of the backlog's lines start here, so every one is a 6-byte varint in the request.
constexpr std::uint64_t kOffsetBase = 1ULL << 40U;

// Set by SIGINT, SIGTERM or SIGHUP: every wait gives up and the run cleans up after itself.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void onSignal(int /*signal*/) { g_interrupted = true; }

// Installs onSignal for the benchmark's duration; the previous handlers come back after it.
class SignalGuard {
 public:
  SignalGuard() {
    struct sigaction sa {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~SignalGuard() {
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> old_{};
};

double wallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Polls `done` every 5 ms until it holds (true), `timeout` passes or a signal came (false).
bool waitFor(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto deadline = BenchClock::now() + timeout;
  while (!done()) {
    if (g_interrupted || BenchClock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A port below the ephemeral range that is free now: while the receiver is down, the output
// keeps connecting to it, and a port from the ephemeral range could become one of those
// connections' own local port (TCP self-connect on loopback), which the start could not bind.
int freeListenPort() {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(20000, 32767);
  for (int attempt = 0; attempt < 500; ++attempt) {
    const int port = pick(rng);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return port;
  }
  return 0;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// One request in nginx's log.
struct Arrival {
  double end_s = 0;  // wall clock
  std::uint64_t body = 0;
  int status = 0;
};

// nginx on a fixed loopback port, started after the output: 200 for POST /v1/logs once the body
// is read (it proxies to itself without the body, and a proxied request is read whole first),
// one worker (the other core is the sender's).
class Receiver {
 public:
  explicit Receiver(fs::path dir) : dir_(std::move(dir)), port_(freeListenPort()) {}
  ~Receiver() { stop(); }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // Writes the config, starts nginx and waits (at most 10 s) until it accepts connections.
  // Returns "" on success, else what failed with nginx's own error output.
  std::string start() {
    if (port_ == 0) return "no free port on 127.0.0.1 in [20000, 32767]";
    std::error_code ec;
    fs::create_directories(dir_ / "tmp", ec);
    if (ec) return fmt::format("creating {}: {}", (dir_ / "tmp").string(), ec.message());
    const std::string dir = dir_.string();
    std::ofstream conf(dir_ / "nginx.conf");
    // As root, workers would run as "nobody", who cannot enter the bench's private directory.
    if (::geteuid() == 0) conf << "user root;\n";
    conf << fmt::format(R"(worker_processes 1;
pid {0}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  log_format drain '$msec $content_length $status';
  access_log {0}/access.log drain;
  client_body_temp_path {0}/tmp/body;
  proxy_temp_path {0}/tmp/proxy;
  fastcgi_temp_path {0}/tmp/fastcgi;
  uwsgi_temp_path {0}/tmp/uwsgi;
  scgi_temp_path {0}/tmp/scgi;
  client_max_body_size 0;
  client_body_buffer_size 16m;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{1};
    location = /v1/logs {{
      proxy_pass http://127.0.0.1:{1}/__ok;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location = /__ok {{ access_log off; return 200 ""; }}
  }}
}}
)",
                        dir, port_);
    conf.close();
    if (!conf) return "writing " + (dir_ / "nginx.conf").string();

    // Only async-signal-safe calls after fork (the bench has threads): everything is built here.
    const std::vector<std::string> argv = {
        kNginx, "-p",         dir + "/", "-c", dir + "/nginx.conf", "-e", dir + "/error.log",
        "-g",   "daemon off;"};
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string stderr_path = dir + "/stderr.log";
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    if (pid == 0) {
      ::setpgid(0, 0);
      // A bench that is killed takes nginx with it (the master stops its workers on SIGTERM).
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(125);
      const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      const int in = ::open("/dev/null", O_RDONLY);
      if (err < 0 || in < 0) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(err, 1);
      ::dup2(err, 2);
      // The output's sockets and the loop's descriptors stay out of nginx.
      ::syscall(SYS_close_range, 3U, ~0U, 0U);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before killpg
    pid_ = pid;
    const auto deadline = BenchClock::now() + std::chrono::seconds(10);
    while (BenchClock::now() < deadline && !g_interrupted) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ::killpg(pid_, SIGKILL);
        pid_ = -1;
        return fmt::format("nginx exited at start ({} {}): {}",
                           WIFEXITED(status) ? "status" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), errors());
      }
      if (accepts(port_)) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop();
    return g_interrupted ? "interrupted"
                         : "nginx did not accept connections within 10 s: " + errors();
  }

  // SIGTERM (fast shutdown), SIGKILL to the whole group after 5 s; reaps the master.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = BenchClock::now() + std::chrono::seconds(5);
    int status = 0;
    pid_t r = 0;
    while ((r = ::waitpid(pid_, &status, WNOHANG)) == 0 && BenchClock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::killpg(pid_, SIGKILL);  // workers left behind, or a master that did not stop
    if (r == 0) ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  [[nodiscard]] std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  [[nodiscard]] std::string errors() const {
    return slurp(dir_ / "error.log") + slurp(dir_ / "stderr.log");
  }

  [[nodiscard]] std::vector<Arrival> arrivals() const {
    std::vector<Arrival> out;
    std::ifstream in(dir_ / "access.log");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      Arrival a;
      std::string body;
      fields >> a.end_s >> body >> a.status;
      if (fields.fail()) continue;
      a.body = body == "-" ? 0 : std::strtoull(body.c_str(), nullptr, 10);
      out.push_back(a);
    }
    return out;
  }

 private:
  fs::path dir_;
  int port_;
  pid_t pid_ = -1;
};

// Fills the ring with log lines of `size` bytes until `bytes` of records are stored; returns the
// number of records, or 0 after saying why it failed (or when interrupted).
std::uint64_t fill(buffer::LmdbRing& ring, std::uint64_t bytes, std::size_t size) {
  LogLineMeta lm;
  lm.path = "/var/log/bench/app.log";
  const std::string line(size, 'x');
  std::vector<std::byte> meta;
  encodeLogLineMeta(lm, meta);
  const std::uint64_t record_bytes =
      encodedRecordSize({RecordKind::kLogLine,
                         0,
                         "bench",
                         meta,
                         {reinterpret_cast<const std::byte*>(line.data()), line.size()}});
  const std::uint64_t records = std::max<std::uint64_t>(1, bytes / record_bytes);
  constexpr std::uint64_t kChunk = 1024;
  std::vector<RecordInput> batch;
  std::vector<std::vector<std::byte>> metas;
  const std::uint64_t now = platform::SystemClock::instance().wallNanos();
  for (std::uint64_t done = 0; done < records; done += kChunk) {
    if (g_interrupted) return 0;
    const std::uint64_t n = std::min(kChunk, records - done);
    batch.clear();
    metas.assign(n, {});
    for (std::uint64_t i = 0; i < n; ++i) {
      lm.offset = kOffsetBase + (done + i) * (size + 1);
      encodeLogLineMeta(lm, metas[i]);
      const auto* p = reinterpret_cast<const std::byte*>(line.data());
      batch.push_back({RecordKind::kLogLine, now + done + i, "bench", metas[i], {p, line.size()}});
    }
    if (auto appended = ring.append(batch, {}, Wait::kYes); !appended) {
      std::fprintf(stderr, "filling the ring: %s\n", appended.error().message.c_str());
      return 0;
    }
  }
  if (auto flushed = ring.flush(std::chrono::minutes(5)); !flushed) {
    std::fprintf(stderr, "filling the ring: %s\n", flushed.error().message.c_str());
    return 0;
  }
  if (const auto stats = ring.stats(); stats.evicted_records > 0) {
    std::fprintf(stderr, "filling the ring: %llu records evicted (the ring is too small)\n",
                 static_cast<unsigned long long>(stats.evicted_records));
    return 0;
  }
  return records;
}

// The request size model above: body = overhead + records x per_record.
struct RequestModel {
  double overhead = 0;
  double per_record = 1;
  double record_bytes = 0;  // one backlog record in the buffer (frame body bytes per record)

  [[nodiscard]] double recordBytesOf(std::uint64_t body) const {
    const double k = std::round((static_cast<double>(body) - overhead) / per_record);
    return k > 0 ? k * record_bytes : 0;
  }
};

RequestModel modelRequests(FrameCursor& cursor, const transport::Identity& identity) {
  RequestModel m;
  const transport::OtlpLogsEncoder encoder(identity);
  std::array<double, 2> body{0, 0};
  std::array<double, 2> records{0, 0};
  for (std::size_t frames = 1; frames <= 2; ++frames) {
    ReadBatch batch;
    (void)cursor.readAt(1, Direction::kForward, batch, {frames, 64U << 20U});
    body.at(frames - 1) = static_cast<double>(encoder.encode(batch).body.size());
    records.at(frames - 1) = static_cast<double>(batch.records());
    if (frames == 1 && batch.records() > 0) {
      m.record_bytes =
          static_cast<double>(batch.bodyBytes()) / static_cast<double>(batch.records());
    }
  }
  if (records[1] > records[0]) {
    m.per_record = (body[1] - body[0]) / (records[1] - records[0]);
    m.overhead = body[0] - records[0] * m.per_record;
  }
  return m;
}

struct RunFigures {
  bool ok = false;
  double achieved_mb_per_s = 0;
  double ratio = 0;                   // achieved / target
  double max_window_error_pct = 0;    // signed: the 1-second window farthest from the target
  double max_window5_error_pct = 0;   // the same over 5-second windows
  std::size_t windows = 0;            // whole 1-second windows after the ramp
  std::size_t windows5 = 0;           // whole 5-second windows after the ramp
  double first_live_ms = 0;           // receiver up -> first live record received
  double recovered_ms = 0;            // receiver up -> its first request (the probe that succeeded)
  double live_after_recovery_ms = 0;  // that probe -> first live record received
  double backlog_s = 0;               // first request -> last backlog request
  double expected_backlog_s = 0;
  double backlog_mb = 0;  // record bytes stored as the backlog
  std::uint64_t backlog_requests = 0;
  double received_backlog_mb = 0;  // record bytes in every backlog request, by the model
  std::uint64_t pushbacks = 0;
  double peak_rss_mb = 0;  // this process while the backlog drained
  double peak_rss_anon_mb = 0;
};

// Backlog record bytes per whole window of `width` seconds in [from, to), from the requests.
std::vector<double> windowBytes(const std::vector<Arrival>& arrivals, const RequestModel& model,
                                double from, double to, double width) {
  std::vector<double> out;
  for (double w = from; w + width <= to; w += width) {
    double bytes = 0;
    for (const auto& a : arrivals) {
      if (a.body >= kLiveMaxBody && a.end_s >= w && a.end_s < w + width) {
        bytes += model.recordBytesOf(a.body);
      }
    }
    out.push_back(bytes);
  }
  return out;
}

// The signed error (%) of the window farthest from `rate` bytes/s.
double worstError(const std::vector<double>& windows, double rate, double width) {
  double worst = 0;
  for (const double b : windows) {
    const double error = (b / width / rate - 1) * 100;
    if (std::abs(error) > std::abs(worst)) worst = error;
  }
  return worst;
}

RunFigures analyse(const DrainBenchOptions& o, const std::vector<Arrival>& arrivals,
                   const RequestModel& model, double backlog_bytes, double up) {
  RunFigures f;
  if (arrivals.empty()) return f;
  double first = arrivals.front().end_s;
  double first_live = 0;
  double last_backlog = 0;
  for (const auto& a : arrivals) {
    first = std::min(first, a.end_s);
    if (a.body >= kLiveMaxBody) {
      last_backlog = std::max(last_backlog, a.end_s);
      ++f.backlog_requests;
      f.received_backlog_mb += model.recordBytesOf(a.body) / 1e6;
    }
    if (a.body >= kProbeMaxBody && a.body < kLiveMaxBody && a.status == 200 &&
        (first_live == 0 || a.end_s < first_live)) {
      first_live = a.end_s;
    }
  }
  const auto rate = static_cast<double>(o.rate);
  const double ramp_s = std::chrono::duration<double>(o.ramp).count();
  f.recovered_ms = (first - up) * 1000;
  f.first_live_ms = first_live > 0 ? (first_live - up) * 1000 : 0;
  f.live_after_recovery_ms = first_live > 0 ? (first_live - first) * 1000 : 0;
  f.backlog_s = last_backlog - first;
  f.backlog_mb = backlog_bytes / 1e6;
  // The ramp from 10 % carries rate x ramp x 0.55; the rest goes at the full rate.
  f.expected_backlog_s = backlog_bytes >= rate * ramp_s * 0.55
                             ? ramp_s + (backlog_bytes - rate * ramp_s * 0.55) / rate
                             : 0;
  // Whole windows from the end of the ramp (it starts with the probe that succeeded) to the
  // last backlog request.
  const auto one = windowBytes(arrivals, model, first + ramp_s, last_backlog, 1);
  const auto five = windowBytes(arrivals, model, first + ramp_s, last_backlog, 5);
  f.windows = one.size();
  f.windows5 = five.size();
  f.max_window_error_pct = worstError(one, rate, 1);
  f.max_window5_error_pct = worstError(five, rate, 5);
  double sum = 0;
  for (const double b : one) sum += b;
  f.achieved_mb_per_s = f.windows > 0 ? sum / static_cast<double>(f.windows) / 1e6 : 0;
  f.ratio = f.achieved_mb_per_s * 1e6 / rate;
  f.ok = f.windows > 0 && first_live > 0;
  if (f.windows == 0) {
    std::fprintf(stderr,
                 "no whole 1-second window after the ramp: the backlog is too small for this "
                 "rate (give more --backlog-mb)\n");
  }
  if (first_live == 0) std::fprintf(stderr, "no live record reached the receiver\n");
  return f;
}

RunFigures runOnce(const DrainBenchOptions& o, const fs::path& dir) {
  RunFigures f;
  fs::create_directories(dir);
  buffer::RingOptions ro;
  ro.dir = dir / "ring";
  ro.frame_max_bytes = kFrameBytes;
  ro.max_size = std::max<std::uint64_t>(256ULL << 20U, o.backlog_mib * (3ULL << 20U) / 2);
  auto ring = buffer::LmdbRing::open(ro);
  if (!ring) {
    std::fprintf(stderr, "ring: %s\n", ring.error().message.c_str());
    return f;
  }
  const std::uint64_t backlog_records = fill(**ring, o.backlog_mib << 20U, o.record_size);
  if (backlog_records == 0) return f;
  auto consumer = (*ring)->consumer("bench");
  if (!consumer) {
    std::fprintf(stderr, "ring consumer: %s\n", consumer.error().message.c_str());
    return f;
  }
  const transport::Identity identity{"bench-agent", platform::hostName(), "bench"};
  const RequestModel model = modelRequests(**consumer, identity);
  const double backlog_bytes = static_cast<double>(backlog_records) * model.record_bytes;

  Receiver receiver(dir / "nginx");
  auto loop = platform::EventLoop::start("bench-loop");
  if (!loop) {
    std::fprintf(stderr, "event loop: %s\n", loop.error().message.c_str());
    return f;
  }
  transport::OtlpOutputOptions out;
  out.name = "bench";
  out.endpoints = {receiver.url()};
  out.compression = transport::Compression::kNone;
  out.batch.max_in_flight = 4;
  out.batch.max_bytes = 512U << 10U;
  out.batch.max_frames = 4096;
  out.retry.initial_backoff = std::chrono::milliseconds(50);
  out.retry.max_backoff = std::chrono::milliseconds(500);
  out.heartbeat.interval = o.heartbeat;
  out.heartbeat.max_interval = o.heartbeat;
  out.drain.rate = o.rate;
  out.drain.ramp = o.ramp;
  auto made = transport::Transport::create(
      **loop, {transport::OutputOptions(out)},
      [c = *consumer](const std::string&) -> Result<FrameCursor*> { return c; }, identity);
  if (!made) {
    std::fprintf(stderr, "transport: %s\n", made.error().message.c_str());
    return f;
  }
  auto& transport = **made;
  (*ring)->setCommitListener([&transport](const buffer::CommitInfo& info) {
    if (info.first_frame != 0) transport.notifyCommitted();
  });
  const auto status = [&transport] { return transport.status().at(0); };
  const auto counter = [&status](const char* name) {
    for (const auto& c : status().counters) {
      if (c.name == name) return c.value;
    }
    return std::uint64_t{0};
  };

  // Nobody listens yet: the output fails its first requests and goes DOWN.
  transport.start();
  if (!waitFor([&] { return status().state == "down"; }, std::chrono::seconds(30))) {
    if (!g_interrupted) {
      std::fprintf(stderr, "the output did not go DOWN without a receiver within 30 s (state %s)\n",
                   status().state.c_str());
    }
    transport.stop(std::chrono::seconds(1));
    return f;
  }
  MemorySampler memory;
  if (const std::string error = receiver.start(); !error.empty()) {
    std::fprintf(stderr, "nginx: %s\n", error.c_str());
    transport.stop(std::chrono::seconds(1));
    return f;
  }
  const double up = wallSeconds();

  // Live data, as a source would write it while the backlog drains.
  std::atomic<bool> stop_live{false};
  std::atomic<std::uint64_t> live_records{0};
  std::thread live([&] {
    const std::string payload(kLiveRecordBytes, 'L');
    std::vector<std::byte> meta;
    encodeLogLineMeta(LogLineMeta{0, 0, "/var/log/bench/live.log"}, meta);
    while (!stop_live) {
      const RecordInput r{RecordKind::kLogLine,
                          platform::SystemClock::instance().wallNanos(),
                          "live",
                          meta,
                          {reinterpret_cast<const std::byte*>(payload.data()), payload.size()}};
      if ((*ring)->append({&r, 1}, {}, Wait::kYes)) ++live_records;
      (void)(*ring)->flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const auto timeout = std::chrono::seconds(
      60 + static_cast<std::int64_t>(3 * backlog_bytes / static_cast<double>(o.rate)));
  const bool done = waitFor(
      [&] { return counter("records_acked") >= backlog_records + live_records.load(); }, timeout);
  stop_live = true;
  live.join();
  f.pushbacks = counter("pushbacks");
  const std::uint64_t acked = counter("records_acked");
  transport.stop(std::chrono::seconds(5));
  (*loop)->stop();
  (void)(*ring)->close();
  receiver.stop();
  if (!done) {
    if (!g_interrupted) {
      fmt::print(stderr, "the backlog was not acknowledged within {} s ({} of {} records acked)\n",
                 timeout.count(), acked, backlog_records + live_records.load());
    }
    return f;
  }
  const std::uint64_t pushbacks = f.pushbacks;
  f = analyse(o, receiver.arrivals(), model, backlog_bytes, up);
  f.pushbacks = pushbacks;
  f.peak_rss_mb = memory.peakAnonMb() + memory.peakFileMb();
  f.peak_rss_anon_mb = memory.peakAnonMb();
  return f;
}

}  // namespace

int runDrainBench(const DrainBenchOptions& o) {
  if (::access(kNginx, X_OK) != 0) {
    std::fprintf(stderr,
                 "drain bench: nginx is the receiver and %s is missing (%s); install it with "
                 "scripts/bootstrap.sh or `apt-get install nginx`\n",
                 kNginx, std::strerror(errno));
    return 2;
  }
  // A directory of our own under --dir, so that removing it never touches anything else there.
  std::error_code ec;
  const bool created_parent = fs::create_directories(o.dir, ec);
  std::string pattern = (o.dir / "drain.XXXXXX").string();
  if (ec || ::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "drain bench: cannot create a directory in %s: %s\n", o.dir.c_str(),
                 ec ? ec.message().c_str() : std::strerror(errno));
    return 2;
  }
  const fs::path work = pattern;
  const SignalGuard signals;
  std::printf(
      "drain bench: backlog=%llu MiB rate=%.2f MB/s record_size=%zu ramp=%lld ms "
      "heartbeat=%lld ms runs=%d dir=%s\n",
      static_cast<unsigned long long>(o.backlog_mib), static_cast<double>(o.rate) / 1e6,
      o.record_size, static_cast<long long>(o.ramp.count()),
      static_cast<long long>(o.heartbeat.count()), o.repeat, work.c_str());
  std::fflush(stdout);
  std::vector<RunFigures> runs;
  std::vector<RunFigures> good;
  for (int r = 0; r < o.repeat && !g_interrupted; ++r) {
    const fs::path dir = work / fmt::format("run{}", r);
    const RunFigures f = runOnce(o, dir);
    fs::remove_all(dir, ec);
    if (g_interrupted) break;
    std::printf(
        "run %d: %s achieved %.2f MB/s = %.3f of the target after the ramp (%zu windows of 1 s, "
        "worst %+.2f %%; %zu of 5 s, worst %+.2f %%), backlog in %.2f s (expected %.2f s, %llu "
        "requests, %.1f of %.1f MB of records), recovered %.0f ms and first live record %.0f ms "
        "after the receiver was up, pushbacks %llu, peak RSS %.1f MB (anonymous %.1f MB)\n",
        r, f.ok ? "ok" : "FAILED", f.achieved_mb_per_s, f.ratio, f.windows, f.max_window_error_pct,
        f.windows5, f.max_window5_error_pct, f.backlog_s, f.expected_backlog_s,
        static_cast<unsigned long long>(f.backlog_requests), f.received_backlog_mb, f.backlog_mb,
        f.recovered_ms, f.first_live_ms, static_cast<unsigned long long>(f.pushbacks),
        f.peak_rss_mb, f.peak_rss_anon_mb);
    std::fflush(stdout);
    runs.push_back(f);
    if (f.ok) good.push_back(f);
  }
  fs::remove_all(work, ec);
  if (created_parent) fs::remove(o.dir, ec);  // only when empty: others may use it too
  if (g_interrupted) {
    std::fprintf(stderr, "drain bench: interrupted; nginx stopped and %s removed\n", work.c_str());
    return 130;
  }

  // Medians over the runs that succeeded; the worst windows and the peaks over all of them.
  const auto med = [&good](double RunFigures::*field) {
    return medianOf(good, [field](const RunFigures& r) { return r.*field; });
  };
  double worst = 0;
  double worst5 = 0;
  double peak = 0;
  double peak_anon = 0;
  for (const auto& r : good) {
    peak = std::max(peak, r.peak_rss_mb);
    peak_anon = std::max(peak_anon, r.peak_rss_anon_mb);
    if (std::abs(r.max_window_error_pct) > std::abs(worst)) worst = r.max_window_error_pct;
    if (std::abs(r.max_window5_error_pct) > std::abs(worst5)) worst5 = r.max_window5_error_pct;
  }
  const bool ok = !runs.empty() && good.size() == runs.size();
  nlohmann::json j;
  j["bench"] = "drain";
  j["ok"] = ok;
  j["runs"] = o.repeat;
  j["runs_ok"] = good.size();
  j["backlog_mib"] = o.backlog_mib;
  j["record_size"] = o.record_size;
  j["ramp_ms"] = o.ramp.count();
  j["heartbeat_ms"] = o.heartbeat.count();
  j["target_mb_per_s"] = static_cast<double>(o.rate) / 1e6;
  j["achieved_mb_per_s"] = med(&RunFigures::achieved_mb_per_s);
  j["ratio"] = med(&RunFigures::ratio);
  j["max_window_error_pct"] = worst;      // the worst 1-second window of every run
  j["max_window_5s_error_pct"] = worst5;  // the worst 5-second window (0 when none was whole)
  j["first_live_ms"] = med(&RunFigures::first_live_ms);
  j["recovered_ms"] = med(&RunFigures::recovered_ms);
  j["live_after_recovery_ms"] = med(&RunFigures::live_after_recovery_ms);
  j["backlog_s"] = med(&RunFigures::backlog_s);
  j["expected_backlog_s"] = med(&RunFigures::expected_backlog_s);
  // The model's check: the backlog's record bytes as the receiver got them, and as stored.
  j["received_backlog_mb"] = med(&RunFigures::received_backlog_mb);
  j["backlog_mb"] = med(&RunFigures::backlog_mb);
  // While the backlog drained (the fill before it is not the subject).
  j["peak_rss_mb"] = peak;
  j["peak_rss_anon_mb"] = peak_anon;
  std::printf("%s\n", j.dump().c_str());
  return ok ? 0 : 1;
}

}  // namespace cistern::bench
