// The control plane end to end (issue 6): `cistern run` as a child process reporting to a real
// OpAMP server, @elastic/mockopampserver (tests/peers/opamp_mock.js, which decodes what the agent
// sends with its own protobuf implementation), and serving its local status API: heartbeat cadence
// and content (description, health per input and output with the buffer's figures, effective
// config), the full state when the server asks, an instance UID kept across restarts; remote
// configs applied and reported APPLIED, not applied twice, refused and reported FAILED (bad YAML,
// unknown keys, a component that cannot start, local-only sections, missing or invalid
// signatures) with the old config running on, the applied one kept for a start without the
// server; a remote change during heavy capture; /metrics against `cistern buffer inspect`.
#include <pcap/pcap.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent_process.h"
#include "opamp_mock.h"
#include "ports.h"
#include "prometheus_text.h"
#include "status_client.h"
#include "subprocess.h"
#include "temp_dir.h"

using cistern::testing::AgentProcess;
using cistern::testing::OpampMock;
using cistern::testing::OpampMockMessage;
using cistern::testing::OpampMockOptions;
using cistern::testing::StatusClient;
using cistern::testing::TempDir;
using json = nlohmann::json;
using Messages = std::vector<OpampMockMessage>;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kWait = 30s;
// ReportsStatus, AcceptsRemoteConfig, ReportsEffectiveConfig, ReportsHealth, ReportsRemoteConfig,
// ReportsHeartbeat (opamp.h).
constexpr std::uint64_t kCapabilities = 0x3807;
constexpr const char* kApplied = "RemoteConfigStatuses_APPLIED";
constexpr const char* kFailed = "RemoteConfigStatuses_FAILED";

#define REQUIRE_MOCK(mock)           \
  do {                               \
    INFO((mock).error());            \
    REQUIRE((mock).error().empty()); \
  } while (false)

// --- files ---

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path.string() + ".tmp", std::ios::binary);
  out << text;
  out.close();
  fs::rename(path.string() + ".tmp", path);
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Appends `count` numbered lines ("<prefix> 000042"), `per_second` of them per second (0: at once).
void appendLines(const fs::path& path, const std::string& prefix, std::size_t first,
                 std::size_t count, int per_second = 0) {
  std::ofstream out(path, std::ios::app);
  for (std::size_t i = first; i < first + count; ++i) {
    out << fmt::format("{} {:06}\n", prefix, i);
    if (per_second > 0 && i % 50 == 49) {
      out.flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(50'000 / per_second));
    }
  }
}

// Messages found in the NDJSON files of an archive directory, with their counts.
std::map<std::string, int> archivedLines(const fs::path& dir) {
  std::map<std::string, int> seen;
  if (!fs::exists(dir)) return seen;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".ndjson") continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      const auto j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("message") && j["message"].is_string()) {
        ++seen[j["message"].get<std::string>()];
      }
    }
  }
  return seen;
}

std::size_t countWithPrefix(const std::map<std::string, int>& lines, const std::string& prefix) {
  return static_cast<std::size_t>(std::count_if(
      lines.begin(), lines.end(), [&](const auto& kv) { return kv.first.rfind(prefix, 0) == 0; }));
}

