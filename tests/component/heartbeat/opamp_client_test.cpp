// OpampClient against a real OpAMP server, @elastic/mockopampserver (tests/peers/opamp_mock.js),
// which decodes what the client sends with its own protobuf implementation: heartbeat cadence
// and content, changes reported sooner, the full state when the server asks, remote configs
// (delivered, reported APPLYING/APPLIED/FAILED, not delivered twice, signatures), a server that is
// down, failing or busy (backoff, Retry-After, retry_info), TLS and mutual TLS, and
// AgentDisconnect at stop. Intervals are shortened to a few hundred milliseconds.
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/heartbeat/opamp.h"
#include "cistern/platform/event_loop.h"
#include "opamp_mock.h"
#include "ports.h"
#include "subprocess.h"
#include "temp_dir.h"
#include "test_pki.h"

namespace cistern::heartbeat {
namespace {

using namespace std::chrono_literals;
using testing::OpampMock;
using testing::OpampMockMessage;
using testing::OpampMockOptions;
using Messages = std::vector<OpampMockMessage>;

constexpr auto kWait = 20s;
const InstanceUid kUid = {0x01, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0x7e, 0x5f,
                          0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b};
const std::string kUidBase64 = "AZChssPUfl+KmwwdLj9KWw==";
const std::string kEffectiveYaml = "inputs:\n  - name: eth0\n    type: pcap\n";

// The agent's side: health and effective config set by the test, remote configs collected.
class FakeAgent : public OpampAgent {
 public:
  FakeAgent() {
    ComponentHealth output;
    output.healthy = true;
    output.status = "healthy";
    output.attributes = {{"backlog_bytes", "0"}, {"backlog_records", "0"}};
    ComponentHealth input;
    input.healthy = true;
    input.status = "running";
    input.start_time_ns = 1700000000000000000ULL;
    input.attributes = {{"capture_dropped_packets", "3"}};
    health_.healthy = true;
    health_.status = "running";
    health_.start_time_ns = 1700000000000000000ULL;
    health_.components = {{"output:otlp", output}, {"input:eth0", input}};
  }

  ComponentHealth health() override {
    std::lock_guard lk(mu_);
    return health_;
  }
  std::string effectiveConfig() override {
    std::lock_guard lk(mu_);
    return effective_;
  }
  void onRemoteConfig(RemoteConfig config) override {
    std::lock_guard lk(mu_);
    configs_.push_back(std::move(config));
    cv_.notify_all();
  }

  void setHealth(const ComponentHealth& h) {
    std::lock_guard lk(mu_);
    health_ = h;
  }
  ComponentHealth currentHealth() {
    std::lock_guard lk(mu_);
    return health_;
  }
  bool waitForConfigs(std::size_t n, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return configs_.size() >= n; });
  }
  std::vector<RemoteConfig> configs() {
    std::lock_guard lk(mu_);
    return configs_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  ComponentHealth health_;
  std::string effective_ = kEffectiveYaml;
  std::vector<RemoteConfig> configs_;
};

OpampOptions fastOptions(const std::string& endpoint) {
  OpampOptions o;
  o.endpoint = endpoint;
  o.heartbeat_interval = 300ms;
  o.change_delay = 50ms;
  o.max_backoff = 400ms;
  o.timeout = 5s;
  return o;
}

AgentDescription sampleDescription() {
  AgentDescription d;
  d.service_version = "0.9.1";
  d.host_name = "tap-17";
  d.os_type = "linux";
  d.os_description = "Debian GNU/Linux 12 (bookworm)";
  d.agent_id = "tap-17-a";
  return d;
}

// A loop, a fake agent and a client; the client is stopped before the loop.
struct Harness {
  explicit Harness(const OpampOptions& options, std::string applied_hash = {}) {
    auto started = platform::EventLoop::start("opamp-test");
    REQUIRE(started);
    loop = std::move(*started);
    auto made = OpampClient::create(*loop, options, kUid, sampleDescription(), agent,
                                    std::move(applied_hash));
    if (!made) FAIL(made.error().describe());
    client = std::move(*made);
  }
  ~Harness() {
    if (client) client->stop(0ms);
    client.reset();
    loop->stop();
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  std::uint64_t counter(const std::string& name) const {
    for (const auto& c : client->status().counters) {
      if (c.name == name) return c.value;
    }
    FAIL("no counter " << name);
    return 0;
  }
  // Waits until `name` reaches at least `value`.
  bool waitForCounter(const std::string& name, std::uint64_t value,
                      std::chrono::milliseconds timeout = kWait) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (counter(name) >= value) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  FakeAgent agent;
  std::unique_ptr<platform::EventLoop> loop;
  std::unique_ptr<OpampClient> client;
};

#define REQUIRE_MOCK(mock)           \
  do {                               \
    INFO((mock).error());            \
    REQUIRE((mock).error().empty()); \
  } while (false)

// A mock server and a client made to report to it.
struct Running {
  explicit Running(const std::function<void(OpampOptions&)>& adjust = {}) {
    REQUIRE_MOCK(mock);
    auto options = fastOptions(mock.url());
    if (adjust) adjust(options);
    harness = std::make_unique<Harness>(options);
  }
  // Starts the client and waits until its first report was answered.
  void startAnswered() const {
    harness->client->start();
    REQUIRE(mock.waitForMessages(1, kWait));
    REQUIRE(harness->waitForCounter("requests_ok", 1));
  }

