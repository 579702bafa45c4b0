// The outage cycle end to end: `cistern run` tails a log file written at a steady rate and
// delivers it over OTLP to the npm mock behind nginx, which the tests stop and start again, make
// refuse with 429 and Retry-After, or flap. What the issue promises is measured at the receiver:
// nothing lost, the first live record soon after the receiver returns, the backlog sent at
// `drain.rate` (record bytes per second, by arrival time at the mock), Retry-After obeyed (by
// nginx's own clock), memory bounded, and the output's counters.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent_process.h"
#include "cistern/core/record.h"
#include "cistern/core/record_meta.h"
#include "nginx.h"
#include "otlp_arrivals.h"
#include "otlp_mock.h"
#include "temp_dir.h"

using cistern::testing::AgentProcess;
using cistern::testing::Nginx;
using cistern::testing::NginxOptions;
using cistern::testing::OtlpArrivals;
using cistern::testing::OtlpMock;
using cistern::testing::TempDir;
using cistern::testing::wallSeconds;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kLineBytes = 500;  // without the newline
constexpr const char* kInput = "app";

// Line `i`: "line 000042 " and filler, kLineBytes long; its number is how the receiver's records
// are matched to what was written.
std::string lineText(std::size_t i) {
  std::string line = fmt::format("line {:06} ", i);
  for (std::size_t k = line.size(); k < kLineBytes; ++k) {
    line += static_cast<char>('a' + (i + k) % 26);
  }
  return line;
}

// The line number of a record's body; -1 when it is not one of ours.
long lineNumber(const std::string& body) {
  if (body.size() < 11 || body.compare(0, 5, "line ") != 0) return -1;
  return std::strtol(body.c_str() + 5, nullptr, 10);
}

// What line `i` of `path` weighs in the buffer: the encoded record the file tail stores, which
// is what drain.rate counts.
std::uint64_t recordBytes(const fs::path& path, std::size_t i) {
  std::vector<std::byte> meta;
  cistern::encodeLogLineMeta({0, i * (kLineBytes + 1), path.string()}, meta);
  const std::string line = lineText(i);
  const cistern::RecordInput r{cistern::RecordKind::kLogLine,
                               0,
                               kInput,
                               meta,
                               {reinterpret_cast<const std::byte*>(line.data()), line.size()}};
  return cistern::encodedRecordSize(r);
}