// `n` Ethernet frames with known contents and nanosecond timestamps, as a pcap file.
void writePcap(const fs::path& path, std::size_t n) {
  pcap_t* dead =
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
  REQUIRE(dead != nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  REQUIRE(dumper != nullptr);
  for (std::size_t i = 0; i < n; ++i) {
    std::string bytes(64 + (i * 29) % 900, '\0');
    for (std::size_t b = 0; b < bytes.size(); ++b)
      bytes[b] = static_cast<char>((i * 7 + b) & 0xFFU);
    bytes.replace(0, 8, fmt::format("{:08}", i));
    const std::uint64_t ts = 1'700'000'000'000'000'000ULL + i * 1'000'003ULL;
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(ts / 1'000'000'000ULL);
    h.ts.tv_usec = static_cast<suseconds_t>(ts % 1'000'000'000ULL);
    h.caplen = static_cast<bpf_u_int32>(bytes.size());
    h.len = h.caplen;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h, reinterpret_cast<const u_char*>(bytes.data()));
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

// Runs openssl; fails the test with its stderr when it fails.
void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = cistern::testing::run(argv, 30s);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// --- configs ---

// The opamp section for `endpoint`: 1 s heartbeats, retries within a second.
std::string opampSection(const std::string& endpoint, const std::string& extra = {}) {
  return fmt::format(
      "opamp:\n  endpoint: {}\n  heartbeat_interval: 1s\n  max_backoff: 1s\n  timeout: 5s\n{}",
      endpoint, extra);
}

std::string agentYaml(const TempDir& dir, int status_port, const std::string& opamp,
                      const std::string& inputs, const std::string& outputs) {
  return fmt::format(R"(agent:
  id: opamp-test
  data_dir: {}
status:
  listen: "127.0.0.1:{}"
{}buffer:
  max_size: 64MiB
  commit_interval: 5ms
inputs:
{}
outputs:
{}
)",
                     (dir / "data").string(), status_port, opamp, inputs, outputs);
}

std::string fileInput(const TempDir& dir, const std::string& name) {
  return fmt::format(R"(  - type: file
    name: {}
    paths: [{}]
    start_at: beginning
    poll_interval: 20ms)",
                     name, (dir / (name + ".log")).string());
}

std::string archiveOutput(const TempDir& dir, const std::string& name) {
  return fmt::format("  - type: file\n    name: {}\n    path: {}", name, (dir / name).string());
}

// An OTLP output to a port nobody listens on: it keeps every record in the buffer.
std::string deadOutput(const std::string& name, int port) {
  return fmt::format("  - type: otlp\n    name: {}\n    endpoints: [\"http://127.0.0.1:{}\"]", name,
                     port);
}

// A remote config's text: the sections given, inputs and outputs as lists of entries.
std::string remoteYaml(const std::vector<std::string>& inputs,
                       const std::vector<std::string>& outputs = {}) {
  std::string out = "inputs:\n";
  for (const auto& i : inputs) out += i + "\n";
  if (!outputs.empty()) {
    out += "outputs:\n";
    for (const auto& o : outputs) out += o + "\n";
  }
  return out;
}

std::string hex(const std::string& bytes) {
  std::string out;
  for (const char c : bytes) out += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return out;
}

// --- waiting ---

// Polls `cond` every 50 ms until it holds, draining the agent's pipes meanwhile (its log must
// never fill them). False on timeout or when the agent exited.
bool until(AgentProcess& agent, const std::function<bool()>& cond,
           std::chrono::milliseconds timeout = kWait) {
  auto next = Clock::now();
  return agent.waitFor(
      [&] {
        if (Clock::now() < next) return false;
        next = Clock::now() + 50ms;
        return cond();
      },
      timeout);
}

// Polls /status until `pred` holds; `last` is the last /status read (for INFO on failure).
bool waitStatus(AgentProcess& agent, const StatusClient& api, json& last,
                const std::function<bool(const json&)>& pred,
                std::chrono::milliseconds timeout = kWait) {
  return until(
      agent,
      [&] {
        last = api.status();
        return last.is_object() && pred(last);
      },
      timeout);
}

// --- OpAMP messages ---

// The value at `path` in `j`; null when a part is missing (a const operator[] would assert).
const json& field(const json& j, std::initializer_list<const char*> path) {
  static const json kNull;
  const json* at = &j;
  for (const char* key : path) {
    if (!at->is_object()) return kNull;
    const auto it = at->find(key);
    if (it == at->end()) return kNull;
    at = &*it;
  }
  return *at;
}

std::string text(const json& j, std::initializer_list<const char*> path) {
  const json& v = field(j, path);
  return v.is_string() ? v.get<std::string>() : std::string();
}

std::string remoteStatus(const OpampMockMessage& m) {
  return text(m.a2s, {"remoteConfigStatus", "status"});
}
std::string remoteHash(const OpampMockMessage& m) {
  return OpampMockMessage::bytes(field(m.a2s, {"remoteConfigStatus", "lastRemoteConfigHash"}));
}
std::string remoteError(const OpampMockMessage& m) {
  return text(m.a2s, {"remoteConfigStatus", "errorMessage"});
}
bool offersRemoteConfig(const OpampMockMessage& m) {
  return m.s2a.is_object() && m.s2a.contains("remoteConfig") && !m.s2a["remoteConfig"].is_null();
}
bool asksFullState(const OpampMockMessage& m) {
  return (OpampMockMessage::number(m.s2a, "flags") & 1U) != 0;
}
std::string effectiveConfigText(const OpampMockMessage& m) {
  return OpampMockMessage::bytes(
      field(m.a2s, {"effectiveConfig", "configMap", "configMap", "cistern.yaml", "body"}));
}

// The index of the first message from `from` on that satisfies `pred`; -1 when none.
int findFrom(const Messages& m, std::size_t from,
             const std::function<bool(const OpampMockMessage&)>& pred) {
  for (std::size_t i = from; i < m.size(); ++i) {
    if (pred(m[i])) return static_cast<int>(i);
  }
  return -1;
}
int findLast(const Messages& m, const std::function<bool(const OpampMockMessage&)>& pred) {
  for (std::size_t i = m.size(); i > 0; --i) {
    if (pred(m[i - 1])) return static_cast<int>(i - 1);
  }
  return -1;
}

// Waits (draining the agent) until the mock received, from message `from` on, a report of the
// remote config `hash` in `state`; returns that message's index or -1.
int waitForReport(AgentProcess& agent, const OpampMock& mock, std::size_t from,
                  const std::string& state, const std::string& hash) {
  int found = -1;
  until(agent, [&] {
    found = findFrom(mock.messages(), from, [&](const OpampMockMessage& m) {
      return remoteStatus(m) == state && remoteHash(m) == hash;
    });
    return found >= 0;
  });
  return found;
}

std::uint64_t number(const std::map<std::string, std::string>& attributes, const std::string& key) {
  const auto it = attributes.find(key);
  if (it == attributes.end()) FAIL("no attribute " << key);
  return std::stoull(it->second);
}

// One running agent with its config, its status API and the mock it reports to.
struct Sensor {
  Sensor(const TempDir& dir, const std::string& opamp, const std::string& inputs,
         const std::string& outputs)
      : status_port(cistern::testing::listenPort()),
        config(dir / "agent.yaml"),
        local_text(agentYaml(dir, status_port, opamp, inputs, outputs)),
        api(status_port) {
    REQUIRE(status_port > 0);
    writeFile(config, local_text);
    start();
  }
  void start() { agent = std::make_unique<AgentProcess>(config); }
  json stop() {
    auto report = agent->stop();
    INFO(agent->err());
    CHECK(agent->exitCode() == 0);
    return report;
  }

  // Waits until /status satisfies `pred`; fails the test (with the last /status) otherwise.
  json require(const std::function<bool(const json&)>& pred,
               std::chrono::milliseconds timeout = kWait) {
    json last;
    const bool ok = waitStatus(*agent, api, last, pred, timeout);
    INFO("last /status: " << last.dump());
    INFO("agent stderr: " << agent->err());
    REQUIRE(ok);
    return last;
  }

  // Waits until the remote config `hash` is in `state` in /status ("applied", "failed").
  json requireRemote(const std::string& hash, const std::string& state) {
    return require([&](const json& s) {
      return text(s, {"opamp", "remote_config_hash"}) == hex(hash) &&
             text(s, {"opamp", "remote_config_status"}) == state;
    });
  }

  int status_port;
  fs::path config;
  std::string local_text;
  StatusClient api;
  std::unique_ptr<AgentProcess> agent;
};

using Names = std::vector<std::string>;

bool connected(const json& s) { return field(s, {"opamp", "connected"}) == true; }

}  // namespace

TEST_CASE("heartbeats through cistern run: cadence, full state, health, stable instance UID",
          "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  appendLines(dir / "app.log", "line", 0, 300);
  const int dead_port = cistern::testing::listenPort();
  REQUIRE(dead_port > 0);
  Sensor sensor(dir, opampSection(mock.url()), fileInput(dir, "app"),
                archiveOutput(dir, "archive") + "\n" + deadOutput("dead", dead_port));

  // The buffer settles: the 300 lines in, acknowledged by the archive, kept for the dead output.
  sensor.require([](const json& s) {
    const auto archive = StatusClient::entry(s, "outputs", "archive");
    const auto dead = StatusClient::entry(s, "outputs", "dead");
    return field(s, {"buffer", "records"}) == 300 && archive.is_object() &&
           field(archive, {"buffer", "pending_records"}) == 0 &&
           field(dead, {"buffer", "pending_records"}) == 300 && field(dead, {"state"}) == "down";
  });
  // Heartbeats after that carry the settled figures.
  const std::size_t settled = mock.messages().size();
  REQUIRE(until(*sensor.agent,
                [&] { return mock.messages().size() >= std::max<std::size_t>(settled + 2, 5); }));
  json status = sensor.api.status();
  REQUIRE(status.is_object());
  Messages m = mock.messages();
  INFO(sensor.agent->err());

  const std::string uid_text = trimmed(readFile(dir / "data" / "instance_uid"));
  for (std::size_t i = 0; i < m.size(); ++i) {
    INFO("message " << i);
    CHECK(m[i].status == 200);
    CHECK(m[i].sequenceNum() == i + 1);
    CHECK(m[i].a2s.value("instanceUid", "") == m[0].a2s.value("instanceUid", ""));
    CHECK(OpampMockMessage::number(m[i].a2s, "capabilities") == kCapabilities);
    CHECK_FALSE(asksFullState(m[i]));  // the agent reported its full state by itself
  }

  // The first message: the full state.
  REQUIRE(m[0].fullState());
  const auto ident =
      OpampMockMessage::attributes(m[0].a2s["agentDescription"]["identifyingAttributes"]);
  CHECK(ident.at("service.name") == "cistern");
  CHECK(ident.at("service.version") == status["agent"].value("version", "?"));
  CHECK(ident.at("service.instance.id") == "opamp-test");
  CHECK(ident.at("cistern.agent.id") == "opamp-test");
  const auto non_ident =
      OpampMockMessage::attributes(m[0].a2s["agentDescription"]["nonIdentifyingAttributes"]);
  CHECK(non_ident.at("host.name") == status["agent"].value("host", "?"));
  CHECK_FALSE(non_ident.at("host.name").empty());
  CHECK(non_ident.at("os.type") == "linux");
  CHECK(non_ident.at("cistern.instance_uid") == uid_text);
  CHECK(OpampMockMessage::bytes(m[0].a2s["instanceUid"]).size() == 16);
  const auto& first_components = m[0].a2s["health"]["componentHealthMap"];
  CHECK(first_components.contains("input:app"));
  CHECK(first_components.contains("output:archive"));
  CHECK(first_components.contains("output:dead"));
  // The effective config is the local file, byte for byte (no remote config yet).
  CHECK(effectiveConfigText(m[0]) == sensor.local_text);
  CHECK(m[0].a2s["effectiveConfig"]["configMap"]["configMap"]["cistern.yaml"].value(
            "contentType", "") == "text/yaml");
  CHECK(remoteStatus(m[0]) == "RemoteConfigStatuses_UNSET");
  // Later heartbeats do not repeat the description or the config.
  for (std::size_t i = 1; i < m.size(); ++i) {
    INFO("message " << i);
    CHECK_FALSE(m[i].has("agentDescription"));
    CHECK_FALSE(m[i].has("effectiveConfig"));
  }

  // Cadence: one second apart (the timer runs from each answer).
  for (std::size_t i = 1; i < m.size(); ++i) {
    const auto gap =
        std::chrono::duration_cast<std::chrono::milliseconds>(m[i].received - m[i - 1].received);
    INFO("gap before message " << i << ": " << gap.count() << " ms");
    CHECK(gap >= 500ms);
    CHECK(gap <= 2500ms);
  }

  // Health in the last heartbeat against /status: the figures parse and agree.
  const int with_health = findLast(m, [](const OpampMockMessage& x) { return x.has("health"); });
  REQUIRE(with_health >= static_cast<int>(settled));
  const auto& health = m[static_cast<std::size_t>(with_health)].a2s["health"];
  CHECK(health.value("healthy", false));
  const auto top = cistern::testing::parseHealthStatus(health.value("status", ""));
  INFO("top status: " << health.value("status", ""));
  REQUIRE(top.error.empty());
  CHECK(top.word == "running");
  for (const char* key :
       {"backlog_bytes", "backlog_records", "oldest_age_ms", "dropped_evicted_records",
        "dropped_queue_full_records", "dropped_invalid_records", "dropped_map_full_records",
        "capture_dropped_packets"}) {
    INFO(key);
    REQUIRE(top.attributes.count(key) == 1);
    CHECK(top.attributes.at(key).find_first_not_of("0123456789") == std::string::npos);
  }
  CHECK(number(top.attributes, "backlog_records") == status["buffer"].value("records", 0U));
  CHECK(number(top.attributes, "backlog_bytes") == status["buffer"].value("used_bytes", 0U));
  CHECK(number(top.attributes, "dropped_evicted_records") == 0);
  CHECK(number(top.attributes, "capture_dropped_packets") == 0);
  const double age_s = status["buffer"].value("oldest_age_s", 0.0);
  CHECK(static_cast<double>(number(top.attributes, "oldest_age_ms")) / 1000.0 ==
        Approx(age_s).margin(5.0));

  const auto& components = health["componentHealthMap"];
  REQUIRE(components.contains("input:app"));
  const auto input =
      cistern::testing::parseHealthStatus(components["input:app"].value("status", ""));
  REQUIRE(input.error.empty());
  CHECK(components["input:app"].value("healthy", false));
  CHECK(input.word == "running");
  CHECK(input.attributes.at("type") == "file");
  const auto app = StatusClient::entry(status, "inputs", "app");
  CHECK(number(input.attributes, "lines_stored") == app["counters"].value("lines_stored", 0U));
  CHECK(number(input.attributes, "lines_stored") == 300);

  REQUIRE(components.contains("output:archive"));
  const auto archive =
      cistern::testing::parseHealthStatus(components["output:archive"].value("status", ""));
  REQUIRE(archive.error.empty());
  CHECK(archive.word == "healthy");
  CHECK(components["output:archive"].value("healthy", false));
  CHECK(archive.attributes.at("type") == "file");
  CHECK(number(archive.attributes, "backlog_records") == 0);
  CHECK(number(archive.attributes, "records_acked") == 300);
  CHECK(number(archive.attributes, "records_acked") ==
        StatusClient::entry(status, "outputs", "archive")["counters"].value("records_acked", 0U));

  REQUIRE(components.contains("output:dead"));
  const auto dead =
      cistern::testing::parseHealthStatus(components["output:dead"].value("status", ""));
  REQUIRE(dead.error.empty());
  CHECK(dead.word == "down");
  CHECK_FALSE(components["output:dead"].value("healthy", true));
  CHECK_THAT(components["output:dead"].value("lastError", ""),
             Catch::Contains(std::to_string(dead_port)));
  CHECK(dead.attributes.at("type") == "otlp");
  CHECK(dead.attributes.at("endpoint") == fmt::format("http://127.0.0.1:{}", dead_port));
  CHECK(number(dead.attributes, "backlog_records") == 300);
  CHECK(number(dead.attributes, "backlog_records") ==
        StatusClient::entry(status, "outputs", "dead")["buffer"].value("pending_records", 0U));

  // /status tells the same story as the server heard it.
  CHECK(status["opamp"].value("enabled", false));
  CHECK(status["opamp"].value("endpoint", "") == mock.url());
  CHECK(status["opamp"].value("state", "") == "connected");
  CHECK(StatusClient::opampCounter(status, "heartbeat_interval_ms") == 1000);
  CHECK(StatusClient::opampCounter(status, "requests_failed") == 0);
  CHECK(StatusClient::opampCounter(status, "full_state_reports") == 1);
  CHECK(StatusClient::opampCounter(status, "requests_ok") >=
        static_cast<std::int64_t>(m.size()) - 1);

  // ReportFullState: the answer that sets it is followed at once by the full state.
  const std::size_t before = mock.messages().size();
  REQUIRE(mock.requestFullState());
  int flagged = -1;
  REQUIRE(until(*sensor.agent, [&] {
    const auto all = mock.messages();
    flagged = findFrom(all, before, asksFullState);
    return flagged >= 0 && all.size() > static_cast<std::size_t>(flagged) + 1;
  }));
  {
    Messages all = mock.messages();
    const auto& asked = all[static_cast<std::size_t>(flagged)];
    const auto& full = all[static_cast<std::size_t>(flagged) + 1];
    CHECK_FALSE(asked.has("agentDescription"));
    CHECK(full.fullState());
    CHECK(effectiveConfigText(full) == sensor.local_text);
    CHECK(full.received - asked.received < 800ms);  // not at the next heartbeat
    CHECK(full.sequenceNum() == asked.sequenceNum() + 1);
  }
  sensor.require(
      [](const json& s) { return StatusClient::opampCounter(s, "full_state_reports") == 2; });

  // A restart: the same instance UID (kept in <data_dir>/instance_uid), a new sequence.
  const std::string uid_base64 = m[0].a2s.value("instanceUid", "");
  const auto report = sensor.stop();
  REQUIRE(report.is_object());
  CHECK(mock.waitFor(
      [](const Messages& all) {
        return findFrom(all, 0,
                        [](const OpampMockMessage& x) { return x.has("agentDisconnect"); }) >= 0;
      },
      5s));
  const std::size_t first_run = mock.messages().size();
  sensor.start();
  REQUIRE(until(*sensor.agent, [&] { return mock.messages().size() > first_run; }));
  const auto restarted = mock.messages()[first_run];
  CHECK(restarted.sequenceNum() == 1);
  CHECK(restarted.a2s.value("instanceUid", "") == uid_base64);
  CHECK(restarted.fullState());
  CHECK(
      OpampMockMessage::attributes(
          restarted.a2s["agentDescription"]["nonIdentifyingAttributes"])["cistern.instance_uid"] ==
      uid_text);
  CHECK(trimmed(readFile(dir / "data" / "instance_uid")) == uid_text);
  sensor.stop();
  CHECK(mock.diagnostics() == "unparsed:  errors:  stderr: ");
}

TEST_CASE("a remote config is applied, reported APPLIED, and not applied a second time",
          "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  appendLines(dir / "app.log", "app", 0, 100);
  appendLines(dir / "extra.log", "extra", 0, 50);
  Sensor sensor(dir, opampSection(mock.url()), fileInput(dir, "app"), archiveOutput(dir, "first"));
  sensor.require([](const json& s) {
    return connected(s) &&
           field(StatusClient::entry(s, "inputs", "app"), {"counters", "lines_stored"}) == 100;
  });

  // An input and an output more.
  const std::string remote =
      remoteYaml({fileInput(dir, "app"), fileInput(dir, "extra")},
                 {archiveOutput(dir, "first"), archiveOutput(dir, "second")});
  const std::size_t offered_at = mock.messages().size();
  const std::string hash = mock.setRemoteConfig({{"cistern.yaml", remote}});
  REQUIRE_FALSE(hash.empty());
  const auto offered = Clock::now();
  json status = sensor.requireRemote(hash, "applied");
  // Picked up with the answer to the next heartbeat (1 s), applied at once.
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - offered);
  INFO("remote config running " << took.count() << " ms after the offer");
  CHECK(took < 5s);
  CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
  CHECK(StatusClient::names(status, "outputs") == Names{"first", "second"});
  CHECK(status["opamp"].value("remote_config_error", "?").empty());
  CHECK(StatusClient::opampCounter(status, "remote_configs_received") == 1);
  CHECK(StatusClient::opampCounter(status, "remote_configs_applied") == 1);
  CHECK(StatusClient::opampCounter(status, "remote_configs_failed") == 0);
  CHECK(StatusClient::reloads(status, "reloads_ok") == 1);
  CHECK(StatusClient::reloads(status, "reloads_failed") == 0);
  // The server hears APPLIED with its hash, and the effective config has the remote sections
  // over the local file.
  REQUIRE(waitForReport(*sensor.agent, mock, offered_at, kApplied, hash) >= 0);
  int with_config = -1;
  REQUIRE(until(*sensor.agent, [&] {
    with_config = findLast(mock.messages(), [](const OpampMockMessage& m) {
      return m.has("effectiveConfig") && effectiveConfigText(m).find("second") != std::string::npos;
    });
    return with_config >= 0;
  }));
  {
    const std::string effective =
        effectiveConfigText(mock.messages()[static_cast<std::size_t>(with_config)]);
    INFO(effective);
    CHECK_THAT(effective, Catch::Contains((dir / "extra.log").string()) &&
                              Catch::Contains((dir / "second").string()) &&
                              Catch::Contains("opamp-test") && Catch::Contains("commit_interval"));
  }
  // The new input reaches the new output.
  REQUIRE(until(*sensor.agent,
                [&] { return countWithPrefix(archivedLines(dir / "second"), "extra ") == 50; }));

  // The same config again: offered with the same hash, not applied again. The mock forgets the
  // agent, so it offers its config once more (with the request for the full state).
  CHECK(mock.setRemoteConfig({{"cistern.yaml", remote}}) == hash);
  const std::size_t forgotten_at = mock.messages().size();
  REQUIRE(mock.forgetAgents());
  int reoffered = -1;
  REQUIRE(until(*sensor.agent, [&] {
    const auto all = mock.messages();
    reoffered = findFrom(all, forgotten_at, offersRemoteConfig);
    return reoffered >= 0 && all.size() >= static_cast<std::size_t>(reoffered) + 3;
  }));
  {
    Messages all = mock.messages();
    // The agent's answer: the full state, with the config it runs reported APPLIED.
    const auto& next = all[static_cast<std::size_t>(reoffered) + 1];
    CHECK(next.fullState());
    CHECK(remoteStatus(next) == kApplied);
    CHECK(remoteHash(next) == hash);
    // And the mock stopped offering it.
    CHECK_FALSE(offersRemoteConfig(all.back()));
  }
  status = sensor.api.status();
  CHECK(StatusClient::opampCounter(status, "remote_configs_received") == 1);
  CHECK(StatusClient::opampCounter(status, "remote_configs_applied") == 1);
  CHECK(StatusClient::reloads(status, "reloads_ok") == 1);

  // Other text for the same config: a new hash, reported APPLIED, but nothing to change.
  const std::string same_config = "# the same config, commented\n" + remote;
  const std::string hash2 = mock.setRemoteConfig({{"cistern.yaml", same_config}});
  REQUIRE(hash2 != hash);
  status = sensor.requireRemote(hash2, "applied");
  CHECK(StatusClient::opampCounter(status, "remote_configs_received") == 2);
  CHECK(StatusClient::opampCounter(status, "remote_configs_applied") == 2);
  CHECK(StatusClient::reloads(status, "reloads_ok") == 1);
  CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
  sensor.stop();
  CHECK_THAT(sensor.agent->err(),
             Catch::Contains(fmt::format("remote config {}: the config did not change",
                                         hex(hash2).substr(0, 12))));
  // Nothing captured twice: every line once in the first archive.
  const auto first = archivedLines(dir / "first");
  CHECK(countWithPrefix(first, "app ") == 100);
  CHECK(countWithPrefix(first, "extra ") == 50);
  for (const auto& [line, n] : first) CHECK(n == 1);
}