  [[nodiscard]] Harness& h() const { return *harness; }

  OpampMock mock;
  std::unique_ptr<Harness> harness;  // destroyed first: the client stops before the server
};

// Options with a heartbeat interval long enough that only changes make reports.
void quiet(OpampOptions& o) { o.heartbeat_interval = 60s; }

std::string remoteStatus(const OpampMockMessage& m) {
  return m.a2s["remoteConfigStatus"].value("status", "");
}
std::string remoteHash(const OpampMockMessage& m) {
  return OpampMockMessage::bytes(m.a2s["remoteConfigStatus"]["lastRemoteConfigHash"]);
}
// The index of the first message from `from` on that satisfies `pred`; -1 when none.
template <typename Pred>
int findFrom(const Messages& m, std::size_t from, Pred pred) {
  for (std::size_t i = from; i < m.size(); ++i) {
    if (pred(m[i])) return static_cast<int>(i);
  }
  return -1;
}
auto hasStatus(const std::string& status) {
  return [status](const OpampMockMessage& m) {
    return m.has("remoteConfigStatus") && remoteStatus(m) == status;
  };
}
bool waitForStatus(OpampMock& mock, const std::string& status) {
  return mock.waitFor([&](const Messages& m) { return findFrom(m, 0, hasStatus(status)) >= 0; });
}

TEST_CASE("heartbeats: full state first, then the cadence with only the changes", "[component]") {
  Running r;
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  h.client->start();
  REQUIRE(mock.waitForMessages(6, kWait));
  const Messages m = mock.messages();

  for (std::size_t i = 0; i < m.size(); ++i) {
    INFO("message " << i);
    CHECK(m[i].status == 200);
    CHECK(m[i].a2s.value("instanceUid", "") == kUidBase64);
    CHECK(m[i].sequenceNum() == i + 1);
    CHECK(OpampMockMessage::number(m[i].a2s, "capabilities") == 0x3807);
    CHECK_FALSE(m[i].has("agentDisconnect"));
    // The mock did not have to ask for anything.
    CHECK((OpampMockMessage::number(m[i].s2a, "flags") & 1U) == 0);
  }

  // The first carries everything.
  const auto& first = m[0].a2s;
  REQUIRE(m[0].fullState());
  const auto ident =
      OpampMockMessage::attributes(first["agentDescription"]["identifyingAttributes"]);
  CHECK(ident.at("service.name") == "cistern");
  CHECK(ident.at("service.version") == "0.9.1");
  CHECK(ident.at("service.instance.id") == "tap-17-a");
  const auto non_ident =
      OpampMockMessage::attributes(first["agentDescription"]["nonIdentifyingAttributes"]);
  CHECK(non_ident.at("host.name") == "tap-17");
  CHECK(non_ident.at("os.type") == "linux");
  CHECK(non_ident.at("cistern.instance_uid") == "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");

  const auto& health = first["health"];
  CHECK(health.value("healthy", false));
  CHECK(health.value("status", "") == "running");
  CHECK(OpampMockMessage::number(health, "startTimeUnixNano") == 1700000000000000000ULL);
  const auto& components = health["componentHealthMap"];
  REQUIRE(components.contains("input:eth0"));
  REQUIRE(components.contains("output:otlp"));
  CHECK(components["input:eth0"].value("status", "") == "running capture_dropped_packets=3");
  CHECK(components["output:otlp"].value("status", "") ==
        "healthy backlog_bytes=0 backlog_records=0");

  const auto& file = first["effectiveConfig"]["configMap"]["configMap"]["cistern.yaml"];
  CHECK(OpampMockMessage::bytes(file["body"]) == kEffectiveYaml);
  CHECK(file.value("contentType", "") == "text/yaml");
  CHECK(remoteStatus(m[0]) == "RemoteConfigStatuses_UNSET");
  CHECK(remoteHash(m[0]).empty());

  // Nothing changed afterwards: heartbeats carry no state.
  for (std::size_t i = 1; i < m.size(); ++i) {
    INFO("message " << i);
    CHECK_FALSE(m[i].has("agentDescription"));
    CHECK_FALSE(m[i].has("health"));
    CHECK_FALSE(m[i].has("effectiveConfig"));
    CHECK_FALSE(m[i].has("remoteConfigStatus"));
  }

  // Cadence: 300 ms apart (the timer runs from each answer).
  for (std::size_t i = 2; i < m.size(); ++i) {
    const auto gap =
        std::chrono::duration_cast<std::chrono::milliseconds>(m[i].received - m[i - 1].received);
    INFO("gap before message " << i << ": " << gap.count() << " ms");
    CHECK(gap >= 250ms);
    CHECK(gap <= 900ms);
  }
  CHECK(h.waitForCounter("requests_ok", 6));  // the mock prints before the client reads
  CHECK(h.counter("requests_failed") == 0);
  CHECK(h.counter("heartbeat_interval_ms") == 300);
  CHECK(h.client->status().connected);
  CHECK(h.client->status().last_error.empty());
  CHECK(mock.diagnostics() == "unparsed:  errors:  stderr: ");
}

TEST_CASE("a change is reported after change_delay, not at the next heartbeat", "[component]") {
  Running r([](OpampOptions& o) {
    quiet(o);
    o.change_delay = 100ms;
  });
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  r.startAnswered();

  auto health = h.agent.currentHealth();
  health.healthy = false;
  auto& output = health.components["output:otlp"];
  output.healthy = false;
  output.status = "down";
  output.last_error = "connection refused";
  output.attributes["backlog_records"] = "1200";
  h.agent.setHealth(health);
  const auto changed_at = std::chrono::steady_clock::now();
  // A burst of notifications makes one report.
  for (int i = 0; i < 5; ++i) h.client->notifyChanged();
  REQUIRE(mock.waitForMessages(2, 5s));
  std::this_thread::sleep_for(300ms);
  const Messages m = mock.messages();
  REQUIRE(m.size() == 2);
  CHECK(m[1].received - changed_at < 2s);
  CHECK(m[1].sequenceNum() == 2);
  REQUIRE(m[1].has("health"));
  CHECK_FALSE(m[1].has("agentDescription"));
  CHECK_FALSE(m[1].has("effectiveConfig"));
  CHECK_FALSE(m[1].a2s["health"].value("healthy", true));
  const auto& out = m[1].a2s["health"]["componentHealthMap"]["output:otlp"];
  CHECK(out.value("status", "") == "down backlog_bytes=0 backlog_records=1200");
  CHECK(out.value("lastError", "") == "connection refused");
}

TEST_CASE("the server's heartbeat interval replaces the configured one", "[component]") {
  Running r(quiet);
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  REQUIRE(mock.setHeartbeatInterval(1));
  h.client->start();
  REQUIRE(mock.waitForMessages(4, 10s));
  const Messages m = mock.messages();
  for (std::size_t i = 2; i < m.size(); ++i) {
    const auto gap = m[i].received - m[i - 1].received;
    CHECK(gap >= 900ms);
    CHECK(gap <= 2s);
  }
  CHECK(h.counter("heartbeat_interval_ms") == 1000);
}

TEST_CASE("ReportFullState: the next report carries everything, at once", "[component]") {
  Running r(quiet);
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  r.startAnswered();
  SECTION("asked explicitly") { REQUIRE(mock.requestFullState()); }
  SECTION("a server that lost its state asks by itself") { REQUIRE(mock.forgetAgents()); }
  h.client->notifyChanged();  // a report, answered with the flag
  REQUIRE(mock.waitForMessages(3, 5s));
  const Messages m = mock.messages();
  CHECK_FALSE(m[1].fullState());
  CHECK((OpampMockMessage::number(m[1].s2a, "flags") & 1U) == 1);
  CHECK(m[2].fullState());
  CHECK(m[2].sequenceNum() == 3);
  // At once, not after the 60 s heartbeat.
  CHECK(m[2].received - m[1].received < 2s);
  CHECK(h.counter("full_state_reports") == 2);
}

TEST_CASE("a remote config reaches the agent once and is reported APPLYING, then APPLIED",
          "[component]") {
  Running r;
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  const std::string yaml = "outputs:\n  - name: otlp\n    type: otlp\n";
  const std::string hash =
      mock.setRemoteConfig({{"cistern.yaml", yaml}, {"README", "managed by the fleet\n"}});
  REQUIRE(hash.size() == 32);
  h.client->start();

  REQUIRE(h.agent.waitForConfigs(1));
  const auto config = h.agent.configs()[0];
  CHECK(config.hash == hash);
  REQUIRE(config.files.size() == 2);
  CHECK(config.files.at("cistern.yaml").body == yaml);
  CHECK(config.files.at("cistern.yaml").content_type == "text/yaml");
  CHECK(config.files.at("README").body == "managed by the fleet\n");

  REQUIRE(waitForStatus(mock, "RemoteConfigStatuses_APPLYING"));
  h.client->reportRemoteConfig(hash, RemoteConfigState::kApplied, {});
  REQUIRE(waitForStatus(mock, "RemoteConfigStatuses_APPLIED"));
  Messages m = mock.messages();
  const int applying = findFrom(m, 0, hasStatus("RemoteConfigStatuses_APPLYING"));
  const int applied = findFrom(m, 0, hasStatus("RemoteConfigStatuses_APPLIED"));
  CHECK(applying < applied);
  CHECK(remoteHash(m[static_cast<std::size_t>(applying)]) == hash);
  CHECK(remoteHash(m[static_cast<std::size_t>(applied)]) == hash);
  // The mock offered it in the first answer only: the reports told it the agent has it.
  CHECK(m[0].s2a.contains("remoteConfig"));
  CHECK_FALSE(m.back().s2a.contains("remoteConfig"));

  // A restarted server offers it again: the agent does not get it twice, and no new APPLYING.
  REQUIRE(mock.forgetAgents());
  const auto before = m.size();
  REQUIRE(mock.waitFor([&](const Messages& all) {
    const int offered = findFrom(all, before, [](const OpampMockMessage& x) {
      return x.s2a.is_object() && x.s2a.contains("remoteConfig");
    });
    return offered >= 0 && all.size() >= static_cast<std::size_t>(offered) + 3;
  }));
  m = mock.messages();
  CHECK(findFrom(m, before, hasStatus("RemoteConfigStatuses_APPLYING")) < 0);
  CHECK(findFrom(m, before, hasStatus("RemoteConfigStatuses_APPLIED")) >= 0);
  CHECK(h.agent.configs().size() == 1);
  CHECK(h.counter("remote_configs_received") == 1);
  CHECK(h.counter("remote_configs_applied") == 1);
  const auto status = h.client->status();
  CHECK(status.remote_config_state == RemoteConfigState::kApplied);
  CHECK(status.remote_config_hash.size() == 64);

  // A new config is delivered.
  const std::string second = mock.setRemoteConfig({{"cistern.yaml", yaml + "# v2\n"}});
  REQUIRE(h.agent.waitForConfigs(2));
  CHECK(h.agent.configs()[1].hash == second);
}

TEST_CASE("a config the agent cannot apply is reported FAILED with its error", "[component]") {
  Running r;
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  const std::string hash = mock.setRemoteConfig({{"cistern.yaml", "inputs: 42\n"}});
  h.client->start();
  REQUIRE(h.agent.waitForConfigs(1));
  h.client->reportRemoteConfig(hash, RemoteConfigState::kFailed,
                               "cistern.yaml:1: inputs: expected a list");
  REQUIRE(waitForStatus(mock, "RemoteConfigStatuses_FAILED"));
  const Messages m = mock.messages();
  const auto& failed =
      m[static_cast<std::size_t>(findFrom(m, 0, hasStatus("RemoteConfigStatuses_FAILED")))];
  CHECK(remoteHash(failed) == hash);
  CHECK(failed.a2s["remoteConfigStatus"].value("errorMessage", "") ==
        "cistern.yaml:1: inputs: expected a list");
  CHECK(h.counter("remote_configs_failed") == 1);
  CHECK(h.client->status().remote_config_error == "cistern.yaml:1: inputs: expected a list");
  // Not offered again (the server knows the agent has seen it), not delivered again.
  std::this_thread::sleep_for(700ms);
  CHECK(h.agent.configs().size() == 1);
}

TEST_CASE("the remote config applied before a restart is reported, not applied again",
          "[component]") {
  OpampMock mock;
  REQUIRE_MOCK(mock);
  const std::string hash = mock.setRemoteConfig({{"cistern.yaml", "outputs: []\n"}});
  Harness h(fastOptions(mock.url()), hash);
  h.client->start();
  REQUIRE(mock.waitForMessages(3, kWait));
  const Messages m = mock.messages();
  CHECK(remoteStatus(m[0]) == "RemoteConfigStatuses_APPLIED");
  CHECK(remoteHash(m[0]) == hash);
  for (const auto& x : m) CHECK_FALSE(x.s2a.contains("remoteConfig"));
  CHECK(h.agent.configs().empty());
}

// A P-256 key pair and signatures made with the openssl CLI.
struct Signer {
  testing::TempDir dir{"cistern-opamp-sig"};
  std::string private_key = (dir / "signer.key").string();
  std::string public_key = (dir / "signer.pub").string();

