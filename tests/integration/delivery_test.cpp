// Delivery end to end: `cistern run` as a child process capturing a pcap file, a log file and
// syslog messages into its buffer and delivering them to real receivers on loopback: the npm OTLP
// mock (decoding with protobufjs), nginx in front of it for TLS, mutual TLS, restarts and
// failover, and a local archive beside a dead output.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent_process.h"
#include "nginx.h"
#include "otlp_mock.h"
#include "rsyslog.h"
#include "subprocess.h"
#include "temp_dir.h"
#include "test_pki.h"

using cistern::testing::AgentProcess;
using cistern::testing::Nginx;
using cistern::testing::NginxOptions;
using cistern::testing::OtlpMock;
using cistern::testing::TempDir;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kBaseNs = 1'700'000'000'000'000'000ULL;

struct Packet {
  std::uint64_t ts_ns = 0;
  std::string bytes;
};

// `n` Ethernet frames with known contents (the index in their first bytes) and timestamps.
std::vector<Packet> makePackets(std::size_t n) {
  std::vector<Packet> out;
  for (std::size_t i = 0; i < n; ++i) {
    Packet p;
    p.ts_ns = kBaseNs + i * 1'000'003ULL;
    p.bytes.resize(64 + (i * 29) % 900);
    for (std::size_t b = 0; b < p.bytes.size(); ++b) {
      p.bytes[b] = static_cast<char>((i * 7 + b) & 0xFFU);
    }
    p.bytes.replace(0, 8, fmt::format("{:08}", i));
    out.push_back(std::move(p));
  }
  return out;
}

void writePcap(const fs::path& path, const std::vector<Packet>& packets) {
  pcap_t* dead =
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
  REQUIRE(dead != nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  REQUIRE(dumper != nullptr);
  for (const auto& p : packets) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(p.ts_ns / 1'000'000'000ULL);
    h.ts.tv_usec = static_cast<suseconds_t>(p.ts_ns % 1'000'000'000ULL);
    h.caplen = static_cast<bpf_u_int32>(p.bytes.size());
    h.len = h.caplen;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h,
              reinterpret_cast<const u_char*>(p.bytes.data()));
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

void appendLines(const fs::path& path, std::size_t first, std::size_t count) {
  std::ofstream out(path, std::ios::app);
  for (std::size_t i = first; i < first + count; ++i) out << fmt::format("line {:06}\n", i);
}

fs::path writeFile(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

void sendUdp(int port, const std::string& message) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, message.data(), message.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::close(fd);
}

// How many times each log line ("line 000042") arrived.
std::map<std::string, int> lineCounts(const std::vector<cistern::testing::OtlpLogRecord>& records) {
  std::map<std::string, int> seen;
  for (const auto& r : records) {
    if (r.text("cistern.input") == "app") ++seen[r.body];
  }
  return seen;
}

// nginx options that proxy /v1/logs to `mock`.
NginxOptions inFrontOf(const OtlpMock& mock) {
  NginxOptions options;
  options.upstream = mock.url().substr(std::string("http://").size());
  return options;
}

std::string agentYaml(const TempDir& dir, const std::string& inputs, const std::string& outputs) {
  return fmt::format(R"(agent:
  id: sensor-7
  data_dir: {}
status:
  listen: ""
buffer:
  max_size: 64MiB
  commit_interval: 5ms
inputs:
{}
outputs:
{}
)",
                     (dir / "data").string(), inputs, outputs);
}

std::string logInput(const fs::path& file) {
  return fmt::format(R"(  - type: file
    name: app
    paths: {}
    start_at: beginning
    poll_interval: 20ms)",
                     file.string());
}

std::string otlpOutput(const std::string& endpoints, const std::string& extra = {}) {
  return fmt::format(R"(  - type: otlp
    name: processor
    endpoints: {}
    retry_initial: 50ms
    retry_max: 500ms
    timeout: 3s{})",
                     endpoints, extra);
}

}  // namespace