TEST_CASE("a bad remote config is reported FAILED and the running config stays", "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  appendLines(dir / "app.log", "app", 0, 100);
  Sensor sensor(dir, opampSection(mock.url()), fileInput(dir, "app"),
                archiveOutput(dir, "archive"));
  sensor.require([](const json& s) { return connected(s); });

  struct Bad {
    const char* what;
    std::string text;
    std::vector<std::string> error_says;
    bool parse_error;  // the diagnostics name the config by its hash, with the line
  };
  const std::vector<Bad> bad = {
      {"YAML that does not parse", "inputs: [ this is not valid\n", {}, true},
      {"an unknown key",
       fmt::format("inputs:\n  - type: file\n    name: app\n    pahts: [{}]\n",
                   (dir / "app.log").string()),
       {"inputs[0].pahts", "unknown key", "paths"},
       true},
      {"an input that cannot start",
       remoteYaml(
           {fileInput(dir, "app"), fmt::format("  - type: pcap\n    name: evidence\n    file: {}",
                                               (dir / "missing.pcap").string())}),
       {"evidence", "missing.pcap"},
       false},
  };
  std::int64_t failed = 0;
  for (const auto& b : bad) {
    INFO(b.what);
    const std::size_t from = mock.messages().size();
    const std::string hash = mock.setRemoteConfig({{"cistern.yaml", b.text}});
    REQUIRE_FALSE(hash.empty());
    const json status = sensor.requireRemote(hash, "failed");
    ++failed;
    const std::string error = status["opamp"].value("remote_config_error", "");
    INFO("error: " << error);
    for (const auto& part : b.error_says) CHECK_THAT(error, Catch::Contains(part));
    if (b.parse_error) {
      CHECK_THAT(error,
                 Catch::StartsWith(fmt::format("remote config {}:", hex(hash).substr(0, 12))));
    }
    CHECK(StatusClient::names(status, "inputs") == Names{"app"});
    CHECK(StatusClient::names(status, "outputs") == Names{"archive"});
    CHECK(StatusClient::opampCounter(status, "remote_configs_failed") == failed);
    CHECK(StatusClient::opampCounter(status, "remote_configs_applied") == 0);
    CHECK(StatusClient::reloads(status, "reloads_ok") == 0);
    // The server hears FAILED with the same message.
    const int at = waitForReport(*sensor.agent, mock, from, kFailed, hash);
    REQUIRE(at >= 0);
    CHECK(remoteError(mock.messages()[static_cast<std::size_t>(at)]) == error);
  }
  // Only the config that got as far as starting its components counts as a failed reload.
  CHECK(StatusClient::reloads(sensor.api.status(), "reloads_failed") == 1);

  // The old config still captures and delivers.
  appendLines(dir / "app.log", "app", 100, 100);
  REQUIRE(until(*sensor.agent,
                [&] { return countWithPrefix(archivedLines(dir / "archive"), "app ") == 200; }));
  const json status = sensor.require([](const json& s) {
    return field(StatusClient::entry(s, "inputs", "app"), {"counters", "lines_stored"}) == 200;
  });
  CHECK(status["opamp"].value("remote_config_status", "") == "failed");
  sensor.stop();
  for (const auto& [line, n] : archivedLines(dir / "archive")) CHECK(n == 1);
}