// Appends numbered lines to a file at a fixed rate from a thread of its own (on an absolute
// schedule, so a slow tick is caught up), and remembers when each was written.
class LineWriter {
 public:
  LineWriter(fs::path path, double lines_per_second, std::size_t first = 0)
      : path_(std::move(path)), rate_(lines_per_second), next_(first) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    failed_ = fd_ < 0;
    thread_ = std::thread([this] { run(); });
  }
  ~LineWriter() { stop(); }
  LineWriter(const LineWriter&) = delete;
  LineWriter& operator=(const LineWriter&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // The file opened and every write went through.
  [[nodiscard]] bool ok() const { return !failed_; }
  // The next line number: every line below it was written.
  [[nodiscard]] std::size_t next() const {
    std::lock_guard lk(mu_);
    return next_;
  }
  // When line `i` was written (wall clock); only for lines below next().
  [[nodiscard]] std::map<std::size_t, double> times() const {
    std::lock_guard lk(mu_);
    return times_;
  }

 private:
  void run() {
    const auto start = std::chrono::steady_clock::now();
    const std::size_t first = next_;
    while (!stop_ && fd_ >= 0) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const auto due = first + static_cast<std::size_t>(elapsed * rate_);
      std::string chunk;
      const std::size_t from = next_;
      for (std::size_t i = from; i < due; ++i) chunk += lineText(i) + "\n";
      if (!chunk.empty()) {
        if (::write(fd_, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
          failed_ = true;
        }
        const double now = wallSeconds();
        std::lock_guard lk(mu_);
        for (std::size_t i = from; i < due; ++i) times_[i] = now;
        next_ = due;
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  fs::path path_;
  double rate_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  mutable std::mutex mu_;
  std::size_t next_;
  std::map<std::size_t, double> times_;
  std::thread thread_;
};

void writeLines(const fs::path& path, std::size_t first, std::size_t count) {
  std::ofstream out(path, std::ios::app);
  for (std::size_t i = first; i < first + count; ++i) out << lineText(i) << '\n';
}

// The figures an agent logs every --stats-interval for one input or output ("output=NAME k=v
// ..."), each with the time the test read it (within a tick of the agent printing it).
class StatsLog {
 public:
  struct Sample {
    double seen_s = 0;
    std::map<std::string, std::int64_t> values;
  };

  explicit StatsLog(std::string subject) : key_(std::move(subject) + " ") {}

  // Takes the complete lines added to `err` since the last call.
  void update(const std::string& err) {
    const double now = wallSeconds();
    for (auto nl = err.find('\n', offset_); nl != std::string::npos; nl = err.find('\n', offset_)) {
      const std::string line = err.substr(offset_, nl - offset_);
      offset_ = nl + 1;
      const auto at = line.find(key_);
      if (at == std::string::npos) continue;
      Sample s;
      s.seen_s = now;
      std::istringstream fields(line.substr(at + key_.size()));
      std::string field;
      while (fields >> field) {
        const auto eq = field.find('=');
        if (eq == std::string::npos) continue;
        char* end = nullptr;
        const std::string value = field.substr(eq + 1);
        const long long v = std::strtoll(value.c_str(), &end, 10);
        if (!value.empty() && end != nullptr && *end == '\0') s.values[field.substr(0, eq)] = v;
      }
      samples_.push_back(std::move(s));
    }
  }
  [[nodiscard]] const std::vector<Sample>& samples() const { return samples_; }
  // The last value logged for `key`; -1 when none.
  [[nodiscard]] std::int64_t latest(const std::string& key) const {
    std::int64_t value = -1;
    for (const auto& sample : samples_) {
      if (const auto v = sample.values.find(key); v != sample.values.end()) value = v->second;
    }
    return value;
  }

 private:
  std::string key_;
  std::size_t offset_ = 0;
  std::vector<Sample> samples_;
};

// The resident set of a process (VmRSS), bytes; 0 when it is gone.
std::uint64_t residentBytes(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      std::uint64_t kib = 0;
      in >> kib;
      return kib * 1024;
    }
    in.ignore(4096, '\n');
  }
  return 0;
}

// Keeps the agent's pipes drained and calls `tick` about every 50 ms until `until_s` (wall
// clock), or until `done` holds when given; false when it did not.
bool runUntil(AgentProcess& agent, double until_s, const std::function<void()>& tick,
              const std::function<bool()>& done = {}) {
  while (wallSeconds() < until_s) {
    agent.idle(50ms);
    tick();
    if (done && done()) return true;
  }
  return !done;
}

// Every line the receiver got: how often, and when first and every time (wall clock).
struct Received {
  std::map<std::size_t, int> count;
  std::map<std::size_t, double> first;
  std::vector<std::pair<double, std::size_t>> arrivals;  // (time, line), every copy

  [[nodiscard]] int duplicates() const {
    int d = 0;
    for (const auto& [line, n] : count) d += n - 1;
    return d;
  }
};

Received received(const OtlpMock& mock, const OtlpArrivals& arrivals) {
  const auto records = mock.records();
  const auto times = arrivals.times();
  Received r;
  for (std::size_t k = 0; k < records.size() && k < times.size(); ++k) {
    if (records[k].text("cistern.input") != kInput) continue;
    const long n = lineNumber(records[k].body);
    if (n < 0) continue;
    const auto line = static_cast<std::size_t>(n);
    ++r.count[line];
    if (r.first.count(line) == 0) r.first[line] = times[k];
    r.arrivals.emplace_back(times[k], line);
  }
  return r;
}

// Distinct lines received (the arrival thread may trail the mock by a moment).
std::size_t distinctLines(const OtlpMock& mock, const OtlpArrivals& arrivals) {
  return received(mock, arrivals).count.size();
}

fs::path writeFile(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

struct DrainSettings {
  std::string interval = "2s";
  std::string max_interval = "2s";
  std::string rate = "0";
  std::string ramp = "3s";
  std::string retry_initial = "50ms";
};

std::string agentYaml(const TempDir& dir, const fs::path& log, const std::string& endpoint,
                      const DrainSettings& s) {
  // Small frames (4 KiB, a few lines): a request holds whole frames, so the receiver sees the
  // backlog in steps of 20 ms of the rate rather than in 256 KiB ones.
  return fmt::format(R"(agent:
  id: sensor-9
  data_dir: {}
status:
  listen: ""
buffer:
  max_size: 64MiB
  commit_interval: 5ms
  frame_max_bytes: 4KiB
inputs:
  - type: file
    name: {}
    paths: {}
    start_at: beginning
    poll_interval: 20ms
outputs:
  - type: otlp
    name: processor
    endpoints: {}
    retry_initial: {}
    retry_max: 500ms
    timeout: 3s
    heartbeat:
      interval: {}
      max_interval: {}
      failures: 3
      probe: export
    drain:
      rate: {}
      initial_percent: 10
      ramp: {}
      live_share_percent: 50
      latency_target: 2s
      backoff_percent: 50
      increase_percent: 5
      clean_responses: 10
)",
                     (dir / "data").string(), kInput, log.string(), endpoint, s.retry_initial,
                     s.interval, s.max_interval, s.rate, s.ramp);
}

// nginx in front of the mock: the receiver the agent sends to (timing log, 429 prelude).
NginxOptions frontOf(const OtlpMock& mock) {
  NginxOptions options;
  options.upstream = mock.url().substr(std::string("http://").size());
  return options;
}

nlohmann::json outputOf(const nlohmann::json& report) {
  auto out = AgentProcess::output(report, "processor");
  REQUIRE(out.is_object());
  return out;
}

}  // namespace