TEST_CASE("cistern run delivers packets, log lines and syslog messages to an OTLP receiver",
          "[integration]") {
  TempDir dir;
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  const auto packets = makePackets(300);
  writePcap(dir / "in.pcap", packets);
  appendLines(dir / "app.log", 0, 300);
  const int syslog_port = cistern::testing::freeLoopbackPort();
  const std::string inputs =
      fmt::format(R"(  - type: pcap
    name: tap
    file: {}
{}
  - type: syslog
    name: sys
    listen: udp://127.0.0.1:{})",
                  (dir / "in.pcap").string(), logInput(dir / "app.log"), syslog_port);
  const auto config = writeFile(dir / "agent.yaml", agentYaml(dir, inputs, otlpOutput(mock.url())));
  AgentProcess agent(config);
  REQUIRE(agent.waitFor([&] { return mock.records().size() >= 600; }, 30s));
  sendUdp(syslog_port,
          "<165>1 2026-11-30T10:00:00.123456Z web-1 nginx 42 ID7 - GET /index.html 200");
  sendUdp(syslog_port, "<13>Nov 30 10:00:01 db-2 postgres[99]: checkpoint complete");
  REQUIRE(agent.waitFor([&] { return mock.records().size() >= 602; }, 30s));
  const auto report = agent.stop();
  INFO(agent.err());
  REQUIRE(agent.exitCode() == 0);

  const auto records = mock.records();
  REQUIRE(records.size() == 602);  // each exactly once
  std::map<std::string, const cistern::testing::OtlpLogRecord*> by_body;
  std::size_t packets_seen = 0;
  for (const auto& r : records) {
    CHECK(r.resourceText("service.name") == "cistern");
    CHECK(r.resourceText("cistern.agent.id") == "sensor-7");
    CHECK_FALSE(r.resourceText("host.name").empty());
    const std::string input = r.text("cistern.input");
    if (input == "tap") {
      REQUIRE(r.body_is_bytes);
      const std::size_t i = std::stoul(r.body.substr(0, 8));
      REQUIRE(i < packets.size());
      CHECK(r.body == packets[i].bytes);
      CHECK(r.time_unix_nano == packets[i].ts_ns);
      CHECK(r.integer("network.link_type") == DLT_EN10MB);
      CHECK(r.integer("packet.captured_length") ==
            static_cast<std::int64_t>(packets[i].bytes.size()));
      ++packets_seen;
    } else {
      by_body[r.body] = &r;
    }
  }
  CHECK(packets_seen == 300);
  CHECK(lineCounts(records).size() == 300);
  REQUIRE(by_body.count("line 000299") == 1);
  CHECK(by_body["line 000299"]->text("log.file.path") == (dir / "app.log").string());
  REQUIRE(by_body.count("GET /index.html 200") == 1);
  const auto& nginx_line = *by_body["GET /index.html 200"];
  CHECK(nginx_line.text("syslog.appname") == "nginx");
  CHECK(nginx_line.text("syslog.hostname") == "web-1");
  CHECK(nginx_line.integer("syslog.facility") == 20);
  CHECK(nginx_line.integer("syslog.severity") == 5);
  CHECK(nginx_line.time_unix_nano == 1'796'032'800'123'456'000ULL);
  REQUIRE(by_body.count("checkpoint complete") == 1);
  CHECK(by_body["checkpoint complete"]->text("syslog.procid") == "99");

  CHECK(AgentProcess::outputCounter(report, "processor", "records_acked") == 602);
  CHECK(AgentProcess::outputCounter(report, "processor", "records_rejected") == 0);
  CHECK(AgentProcess::output(report, "processor")["buffer"]["pending_records"] == 0);
}