TEST_CASE("an agent restarted while the server is down runs the remote config it applied last",
          "[integration]") {
  OpampMockOptions options;
  options.port = cistern::testing::listenPort();
  REQUIRE(options.port > 0);
  auto mock = std::make_unique<OpampMock>(options);
  REQUIRE_MOCK(*mock);
  const std::string url = mock->url();
  TempDir dir;
  appendLines(dir / "app.log", "app", 0, 100);
  appendLines(dir / "extra.log", "extra", 0, 50);
  Sensor sensor(dir, opampSection(url), fileInput(dir, "app"), archiveOutput(dir, "first"));
  sensor.require([](const json& s) { return connected(s); });

  const std::string remote =
      remoteYaml({fileInput(dir, "app"), fileInput(dir, "extra")},
                 {archiveOutput(dir, "first"), archiveOutput(dir, "second")});
  const std::string hash = mock->setRemoteConfig({{"cistern.yaml", remote}});
  REQUIRE_FALSE(hash.empty());
  sensor.requireRemote(hash, "applied");
  CHECK(readFile(dir / "data" / "opamp" / "remote_config.yaml") == remote);
  CHECK_THAT(readFile(dir / "data" / "opamp" / "remote_config.hash"), Catch::StartsWith(hex(hash)));
  sensor.stop();
  mock->stop();
  mock.reset();

  // No server: the agent starts on the local file with the stored remote config over it.
  sensor.start();
  json status = sensor.require(
      [](const json& s) { return StatusClient::opampCounter(s, "requests_failed") >= 1; });
  CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
  CHECK(StatusClient::names(status, "outputs") == Names{"first", "second"});
  CHECK(status["opamp"].value("remote_config_status", "") == "applied");
  CHECK(status["opamp"].value("remote_config_hash", "") == hex(hash));
  CHECK_FALSE(connected(status));
  CHECK(status["opamp"].value("state", "") == "unreachable");
  CHECK_FALSE(status["opamp"].value("last_error", "").empty());
  CHECK(StatusClient::opampCounter(status, "remote_configs_received") == 0);
  // What the remote config added captures: lines appended now reach its output.
  appendLines(dir / "extra.log", "extra", 50, 25);
  REQUIRE(until(*sensor.agent,
                [&] { return countWithPrefix(archivedLines(dir / "second"), "extra ") == 75; }));

  // The server comes back with the same config: the agent reports it APPLIED and does not
  // apply it again.
  mock = std::make_unique<OpampMock>(options);
  REQUIRE_MOCK(*mock);
  CHECK(mock->setRemoteConfig({{"cistern.yaml", remote}}) == hash);
  REQUIRE(waitForReport(*sensor.agent, *mock, 0, kApplied, hash) >= 0);
  status = sensor.require([](const json& s) { return connected(s); });
  REQUIRE(until(*sensor.agent, [&] { return mock->messages().size() >= 3; }));
  status = sensor.api.status();
  CHECK(StatusClient::opampCounter(status, "remote_configs_received") == 0);
  CHECK(StatusClient::reloads(status, "reloads_ok") == 0);
  CHECK_FALSE(offersRemoteConfig(mock->messages().back()));

  // SIGHUP reloads the local file with the stored remote config still on top.
  ::kill(sensor.agent->pid(), SIGHUP);
  REQUIRE(until(*sensor.agent, [&] {
    return sensor.agent->err().find("SIGHUP: the config did not change") != std::string::npos;
  }));
  status = sensor.api.status();
  CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
  CHECK(StatusClient::names(status, "outputs") == Names{"first", "second"});
  CHECK(StatusClient::reloads(status, "reloads_failed") == 0);

  // An empty config map withdraws it: the local file alone runs, and nothing is kept.
  const std::string withdrawn = mock->setRemoteConfig({});
  REQUIRE_FALSE(withdrawn.empty());
  status = sensor.requireRemote(withdrawn, "applied");
  CHECK(StatusClient::names(status, "inputs") == Names{"app"});
  CHECK(StatusClient::names(status, "outputs") == Names{"first"});
  CHECK(StatusClient::reloads(status, "reloads_ok") == 1);
  CHECK_FALSE(fs::exists(dir / "data" / "opamp" / "remote_config.yaml"));
  CHECK_FALSE(fs::exists(dir / "data" / "opamp" / "remote_config.hash"));
  sensor.stop();
  CHECK_THAT(sensor.agent->err(),
             Catch::Contains("starting with the remote config applied earlier (hash " +
                             hex(hash).substr(0, 12)));
}