TEST_CASE(
    "outage cycle: a receiver away for 30 s of 60 gets every record, live ones first, "
    "and the backlog at drain.rate",
    "[integration]") {
  // 100 lines/s of 500 bytes (about 560 record bytes each: 56 KB/s live); a 30 s outage leaves
  // about 1.7 MB, which 96 KiB/s drains in about 18 s after a 3 s ramp from 10 %: three 5-second
  // windows at the full rate.
  constexpr double kLinesPerSecond = 100;
  constexpr double kRate = 96 * 1024;
  constexpr double kRamp = 3;
  constexpr double kInitial = 0.10;
  // With max_interval equal to interval, probes do not back off: a receiver that returns is
  // noticed within one interval (with backoff the bound is the interval in effect then).
  constexpr double kInterval = 2;
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  NginxOptions options = frontOf(mock);
  Nginx nginx(options);
  REQUIRE(nginx.start().empty());
  OtlpArrivals arrivals(mock);
  TempDir dir;
  const fs::path log = dir / "app.log";
  writeLines(log, 0, 0);
  DrainSettings s;
  s.rate = "96KiB";
  const auto config =
      writeFile(dir / "agent.yaml",
                agentYaml(dir, log, fmt::format("http://127.0.0.1:{}", nginx.httpPort()), s));
  AgentProcess agent(config);
  StatsLog stats("output=processor");
  const auto tick = [&] { stats.update(agent.err()); };

  LineWriter writer(log, kLinesPerSecond);
  const double t0 = wallSeconds();
  runUntil(agent, t0 + 10, tick);
  REQUIRE(distinctLines(mock, arrivals) > 0);  // delivering before the outage
  nginx.kill();
  const double t_stop = wallSeconds();
  runUntil(agent, t0 + 40, tick);
  REQUIRE(nginx.start().empty());
  const double t_return = wallSeconds();
  runUntil(agent, t0 + 60, tick);
  writer.stop();
  REQUIRE(writer.ok());
  const std::size_t written = writer.next();
  const bool all = runUntil(agent, wallSeconds() + 60, tick,
                            [&] { return distinctLines(mock, arrivals) >= written; });
  agent.idle(300ms);  // the last acknowledgements commit
  const auto report = agent.stop();
  INFO(agent.err().substr(agent.err().size() > 6000 ? agent.err().size() - 6000 : 0));
  REQUIRE(all);

  const Received got = received(mock, arrivals);
  const auto wrote_at = writer.times();
  // Nothing lost; copies of what was in flight when the receiver went away are allowed
  // (at-least-once) and shown.
  CHECK(got.count.size() == written);
  WARN("lines written " << written << ", received " << got.arrivals.size() << " (duplicates "
                        << got.duplicates() << ")");

  // The receiver came back at t_return; the output noticed with its first successful request,
  // the probe that made it RECOVERING (nginx logs it).
  double t_recover = 0;
  for (const auto& r : nginx.timedRequests()) {
    if (r.startS() >= t_return - 0.01 && r.status == 200) {
      t_recover = r.end_s;
      break;
    }
  }
  REQUIRE(t_recover > 0);
  CHECK(t_recover - t_return <= kInterval + 0.5);

  // The first live record: lines written after the receiver returned, the earliest to arrive.
  double first_live = 1e300;
  for (const auto& [line, at] : wrote_at) {
    if (at > t_return && got.first.count(line) != 0) {
      first_live = std::min(first_live, got.first.at(line));
    }
  }
  CHECK(first_live - t_return <= kInterval + 2);

  // The backlog: lines written before the receiver returned that it had not got before it went
  // away. Lines written between its return and the probe are backlog too, but sent last, after
  // every one of these; they are left out of the figures.
  std::map<std::size_t, std::uint64_t> backlog;  // line -> record bytes
  std::uint64_t backlog_bytes = 0;
  double backlog_done = 0;
  for (const auto& [line, at] : wrote_at) {
    if (at < t_return && got.first.count(line) != 0 && got.first.at(line) > t_return) {
      backlog[line] = recordBytes(log, line);
      backlog_bytes += backlog[line];
      backlog_done = std::max(backlog_done, got.first.at(line));
    }
  }
  REQUIRE(backlog_bytes > 1'000'000);
  // Live data flows first: lines written once the output was back (and before the backlog was
  // gone) arrived within a moment, whatever the backlog.
  double worst_live_delay = 0;
  double worst_live_written = 0;  // after t_recover
  std::vector<double> live_delays;
  for (const auto& [line, at] : wrote_at) {
    if (at > t_recover + 0.5 && at < backlog_done && got.first.count(line) != 0) {
      live_delays.push_back(got.first.at(line) - at);
      if (live_delays.back() > worst_live_delay) {
        worst_live_delay = live_delays.back();
        worst_live_written = at - t_recover;
      }
    }
  }
  REQUIRE_FALSE(live_delays.empty());
  std::sort(live_delays.begin(), live_delays.end());
  CHECK(worst_live_delay < 2.0);

  // Gone in about backlog_bytes / rate: the ramp carries rate x ramp x (1 + initial) / 2.
  const double ramp_bytes = kRate * kRamp * (1 + kInitial) / 2;
  const double expected_s = kRamp + (static_cast<double>(backlog_bytes) - ramp_bytes) / kRate;
  const double took_s = backlog_done - t_recover;
  CHECK(took_s <= expected_s * 1.3);
  CHECK(took_s >= expected_s * 0.85);  // not faster than the limit either

  // The backlog's send rate at the receiver, in 5-second windows after the ramp, every copy
  // counted (a copy is sent bytes too).
  const double windows_from = t_recover + kRamp;
  std::vector<double> window_rates;
  for (double w = windows_from; w + 5 <= backlog_done; w += 5) {
    std::uint64_t bytes = 0;
    for (const auto& [at, line] : got.arrivals) {
      if (at >= w && at < w + 5 && backlog.count(line) != 0) bytes += backlog.at(line);
    }
    window_rates.push_back(static_cast<double>(bytes) / 5);
  }
  REQUIRE(window_rates.size() >= 2);
  for (const double rate : window_rates) {
    INFO("window rate " << rate << " B/s against " << kRate);
    CHECK(std::abs(rate / kRate - 1) <= 0.10);
  }
  WARN("backlog " << backlog_bytes << " B (" << backlog.size() << " lines) drained in " << took_s
                  << " s (expected " << expected_s << " s); recovered " << t_recover - t_return
                  << " s and first live record " << first_live - t_return
                  << " s after the receiver returned; live delay "
                  << "median " << live_delays[live_delays.size() / 2] << " s, worst "
                  << worst_live_delay << " s (written " << worst_live_written
                  << " s after the recovery)");

  // The counters tell the same story.
  REQUIRE(agent.exitCode() == 0);
  const auto out = outputOf(report);
  const auto& c = out["counters"];
  CHECK(out["state"] == "healthy");
  CHECK(c["state"] == 0);
  CHECK(c["state_changes"] >= 2);
  const double down_s = c["down_ms"].get<double>() / 1000;
  CHECK(down_s >= (t_return - t_stop) - 3);
  CHECK(down_s <= (t_recover - t_stop) + 0.5);
  CHECK(c["probes_failed"] >= 10);
  CHECK(c["probes"] > c["probes_failed"]);
  CHECK(c["pushbacks"] == 0);
  CHECK(c["backlog_bytes_sent"] >= backlog_bytes);
  CHECK(c["live_bytes_sent"] > 0);
  CHECK(c["records_acked"] == written);
  CHECK(out["buffer"]["pending_records"] == 0);
  // While DOWN the agent logged state 1 and a rate of 0 (nothing is sent).
  bool saw_down = false;
  for (const auto& sample : stats.samples()) {
    if (sample.seen_s > t_stop + 3 && sample.seen_s < t_return) {
      const auto state = sample.values.find("state");
      saw_down = saw_down || (state != sample.values.end() && state->second == 1);
    }
  }
  CHECK(saw_down);
}