  Signer() {
    run({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
         private_key});
    run({"pkey", "-in", private_key, "-pubout", "-out", public_key});
  }
  std::string sign(const std::string& body) const {
    std::ofstream(dir / "body", std::ios::binary) << body;
    run({"dgst", "-sha256", "-sign", private_key, "-out", (dir / "body.sig").string(),
         (dir / "body").string()});
    run({"base64", "-in", (dir / "body.sig").string(), "-out", (dir / "body.b64").string()});
    std::ifstream in(dir / "body.b64");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static void run(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = testing::run(argv, 30s);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
};

TEST_CASE("signed remote configs: valid ones are delivered, others refused FAILED", "[component]") {
  const Signer signer;
  Running r([&](OpampOptions& o) { o.config_public_key_file = signer.public_key; });
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  const std::string yaml = "outputs: []\n";

  SECTION("valid") {
    const std::string hash =
        mock.setRemoteConfig({{"cistern.yaml", yaml}, {"cistern.yaml.sig", signer.sign(yaml)}});
    h.client->start();
    REQUIRE(h.agent.waitForConfigs(1));
    CHECK(h.agent.configs()[0].hash == hash);
    REQUIRE(waitForStatus(mock, "RemoteConfigStatuses_APPLYING"));
    CHECK(h.counter("remote_configs_refused") == 0);
  }
  SECTION("invalid, missing") {
    const bool tampered = GENERATE(true, false);
    std::map<std::string, std::string> files = {{"cistern.yaml", yaml + "# changed\n"}};
    if (tampered) files["cistern.yaml.sig"] = signer.sign(yaml);
    const std::string hash = mock.setRemoteConfig(files);
    h.client->start();
    REQUIRE(waitForStatus(mock, "RemoteConfigStatuses_FAILED"));
    const Messages m = mock.messages();
    const auto& failed =
        m[static_cast<std::size_t>(findFrom(m, 0, hasStatus("RemoteConfigStatuses_FAILED")))];
    CHECK(remoteHash(failed) == hash);
    const std::string error = failed.a2s["remoteConfigStatus"].value("errorMessage", "");
    CHECK_THAT(error, Catch::Contains(tampered ? "does not verify" : "not signed"));
    // Refused at once: never APPLYING on the wire, never given to the agent.
    CHECK(findFrom(m, 0, hasStatus("RemoteConfigStatuses_APPLYING")) < 0);
    std::this_thread::sleep_for(500ms);
    CHECK(h.agent.configs().empty());
    CHECK(h.counter("remote_configs_received") == 1);
    CHECK(h.counter("remote_configs_refused") == 1);
    CHECK(h.client->status().remote_config_state == RemoteConfigState::kFailed);
  }
}

TEST_CASE("a server down at start: backoff, then the full state once it is up", "[component]") {
  const int port = testing::listenPort();
  REQUIRE(port != 0);
  Harness h(fastOptions("http://127.0.0.1:" + std::to_string(port) + "/v1/opamp"));
  h.client->start();
  REQUIRE(h.waitForCounter("requests_failed", 3));
  auto status = h.client->status();
  CHECK_FALSE(status.connected);
  CHECK_THAT(status.last_error, Catch::Contains(std::to_string(port)));
  CHECK(h.counter("retry_delay_ms") > 0);
  CHECK(h.counter("retry_delay_ms") <= 400);

  OpampMockOptions mock_options;
  mock_options.port = port;
  OpampMock mock(mock_options);
  REQUIRE_MOCK(mock);
  REQUIRE(mock.waitForMessages(2, kWait));
  const Messages m = mock.messages();
  CHECK(m[0].fullState());
  CHECK(m[0].sequenceNum() > 3);  // the failed attempts were numbered too
  CHECK(m[1].sequenceNum() == m[0].sequenceNum() + 1);
  REQUIRE(h.waitForCounter("requests_ok", 1));
  status = h.client->status();
  CHECK(status.connected);
  CHECK(status.last_error.empty());
  CHECK(h.counter("retry_delay_ms") == 0);
}

TEST_CASE("a failing or busy server: backoff, Retry-After and retry_info obeyed", "[component]") {
  Running r(quiet);
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  r.startAnswered();

  std::string expect_error;
  std::chrono::milliseconds min_delay{0};
  SECTION("HTTP 503 with Retry-After") {
    REQUIRE(mock.failNext(1, 503, "2"));
    expect_error = "HTTP 503";
    min_delay = 1900ms;
  }
  SECTION("HTTP 429 without Retry-After: the backoff") {
    REQUIRE(mock.failNext(2, 429));
    expect_error = "HTTP 429";
  }
  SECTION("ServerErrorResponse UNAVAILABLE with retry_info") {
    REQUIRE(mock.errorResponseNext(1, "unavailable", "overloaded", 1500));
    expect_error = "overloaded";
    min_delay = 1400ms;
  }
  h.client->notifyChanged();
  REQUIRE(h.waitForCounter("requests_failed", 1));
  CHECK_THAT(h.client->status().last_error, Catch::Contains(expect_error));
  REQUIRE(h.waitForCounter("requests_ok", 2, 10s));
  // The mock prints a message after it answered: wait for the one that succeeded.
  REQUIRE(mock.waitFor([](const Messages& all) {
    return all.size() > 2 && all.back().status == 200 && !all.back().s2a.contains("errorResponse");
  }));
  const Messages m = mock.messages();
  const int first_failed = findFrom(m, 1, [](const OpampMockMessage& x) {
    return x.status != 200 || x.s2a.contains("errorResponse");
  });
  REQUIRE(first_failed == 1);
  const auto& recovered = m.back();
  CHECK(recovered.fullState());  // the sequence was broken
  CHECK(recovered.received - m[1].received >= min_delay);
  CHECK(h.client->status().last_error.empty());
}

TEST_CASE("a report the server refuses as a bad request is not retried at once", "[component]") {
  Running r([](OpampOptions& o) { o.heartbeat_interval = 1500ms; });
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  r.startAnswered();
  REQUIRE(mock.errorResponseNext(1, "bad_request", "malformed"));
  h.client->notifyChanged();
  REQUIRE(mock.waitForMessages(3, 10s));
  const Messages m = mock.messages();
  CHECK(m[1].s2a.contains("errorResponse"));
  CHECK(m[2].received - m[1].received >= 1400ms);  // the heartbeat interval, not a backoff
  CHECK(m[2].fullState());
  CHECK(h.counter("requests_failed") == 1);
}

TEST_CASE("stop() says goodbye with AgentDisconnect, bounded", "[component]") {
  Running r(quiet);
  OpampMock& mock = r.mock;
  Harness& h = r.h();
  r.startAnswered();

  SECTION("server answering") {
    const auto began = std::chrono::steady_clock::now();
    h.client->stop(3s);
    CHECK(std::chrono::steady_clock::now() - began < 2s);
    REQUIRE(mock.waitFor([](const Messages& m) { return m.back().has("agentDisconnect"); }, 5s));
    const Messages m = mock.messages();
    REQUIRE(m.size() == 2);
    CHECK(m[1].sequenceNum() == 2);
    // Nothing after it.
    std::this_thread::sleep_for(500ms);
    CHECK(mock.messages().size() == 2);
    h.client->stop(3s);  // idempotent
  }
  SECTION("server hung: stop() returns after the wait") {
    REQUIRE(mock.stallNext(10));
    h.client->notifyChanged();
    REQUIRE(mock.waitForMessages(2, 5s));  // a report in flight, never answered
    const auto began = std::chrono::steady_clock::now();
    h.client->stop(500ms);
    const auto took = std::chrono::steady_clock::now() - began;
    CHECK(took >= 450ms);
    CHECK(took < 2s);
    REQUIRE(mock.waitForMessages(3, 5s));
    CHECK(mock.messages()[2].has("agentDisconnect"));
  }
  CHECK(h.counter("requests_ok") == 1);
}

TEST_CASE("TLS and mutual TLS", "[component]") {
  const auto& pki = testing::testPki();
  REQUIRE(pki.error.empty());
  OpampMockOptions mock_options;
  mock_options.ca_file = pki.ca_crt;
  mock_options.cert_file = pki.server_crt;
  mock_options.key_file = pki.server_key;

  SECTION("TLS, verified by the CA") {
    OpampMock mock(mock_options);
    REQUIRE_MOCK(mock);
    REQUIRE(mock.url().rfind("https://", 0) == 0);
    auto options = fastOptions(mock.url());
    options.tls.ca_file = pki.ca_crt;
    Harness h(options);
    h.client->start();
    REQUIRE(mock.waitForMessages(2, kWait));
    CHECK(mock.messages()[0].fullState());
  }
  SECTION("TLS with an unknown CA fails, as a TLS error") {
    OpampMock mock(mock_options);
    REQUIRE_MOCK(mock);
    auto options = fastOptions(mock.url());
    options.tls.ca_file = pki.other_ca_crt;
    Harness h(options);
    h.client->start();
    REQUIRE(h.waitForCounter("requests_failed", 2));
    CHECK(mock.messages().empty());
    CHECK_FALSE(h.client->status().last_error.empty());
  }
  SECTION("mutual TLS") {
    mock_options.request_client_cert = true;
    mock_options.client_cert_file = pki.client_crt;
    mock_options.client_key_file = pki.client_key;
    OpampMock mock(mock_options);
    REQUIRE_MOCK(mock);
    auto options = fastOptions(mock.url());
    options.tls.ca_file = pki.ca_crt;
    const bool with_certificate = GENERATE(true, false);
    if (with_certificate) {
      options.tls.cert_file = pki.client_crt;
      options.tls.key_file = pki.client_key;
    }
    Harness h(options);
    h.client->start();
    if (with_certificate) {
      REQUIRE(mock.waitForMessages(2, kWait));
      CHECK(h.counter("requests_failed") == 0);
    } else {
      REQUIRE(h.waitForCounter("requests_failed", 2));
      CHECK(mock.messages().empty());
    }
  }
}

TEST_CASE("create() refuses options that cannot work", "[component]") {
  auto loop = platform::EventLoop::start("opamp-test");
  REQUIRE(loop);
  FakeAgent agent;
  const auto error = [&](const OpampOptions& o) {
    auto made = OpampClient::create(**loop, o, kUid, {}, agent);
    REQUIRE_FALSE(made);
    CHECK(made.error().code == ErrorCode::kConfig);
    return made.error().message;
  };
  OpampOptions o = fastOptions("ftp://x/v1/opamp");
  CHECK_THAT(error(o), Catch::Contains("not an http:// or https:// URL"));
  o = fastOptions("http://127.0.0.1:1/v1/opamp");
  o.headers = {"no colon"};
  CHECK_THAT(error(o), Catch::Contains("'no colon'"));
  o.headers = {"Content-Type: text/plain"};
  CHECK_THAT(error(o), Catch::Contains("Content-Type"));
  o.headers = {};
  o.config_public_key_file = "/nonexistent/key.pem";
  CHECK_THAT(error(o), Catch::Contains("/nonexistent/key.pem"));
  o.config_public_key_file = {};
  o.tls.ca_file = "/nonexistent/ca.pem";
  CHECK_THAT(error(o), Catch::Contains("/nonexistent/ca.pem"));
  (*loop)->stop();
}

}  // namespace
}  // namespace cistern::heartbeat