TEST_CASE("a remote config that changes a local-only section is refused, naming it",
          "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  appendLines(dir / "app.log", "app", 0, 100);
  appendLines(dir / "extra.log", "extra", 0, 10);
  Sensor sensor(dir, opampSection(mock.url()), fileInput(dir, "app"),
                archiveOutput(dir, "archive"));
  sensor.require([](const json& s) { return connected(s); });
  const std::string inputs = remoteYaml({fileInput(dir, "app"), fileInput(dir, "extra")});

  struct Refused {
    std::string section;
    std::string text;
  };
  const std::vector<Refused> refused = {
      {"buffer", "buffer:\n  max_size: 32MiB\n  commit_interval: 5ms\n" + inputs},
      {"opamp", "opamp:\n  endpoint: http://127.0.0.1:9/v1/opamp\n" + inputs},
      {"agent",
       "agent:\n  id: someone-else\n  data_dir: " + (dir / "data").string() + "\n" + inputs},
  };
  std::int64_t failed = 0;
  for (const auto& r : refused) {
    INFO(r.section);
    const std::size_t from = mock.messages().size();
    const std::string hash = mock.setRemoteConfig({{"cistern.yaml", r.text}});
    REQUIRE_FALSE(hash.empty());
    const json status = sensor.requireRemote(hash, "failed");
    ++failed;
    const std::string error = status["opamp"].value("remote_config_error", "");
    CHECK_THAT(error, Catch::Contains("'" + r.section + "' is local only"));
    CHECK(StatusClient::names(status, "inputs") == Names{"app"});
    CHECK(StatusClient::opampCounter(status, "remote_configs_failed") == failed);
    CHECK(StatusClient::reloads(status, "reloads_ok") == 0);
    const int at = waitForReport(*sensor.agent, mock, from, kFailed, hash);
    REQUIRE(at >= 0);
    CHECK_THAT(remoteError(mock.messages()[static_cast<std::size_t>(at)]),
               Catch::Contains("'" + r.section + "' is local only"));
  }
  CHECK_FALSE(fs::exists(dir / "data" / "opamp" / "remote_config.yaml"));

  // The same sections as the local file are no change, so the rest applies.
  const std::string hash = mock.setRemoteConfig(
      {{"cistern.yaml", "buffer:\n  max_size: 64MiB\n  commit_interval: 5ms\n" + inputs}});
  const json status = sensor.requireRemote(hash, "applied");
  CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
  CHECK(StatusClient::reloads(status, "reloads_ok") == 1);
  sensor.stop();
}