TEST_CASE(
    "429 with Retry-After: 2 for 10 s: no request before the time given, the drain rate "
    "cut and then recovered, nothing lost",
    "[integration]") {
  constexpr std::int64_t kRate = std::int64_t{64} * 1024;
  constexpr std::size_t kBacklogLines = 1800;  // about 1 MB: 16 s at the full rate
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  TempDir dir;
  const fs::path refuse = dir / "refuse";
  NginxOptions options = frontOf(mock);
  options.logs_prelude =
      fmt::format("if (-f {}) {{ add_header Retry-After 2 always; return 429; }}", refuse.string());
  Nginx nginx(options);
  REQUIRE(nginx.start().empty());
  OtlpArrivals arrivals(mock);
  const fs::path log = dir / "app.log";
  writeLines(log, 0, kBacklogLines);
  DrainSettings s;
  s.rate = "64KiB";
  s.ramp = "2s";
  // A retry that ignored Retry-After would come after 100-200 ms, inside the 2 s checked below.
  s.retry_initial = "200ms";

  // A first run with nobody listening stores the lines: the backlog the second run drains.
  {
    const auto config = writeFile(
        dir / "agent.yaml",
        agentYaml(dir, log,
                  fmt::format("http://127.0.0.1:{}", cistern::testing::freeLoopbackPort()), s));
    AgentProcess first(config);
    StatsLog input("input=app");
    REQUIRE(first.waitFor(
        [&] {
          input.update(first.err());
          return input.latest("lines_stored") == static_cast<std::int64_t>(kBacklogLines);
        },
        30s));
    const auto report = first.stop();
    REQUIRE(first.exitCode() == 0);
    REQUIRE(outputOf(report)["buffer"]["pending_records"] == kBacklogLines);
  }

  const auto config =
      writeFile(dir / "agent.yaml",
                agentYaml(dir, log, fmt::format("http://127.0.0.1:{}", nginx.httpPort()), s));
  AgentProcess agent(config);
  StatsLog stats("output=processor");
  const auto tick = [&] { stats.update(agent.err()); };
  LineWriter writer(log, 20, kBacklogLines);
  const double t0 = wallSeconds();
  // Draining at the full rate once the ramp is over.
  runUntil(agent, t0 + 4, tick);
  const std::int64_t rate_before = stats.latest("drain_rate");
  writeFile(refuse, "");
  const double t_refuse = wallSeconds();
  runUntil(agent, t_refuse + 10, tick);
  fs::remove(refuse);
  const double t_accept = wallSeconds();
  runUntil(agent, t_accept + 4, tick);
  writer.stop();
  REQUIRE(writer.ok());
  const std::size_t written = writer.next();
  const bool all = runUntil(agent, wallSeconds() + 60, tick,
                            [&] { return distinctLines(mock, arrivals) >= written; });
  agent.idle(300ms);
  const auto report = agent.stop();
  INFO(agent.err().substr(agent.err().size() > 6000 ? agent.err().size() - 6000 : 0));
  REQUIRE(all);
  CHECK(received(mock, arrivals).count.size() == written);

  // By nginx's clock: after each 429, no request began before Retry-After's 2 s had passed.
  // Requests nginx began reading within 20 ms of a 429 were on their way before it arrived.
  const auto requests = nginx.timedRequests();
  std::vector<double> refusals;
  for (const auto& r : requests) {
    if (r.status == 429) refusals.push_back(r.end_s);
  }
  CHECK(refusals.size() >= 3);  // one or more every 2 s of the 10 s window
  int early = 0;
  for (const double e : refusals) {
    for (const auto& r : requests) {
      const double after = r.startS() - e;
      if (after > 0.020 && after < 2.0 - 0.002) {
        ++early;
        WARN("a request began " << after << " s after a 429 with Retry-After: 2 (status "
                                << r.status << ")");
      }
    }
  }
  CHECK(early == 0);

  // The rate: full before, cut by the pushback, back to full while the backlog still drains.
  CHECK(rate_before == kRate);
  std::int64_t rate_after = -1;
  bool recovered = false;
  for (const auto& sample : stats.samples()) {
    if (sample.seen_s < t_accept + 0.2) continue;
    const auto v = sample.values.find("drain_rate");
    if (v == sample.values.end()) continue;
    if (rate_after < 0) rate_after = v->second;
    recovered = recovered || v->second == kRate;
  }
  INFO("drain_rate " << rate_before << " before the 429s, " << rate_after << " after");
  CHECK(rate_after > 0);
  CHECK(rate_after < kRate);
  CHECK(recovered);

  REQUIRE(agent.exitCode() == 0);
  const auto out = outputOf(report);
  CHECK(out["counters"]["pushbacks"] > 0);
  CHECK(out["counters"]["state"] == 0);
  CHECK(out["counters"]["records_acked"] == written);
  CHECK(out["buffer"]["pending_records"] == 0);
}