TEST_CASE(
    "OTLP over TLS and mutual TLS through nginx; a wrong CA and a missing client "
    "certificate deliver nothing",
    "[integration]") {
  const auto& pki = cistern::testing::testPki();
  REQUIRE(pki.error.empty());
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  NginxOptions options = inFrontOf(mock);
  Nginx nginx(options);
  REQUIRE(nginx.start().empty());

  struct Case {
    std::string name;
    std::string url;
    std::string tls;
    bool delivers;
    std::string error_part;
  };
  const std::vector<Case> cases = {
      {"tls", fmt::format("https://127.0.0.1:{}", nginx.httpsPort()),
       fmt::format("ca_file: {}", pki.ca_crt), true, ""},
      {"mtls", fmt::format("https://localhost:{}", nginx.mtlsPort()),
       fmt::format("ca_file: {}\n      cert_file: {}\n      key_file: {}", pki.ca_crt,
                   pki.client_crt, pki.client_key),
       true, ""},
      {"wrong-ca", fmt::format("https://127.0.0.1:{}", nginx.httpsPort()),
       fmt::format("ca_file: {}", pki.other_ca_crt), false, "certificate"},
      {"no-client-cert", fmt::format("https://127.0.0.1:{}", nginx.mtlsPort()),
       fmt::format("ca_file: {}", pki.ca_crt), false, "certificate"},
  };
  std::size_t delivered_before = 0;
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      TempDir dir;
      appendLines(dir / "app.log", 0, 50);
      const auto config =
          writeFile(dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"),
                                                  otlpOutput(c.url, "\n    tls:\n      " + c.tls)));
      AgentProcess agent(config);
      if (c.delivers) {
        REQUIRE(agent.waitFor([&] { return mock.records().size() >= delivered_before + 50; }, 30s));
        delivered_before += 50;
      } else {
        agent.idle(3s);
      }
      const auto report = agent.stop();
      INFO(agent.err());
      REQUIRE(report.is_object());
      const auto out = AgentProcess::output(report, "processor");
      if (c.delivers) {
        CHECK(out["counters"]["records_acked"] == 50);
        CHECK(out["buffer"]["pending_records"] == 0);
      } else {
        CHECK(out["counters"]["records_acked"] == 0);
        CHECK(out["counters"]["records_rejected"] == 0);
        CHECK(out["buffer"]["pending_records"] == 50);
        CHECK_THAT(out["last_error"].get<std::string>(), Catch::Contains(c.error_part));
        CHECK_THAT(out["last_error"].get<std::string>(), Catch::Contains("127.0.0.1"));
        CHECK(mock.records().size() == delivered_before);
      }
    }
  }
}