TEST_CASE("with config_public_key_file, only a validly signed remote config is applied",
          "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  const std::string key = (dir / "signer.key").string();
  const std::string pub = (dir / "signer.pub").string();
  openssl({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key});
  openssl({"pkey", "-in", key, "-pubout", "-out", pub});
  // The base64 of the signature over `body`, as an operator makes it (openssl dgst | base64).
  int signed_count = 0;
  const auto sign = [&](const std::string& body) {
    const auto stem = dir / fmt::format("config{}", signed_count++);
    writeFile(stem.string() + ".yaml", body);
    openssl(
        {"dgst", "-sha256", "-sign", key, "-out", stem.string() + ".sig", stem.string() + ".yaml"});
    openssl({"base64", "-in", stem.string() + ".sig", "-out", stem.string() + ".b64"});
    return readFile(stem.string() + ".b64");
  };
  for (const char* name : {"app", "extra", "other"}) {
    appendLines(dir / (std::string(name) + ".log"), name, 0, 20);
  }
  Sensor sensor(dir, opampSection(mock.url(), "  config_public_key_file: " + pub + "\n"),
                fileInput(dir, "app"), archiveOutput(dir, "archive"));
  sensor.require([](const json& s) { return connected(s); });

  // Signed: applied.
  const std::string good = remoteYaml({fileInput(dir, "app"), fileInput(dir, "extra")});
  const std::string good_hash =
      mock.setRemoteConfig({{"cistern.yaml", good}, {"cistern.yaml.sig", sign(good)}});
  json status = sensor.requireRemote(good_hash, "applied");
  CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
  CHECK(StatusClient::opampCounter(status, "remote_configs_refused") == 0);

  // A signature over other text, then none: refused by the client before the agent sees them,
  // reported FAILED, counted as refused; the signed config runs on.
  const std::string other = remoteYaml({fileInput(dir, "app"), fileInput(dir, "other")});
  struct Unsigned {
    const char* what;
    std::map<std::string, std::string> files;
    const char* error_says;
  };
  const std::vector<Unsigned> cases = {
      {"a signature that does not verify",
       {{"cistern.yaml", other}, {"cistern.yaml.sig", sign(other + "# signed, then changed\n")}},
       "does not verify"},
      {"no signature", {{"cistern.yaml", other}}, "cistern.yaml.sig"},
  };
  std::int64_t refused = 0;
  for (const auto& c : cases) {
    INFO(c.what);
    const std::size_t from = mock.messages().size();
    const std::string hash = mock.setRemoteConfig(c.files);
    REQUIRE_FALSE(hash.empty());
    status = sensor.requireRemote(hash, "failed");
    ++refused;
    CHECK_THAT(status["opamp"].value("remote_config_error", ""), Catch::Contains(c.error_says));
    CHECK(StatusClient::opampCounter(status, "remote_configs_refused") == refused);
    CHECK(StatusClient::opampCounter(status, "remote_configs_received") == 1 + refused);
    CHECK(StatusClient::opampCounter(status, "remote_configs_applied") == 1);
    CHECK(StatusClient::opampCounter(status, "remote_configs_failed") == 0);
    CHECK(StatusClient::names(status, "inputs") == Names{"app", "extra"});
    CHECK(StatusClient::reloads(status, "reloads_ok") == 1);
    CHECK(StatusClient::reloads(status, "reloads_failed") == 0);
    const int at = waitForReport(*sensor.agent, mock, from, kFailed, hash);
    REQUIRE(at >= 0);
    CHECK_THAT(remoteError(mock.messages()[static_cast<std::size_t>(at)]),
               Catch::Contains(c.error_says));
  }
  // What was applied last is what is kept for the next start.
  CHECK(readFile(dir / "data" / "opamp" / "remote_config.yaml") == good);
  sensor.stop();
  CHECK(countWithPrefix(archivedLines(dir / "archive"), "other ") == 0);
}