TEST_CASE(
    "a flapping receiver (up 3 s, down 3 s, for 2 minutes): nothing lost, memory bounded, "
    "counters add up",
    "[integration]") {
  constexpr double kFlapSeconds = 120;
  // The agent's resident set while it tails, buffers and delivers (about 20 MB measured): the
  // ring's heap (at most a 16 MiB ingest queue and a 4 MiB transaction), the output's batches
  // (max_in_flight x max_batch_bytes) and libraries. It must not grow with the outages. Under
  // AddressSanitizer (the agent is built like this test) shadow memory and the quarantine of
  // freed blocks (256 MB) make the figure meaningless, so it is only shown.
#if defined(__SANITIZE_ADDRESS__)
  constexpr bool kCheckRss = false;
#else
  constexpr bool kCheckRss = true;
#endif
  constexpr std::uint64_t kRssBound = 64ULL << 20U;
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  NginxOptions options = frontOf(mock);
  Nginx nginx(options);
  REQUIRE(nginx.start().empty());
  OtlpArrivals arrivals(mock);
  TempDir dir;
  const fs::path log = dir / "app.log";
  writeLines(log, 0, 0);
  DrainSettings s;
  s.interval = "1s";
  s.max_interval = "2s";
  s.rate = "256KiB";
  s.ramp = "1s";
  const auto config =
      writeFile(dir / "agent.yaml",
                agentYaml(dir, log, fmt::format("http://127.0.0.1:{}", nginx.httpPort()), s));
  AgentProcess agent(config);
  std::vector<std::pair<double, std::uint64_t>> rss;  // (time, bytes)
  double last_rss = 0;
  const auto tick = [&] {
    if (wallSeconds() - last_rss >= 0.5) {
      last_rss = wallSeconds();
      rss.emplace_back(last_rss, residentBytes(agent.pid()));
    }
  };
  LineWriter writer(log, 100);
  const double t0 = wallSeconds();
  int outages = 0;
  for (double t = t0 + 3; t < t0 + kFlapSeconds; t += 6) {
    runUntil(agent, t, tick);
    nginx.kill();
    ++outages;
    runUntil(agent, t + 3, tick);
    REQUIRE(nginx.start().empty());
  }
  runUntil(agent, t0 + kFlapSeconds, tick);
  writer.stop();
  REQUIRE(writer.ok());
  const std::size_t written = writer.next();
  const bool all = runUntil(agent, wallSeconds() + 60, tick,
                            [&] { return distinctLines(mock, arrivals) >= written; });
  agent.idle(300ms);
  const auto report = agent.stop();
  INFO(agent.err().substr(agent.err().size() > 6000 ? agent.err().size() - 6000 : 0));
  REQUIRE(all);
  const Received got = received(mock, arrivals);
  CHECK(got.count.size() == written);

  std::uint64_t peak = 0;
  std::uint64_t peak_first_half = 0;
  std::uint64_t peak_second_half = 0;
  for (const auto& [at, bytes] : rss) {
    peak = std::max(peak, bytes);
    auto& half = at < t0 + kFlapSeconds / 2 ? peak_first_half : peak_second_half;
    half = std::max(half, bytes);
  }
  const auto mb = [](std::uint64_t bytes) { return static_cast<double>(bytes) / 1e6; };
  WARN(outages << " outages; lines " << written << ", received " << got.arrivals.size()
               << " (duplicates " << got.duplicates() << "); agent RSS peak " << mb(peak)
               << " MB (first half " << mb(peak_first_half) << ", second half "
               << mb(peak_second_half) << ")");
  CHECK(rss.size() >= 200);
  if (kCheckRss) {
    CHECK(peak < kRssBound);
    // Not growing with the outages: the second minute peaks within 8 MiB of the first.
    CHECK(peak_second_half <= peak_first_half + (8ULL << 20U));
  }

  // Counters add up: every line captured was stored, sent and acknowledged, none is pending.
  REQUIRE(agent.exitCode() == 0);
  const auto out = outputOf(report);
  const auto& c = out["counters"];
  CHECK(report["inputs"][0]["counters"]["lines_stored"] == written);
  CHECK(report["buffer"]["appended_records"] == written);
  CHECK(c["records_acked"] == written);
  CHECK(c["records_rejected"] == 0);
  CHECK(c["records_sent"] >= c["records_acked"]);
  CHECK(out["buffer"]["pending_records"] == 0);
  CHECK(out["buffer"]["evicted_records"] == 0);
  CHECK(c["state"] == 0);
  // Most outages are noticed (DOWN) and left (RECOVERING): two changes or more each.
  CHECK(c["state_changes"] >= outages);
  CHECK(c["down_ms"] > 0);
  CHECK(c["down_ms"] <= (outages * (3 + 2) + 5) * 1000);
  CHECK(c["probes_failed"] >= 1);
}