TEST_CASE("429 with Retry-After and 503 are retried as told; 400 is rejected and not resent",
          "[integration]") {
  SECTION("429 Retry-After: 2") {
    OtlpMock mock("2:429:2");
    REQUIRE(mock.error().empty());
    TempDir dir;
    appendLines(dir / "app.log", 0, 40);
    const auto config = writeFile(
        dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"), otlpOutput(mock.url())));
    const auto started = std::chrono::steady_clock::now();
    AgentProcess agent(config);
    REQUIRE(agent.waitFor([&] { return mock.records().size() >= 40; }, 30s));
    // Two refusals, each with Retry-After: 2 s, before the records were taken.
    CHECK(std::chrono::steady_clock::now() - started >= 4s);
    const auto requests = mock.requests();
    REQUIRE(requests.size() >= 3);
    const auto report = agent.stop();
    CHECK(AgentProcess::outputCounter(report, "processor", "requests_failed") == 2);
    CHECK(AgentProcess::outputCounter(report, "processor", "records_retried") >= 40);
    CHECK(AgentProcess::outputCounter(report, "processor", "records_acked") == 40);
    CHECK(AgentProcess::outputCounter(report, "processor", "records_rejected") == 0);
    CHECK(lineCounts(mock.records()).size() == 40);
  }
  SECTION("503") {
    OtlpMock mock("3:503");
    REQUIRE(mock.error().empty());
    TempDir dir;
    appendLines(dir / "app.log", 0, 40);
    const auto config = writeFile(
        dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"), otlpOutput(mock.url())));
    AgentProcess agent(config);
    REQUIRE(agent.waitFor([&] { return mock.records().size() >= 40; }, 30s));
    const auto report = agent.stop();
    CHECK(AgentProcess::outputCounter(report, "processor", "requests_failed") == 3);
    CHECK(AgentProcess::outputCounter(report, "processor", "records_acked") == 40);
  }
  SECTION("400") {
    OtlpMock mock("1:400");
    REQUIRE(mock.error().empty());
    TempDir dir;
    appendLines(dir / "app.log", 0, 40);
    const auto config = writeFile(
        dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"), otlpOutput(mock.url())));
    AgentProcess agent(config);
    REQUIRE(agent.waitFor([&] { return !mock.requests().empty(); }, 30s));
    agent.idle(1500ms);
    const auto report = agent.stop();
    INFO(agent.err());
    // The one request was refused for good: counted, acknowledged, never sent again.
    CHECK(mock.requests().size() == 1);
    CHECK(AgentProcess::outputCounter(report, "processor", "records_rejected") == 40);
    CHECK(AgentProcess::outputCounter(report, "processor", "records_retried") == 0);
    CHECK(AgentProcess::output(report, "processor")["buffer"]["pending_records"] == 0);
    CHECK_THAT(AgentProcess::output(report, "processor")["last_error"].get<std::string>(),
               Catch::Contains("400"));
  }
}

TEST_CASE("413 from a receiver's body limit: batches are cut until they fit, each record once",
          "[integration]") {
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  NginxOptions options = inFrontOf(mock);
  options.logs_prelude = "  client_max_body_size 4k;";  // nginx answers 413 above it
  Nginx nginx(options);
  REQUIRE(nginx.start().empty());
  TempDir dir;
  appendLines(dir / "app.log", 0, 400);
  {
    // One line alone over the limit, between others.
    std::ofstream out(dir / "app.log", std::ios::app);
    out << "big " << std::string(6000, 'x') << "\n";
  }
  appendLines(dir / "app.log", 400, 10);
  const auto config = writeFile(
      dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"),
                                    otlpOutput(fmt::format("http://127.0.0.1:{}", nginx.httpPort()),
                                               "\n    compression: none")));
  AgentProcess agent(config);
  REQUIRE(agent.waitFor([&] { return lineCounts(mock.records()).size() >= 410; }, 60s));
  agent.idle(500ms);
  const auto report = agent.stop();
  INFO(agent.err());
  const auto counts = lineCounts(mock.records());
  CHECK(counts.size() == 410);
  for (const auto& [line, n] : counts) {
    INFO(line);
    CHECK(n == 1);
  }
  CHECK(AgentProcess::outputCounter(report, "processor", "batches_split") > 0);
  CHECK(AgentProcess::outputCounter(report, "processor", "records_too_large") == 1);
  CHECK(AgentProcess::outputCounter(report, "processor", "records_rejected") == 1);
  CHECK(AgentProcess::output(report, "processor")["buffer"]["pending_records"] == 0);
  CHECK_THAT(AgentProcess::output(report, "processor")["last_error"].get<std::string>(),
             Catch::Contains("413"));
}

TEST_CASE("a receiver killed and restarted mid-run gets every record at least once",
          "[integration]") {
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  NginxOptions options = inFrontOf(mock);
  Nginx nginx(options);
  REQUIRE(nginx.start().empty());
  TempDir dir;
  appendLines(dir / "app.log", 0, 200);
  const auto config =
      writeFile(dir / "agent.yaml",
                agentYaml(dir, logInput(dir / "app.log"),
                          otlpOutput(fmt::format("http://127.0.0.1:{}", nginx.httpPort()))));
  AgentProcess agent(config);
  REQUIRE(agent.waitFor([&] { return lineCounts(mock.records()).size() >= 200; }, 30s));
  nginx.kill();
  // Captured while the receiver is away: buffered, not lost.
  for (std::size_t i = 200; i < 1200; i += 100) {
    appendLines(dir / "app.log", i, 100);
    agent.idle(200ms);
  }
  REQUIRE(nginx.start().empty());
  REQUIRE(agent.waitFor([&] { return lineCounts(mock.records()).size() >= 1200; }, 60s));
  const auto report = agent.stop();
  INFO(agent.err());
  const auto counts = lineCounts(mock.records());
  CHECK(counts.size() == 1200);
  CHECK(AgentProcess::outputCounter(report, "processor", "requests_failed") >= 1);
  CHECK(AgentProcess::output(report, "processor")["buffer"]["pending_records"] == 0);
}

TEST_CASE("an output fails over to the standby receiver and back", "[integration]") {
  OtlpMock primary;
  OtlpMock standby;
  REQUIRE(primary.error().empty());
  REQUIRE(standby.error().empty());
  NginxOptions options = inFrontOf(primary);
  Nginx front(options);  // the primary's address, which can go away and come back
  REQUIRE(front.start().empty());
  TempDir dir;
  appendLines(dir / "app.log", 0, 100);
  const auto config = writeFile(
      dir / "agent.yaml",
      agentYaml(
          dir, logInput(dir / "app.log"),
          otlpOutput(fmt::format("[http://127.0.0.1:{}, {}]", front.httpPort(), standby.url()),
                     "\n    failover_after: 2\n    failback_interval: 1s")));
  AgentProcess agent(config);
  REQUIRE(agent.waitFor([&] { return lineCounts(primary.records()).size() >= 100; }, 30s));
  front.kill();
  appendLines(dir / "app.log", 100, 100);
  REQUIRE(agent.waitFor([&] { return lineCounts(standby.records()).size() >= 100; }, 30s));
  REQUIRE(front.start().empty());
  agent.idle(2500ms);  // the failback probe runs every second
  appendLines(dir / "app.log", 200, 100);
  REQUIRE(agent.waitFor(
      [&] {
        auto all = lineCounts(primary.records());
        for (const auto& [line, n] : lineCounts(standby.records())) all[line] += n;
        return all.size() >= 300;
      },
      30s));
  const auto report = agent.stop();
  INFO(agent.err());
  CHECK(AgentProcess::outputCounter(report, "processor", "failovers") >= 1);
  CHECK(AgentProcess::outputCounter(report, "processor", "failbacks") >= 1);
  // The last lines went to the primary again.
  CHECK(lineCounts(primary.records()).count("line 000299") == 1);
  CHECK(AgentProcess::output(report, "processor")["buffer"]["pending_records"] == 0);
}

TEST_CASE("a dead output does not hold up a live one", "[integration]") {
  TempDir dir;
  appendLines(dir / "app.log", 0, 500);
  const int dead_port = cistern::testing::freeLoopbackPort();
  const std::string outputs =
      otlpOutput(fmt::format("http://127.0.0.1:{}", dead_port)) +
      fmt::format("\n  - type: file\n    name: archive\n    path: {}", (dir / "archive").string());
  const auto config =
      writeFile(dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"), outputs));
  AgentProcess agent(config);
  const auto archived = [&] {
    std::size_t lines = 0;
    if (!fs::exists(dir / "archive")) return lines;
    for (const auto& e : fs::directory_iterator(dir / "archive")) {
      std::ifstream in(e.path());
      std::string line;
      while (std::getline(in, line)) ++lines;
    }
    return lines;
  };
  REQUIRE(agent.waitFor([&] { return archived() >= 500; }, 30s));
  const auto report = agent.stop();
  INFO(agent.err());
  CHECK(archived() == 500);
  CHECK(AgentProcess::outputCounter(report, "archive", "records_acked") == 500);
  CHECK(AgentProcess::outputCounter(report, "processor", "records_acked") == 0);
  CHECK(AgentProcess::output(report, "processor")["buffer"]["pending_records"] == 500);
  CHECK(AgentProcess::output(report, "archive")["buffer"]["pending_records"] == 0);
  CHECK_FALSE(AgentProcess::output(report, "processor")["last_error"].get<std::string>().empty());
}

TEST_CASE("cistern run delivers log lines to rsyslog over RELP with TLS and over plain TCP",
          "[integration]") {
  const auto& pki = cistern::testing::testPki();
  REQUIRE(pki.error.empty());
  cistern::testing::Rsyslog rsyslog(pki);
  REQUIRE(rsyslog.start().empty());
  TempDir dir;
  appendLines(dir / "app.log", 0, 200);
  const std::string outputs = fmt::format(R"(  - type: syslog
    name: siem
    endpoints: {}
    tls:
      ca_file: {}
      cert_file: {}
      key_file: {}
  - type: syslog
    name: plain
    endpoints: {})",
                                          rsyslog.endpoint("relp+tls"), pki.ca_crt, pki.client_crt,
                                          pki.client_key, rsyslog.endpoint("tcp"));
  const auto config =
      writeFile(dir / "agent.yaml", agentYaml(dir, logInput(dir / "app.log"), outputs));
  AgentProcess agent(config);
  REQUIRE(agent.waitFor([&] { return rsyslog.messages().size() >= 400; }, 30s));
  const auto report = agent.stop();
  INFO(agent.err());
  std::map<std::string, std::map<std::string, int>> by_input;  // rsyslog input -> msg -> count
  for (const auto& m : rsyslog.messages()) {
    CHECK(m.value("app-name", "") == "app");
    by_input[m.value("inputname", "")][m.value("msg", "")]++;
  }
  REQUIRE(by_input.size() == 2);
  for (const auto& [input, lines] : by_input) {
    INFO(input);
    CHECK(lines.size() == 200);
    CHECK(lines.count("line 000199") == 1);
  }
  CHECK(AgentProcess::outputCounter(report, "siem", "records_acked") == 200);
  CHECK(AgentProcess::outputCounter(report, "plain", "records_acked") == 200);
  CHECK(AgentProcess::output(report, "siem")["buffer"]["pending_records"] == 0);
}