TEST_CASE("a remote config change during heavy capture loses nothing and reports the capture gap",
          "[integration]") {
  REQUIRE(::geteuid() == 0);  // live capture on lo; the suite runs as root (CI does)
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  const auto inputs = [&](const std::string& filter) {
    return fileInput(dir, "app") + fmt::format(R"(
  - type: pcap
    name: loopback
    interface: lo
    filter: "{}")",
                                               filter);
  };
  Sensor sensor(dir, opampSection(mock.url()), inputs("udp port 9"), archiveOutput(dir, "archive"));
  sensor.require([](const json& s) { return connected(s); });

  // Heavy capture: 30,000 lines at about 10,000 per second while the remote config replaces the
  // packet input (the file input is the same in both configs and keeps running).
  constexpr std::size_t kLines = 30000;
  std::atomic<bool> written{false};
  std::thread writer([&] {
    appendLines(dir / "app.log", "line", 0, kLines, 10000);
    written = true;
  });
  sensor.agent->idle(500ms);
  const std::string hash =
      mock.setRemoteConfig({{"cistern.yaml", "inputs:\n" + inputs("udp port 19") + "\n"}});
  REQUIRE_FALSE(hash.empty());
  json status;
  const bool applied = waitStatus(*sensor.agent, sensor.api, status, [&](const json& s) {
    return text(s, {"opamp", "remote_config_hash"}) == hex(hash) &&
           text(s, {"opamp", "remote_config_status"}) == "applied";
  });
  const bool during_capture = !written.load();
  writer.join();
  INFO(status.dump());
  REQUIRE(applied);
  CHECK(during_capture);
  REQUIRE(until(
      *sensor.agent, [&] { return archivedLines(dir / "archive").size() >= kLines; }, 60s));
  const auto report = sensor.stop();
  INFO(sensor.agent->err());
  REQUIRE(report.is_object());
  const auto lines = archivedLines(dir / "archive");
  CHECK(countWithPrefix(lines, "line ") == kLines);
  std::size_t duplicates = 0;
  for (const auto& [line, n] : lines) duplicates += static_cast<std::size_t>(n - 1);
  CHECK(duplicates == 0);
  REQUIRE(report["reconfigurations"].size() == 1);
  CHECK(report["reconfigurations"][0]["input"] == "loopback");
  const double gap_ms = report["reconfigurations"][0]["gap_ms"].get<double>();
  WARN("capture gap of the packet input replaced by the remote config: " << gap_ms << " ms");
  CHECK(gap_ms < 1000);
  CHECK_THAT(sensor.agent->err(),
             Catch::Contains(fmt::format("remote config {}: input=loopback replaced; capture gap",
                                         hex(hash).substr(0, 12))));
  CHECK(report["buffer"].value("evicted_records", 1) == 0);
  CHECK(report["buffer"].value("refused_queue_full", 1) == 0);
}

TEST_CASE("/metrics during a run parses and matches cistern buffer inspect after the stop",
          "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  constexpr std::size_t kPackets = 2000;
  writePcap(dir / "evidence.pcap", kPackets);
  const int dead_port = cistern::testing::listenPort();
  REQUIRE(dead_port > 0);
  Sensor sensor(dir, opampSection(mock.url()),
                fmt::format("  - type: pcap\n    name: evidence\n    file: {}\n    replay: fast",
                            (dir / "evidence.pcap").string()),
                archiveOutput(dir, "archive") + "\n" + deadOutput("dead", dead_port));

  // Every scrape is valid exposition text with HELP and TYPE for each family and names by the
  // conventions.
  std::size_t scrapes = 0;
  const auto scrape = [&]() -> cistern::testing::PromExposition {
    const auto reply = sensor.api.get("/metrics");
    INFO(reply.error);
    REQUIRE(reply.status == 200);
    auto parsed = cistern::testing::parsePrometheusText(reply.body);
    if (!parsed) FAIL("scrape " << scrapes << ": " << parsed.error().describe());
    const auto problems = cistern::testing::namingProblems(*parsed, "cistern_");
    for (const auto& p : problems) CHECK(p.empty());
    ++scrapes;
    return *parsed;
  };
  sensor.require([](const json&) { return true; });  // the status API answers
  scrape();

  // The ring goes quiet: the file read to its end, the archive has everything, the dead output
  // nothing. Then two scrapes in a row with the same figures.
  sensor.require([&](const json& s) {
    const auto in = StatusClient::entry(s, "inputs", "evidence");
    const auto archive = StatusClient::entry(s, "outputs", "archive");
    return field(in, {"finished"}) == true && field(s, {"buffer", "records"}) == kPackets &&
           field(archive, {"buffer", "pending_records"}) == 0;
  });
  const std::vector<std::pair<std::string, cistern::testing::PromLabels>> compared = {
      {"cistern_buffer_records", {}},
      {"cistern_buffer_frames", {}},
      {"cistern_buffer_used_bytes", {}},
      {"cistern_buffer_appended_records_total", {}},
      {"cistern_buffer_appended_frames_total", {}},
      {"cistern_buffer_deleted_frames_total", {}},
      {"cistern_buffer_evicted_records_total", {}},
      {"cistern_buffer_consumer_pending_records", {{"consumer", "archive"}}},
      {"cistern_buffer_consumer_pending_frames", {{"consumer", "archive"}}},
      {"cistern_buffer_consumer_acked_records_total", {{"consumer", "archive"}}},
      {"cistern_buffer_consumer_evicted_records_total", {{"consumer", "archive"}}},
      {"cistern_buffer_consumer_corrupt_records_total", {{"consumer", "archive"}}},
      {"cistern_buffer_consumer_pending_records", {{"consumer", "dead"}}},
      {"cistern_buffer_consumer_pending_frames", {{"consumer", "dead"}}},
      {"cistern_buffer_consumer_acked_records_total", {{"consumer", "dead"}}},
      {"cistern_buffer_consumer_evicted_records_total", {{"consumer", "dead"}}},
      {"cistern_buffer_consumer_corrupt_records_total", {{"consumer", "dead"}}},
      {"cistern_output_records_acked_total", {{"output", "archive"}, {"type", "file"}}},
  };
  const auto figures = [&](const cistern::testing::PromExposition& e) {
    std::vector<double> out;
    for (const auto& [name, labels] : compared) {
      const auto v = e.value(name, labels);
      INFO(name);
      REQUIRE(v.has_value());
      out.push_back(*v);
    }
    return out;
  };
  cistern::testing::PromExposition last = scrape();
  std::vector<double> previous = figures(last);
  REQUIRE(until(*sensor.agent, [&] {
    last = scrape();
    auto now = figures(last);
    const bool same = now == previous;
    previous = std::move(now);
    return same;
  }));
  // The families a run has, the control plane's among them.
  for (const char* family :
       {"cistern_input_up", "cistern_output_records_acked_total", "cistern_buffer_records",
        "cistern_reloads_total", "cistern_uptime_seconds", "cistern_opamp_requests_ok_total",
        "cistern_opamp_heartbeat_interval_seconds", "cistern_opamp_connected",
        "cistern_opamp_remote_config_failed"}) {
    INFO(family);
    CHECK(last.family(family) != nullptr);
  }
  CHECK(last.value("cistern_opamp_connected") == 1.0);
  CHECK(last.value("cistern_opamp_heartbeat_interval_seconds") == 1.0);
  CHECK(last.value("cistern_input_up", {{"input", "evidence"}, {"type", "pcap"}}) == 1.0);
  CHECK(last.value("cistern_buffer_records") == static_cast<double>(kPackets));
  CHECK(last.value("cistern_buffer_consumer_pending_records", {{"consumer", "dead"}}) ==
        static_cast<double>(kPackets));
  CHECK(last.value("cistern_buffer_consumer_acked_records_total", {{"consumer", "archive"}}) ==
        static_cast<double>(kPackets));
  CHECK(last.value("cistern_reloads_total", {{"result", "ok"}}) == 0.0);

  const auto report = sensor.stop();
  REQUIRE(report.is_object());
  const auto inspected =
      cistern::testing::run({cistern::testing::binary("agent/cistern"), "buffer", "inspect",
                             "--data-dir", (dir / "data").string(), "--json"},
                            30s);
  INFO(inspected.err);
  REQUIRE(inspected.exit_code == 0);
  const json ring = json::parse(inspected.out);
  const auto at = [&](const std::string& name, cistern::testing::PromLabels labels = {}) {
    const auto v = last.value(name, std::move(labels));
    REQUIRE(v.has_value());
    return static_cast<std::uint64_t>(*v);
  };
  CHECK(ring.value("records", 0U) == at("cistern_buffer_records"));
  CHECK(ring.value("frames", 0U) == at("cistern_buffer_frames"));
  CHECK(ring.value("used_bytes", 0U) == at("cistern_buffer_used_bytes"));
  CHECK(ring.value("appended_records", 0U) == at("cistern_buffer_appended_records_total"));
  CHECK(ring.value("appended_frames", 0U) == at("cistern_buffer_appended_frames_total"));
  CHECK(ring.value("deleted_frames", 0U) == at("cistern_buffer_deleted_frames_total"));
  CHECK(ring.value("evicted_records", 0U) == at("cistern_buffer_evicted_records_total"));
  CHECK(ring.value("records", 0U) == kPackets);
  REQUIRE(ring["consumers"].size() == 2);
  for (const auto& c : ring["consumers"]) {
    const std::string name = c.value("name", "");
    INFO("consumer " << name);
    const cistern::testing::PromLabels labels = {{"consumer", name}};
    CHECK(c.value("pending_records", 1U) == at("cistern_buffer_consumer_pending_records", labels));
    CHECK(c.value("pending_frames", 1U) == at("cistern_buffer_consumer_pending_frames", labels));
    CHECK(c.value("acked_records", 1U) ==
          at("cistern_buffer_consumer_acked_records_total", labels));
    CHECK(c.value("dropped_unsent_records", 1U) ==
          at("cistern_buffer_consumer_evicted_records_total", labels));
    CHECK(c.value("corrupt_records", 1U) ==
          at("cistern_buffer_consumer_corrupt_records_total", labels));
    // The report of the run says the same.
    CHECK(AgentProcess::output(report, name)["buffer"].value("acked_records", 1U) ==
          c.value("acked_records", 0U));
    CHECK(AgentProcess::output(report, name)["buffer"].value("pending_records", 1U) ==
          c.value("pending_records", 0U));
  }
  CHECK(at("cistern_output_records_acked_total", {{"output", "archive"}, {"type", "file"}}) ==
        kPackets);
  CHECK(report["buffer"].value("records", 0U) == ring.value("records", 1U));
  CHECK(report["buffer"].value("frames", 0U) == ring.value("frames", 1U));
  WARN(scrapes << " scrapes of /metrics, " << last.families.size() << " families, "
               << last.sampleCount() << " samples");
}

// A remote config's `log.level` reaches the loggers, not only the runtime's config.
TEST_CASE("a remote config's log level takes effect", "[integration]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  TempDir dir;
  appendLines(dir / "app.log", "app", 0, 10);
  Sensor sensor(dir, opampSection(mock.url()), fileInput(dir, "app"),
                archiveOutput(dir, "archive"));
  sensor.require([](const json& s) { return connected(s); });
  const std::string hash = mock.setRemoteConfig({{"cistern.yaml", "log:\n  level: warn\n"}});
  REQUIRE_FALSE(hash.empty());
  sensor.requireRemote(hash, "applied");
  sensor.agent->idle(200ms);
  const std::size_t mark = sensor.agent->err().size();
  // AgentProcess runs with --stats-interval 1: every second, each input's counters at info.
  sensor.agent->idle(2500ms);
  const std::string after = sensor.agent->err().substr(mark);
  INFO(after);
  CHECK(after.find("[info]") == std::string::npos);
  sensor.stop();
}
