// The OpAMP messages as Cistern encodes and decodes them: both directions of both messages,
// health attributes in the status text, the agent description, and repairs of invalid UTF-8.
// (The bytes themselves are checked against an independent protobuf implementation by the
// component tests, through @elastic/mockopampserver.)
#include <string>

#include <catch2/catch.hpp>

#include "opamp_codec.h"

namespace cistern::heartbeat {
namespace {

const InstanceUid kUid = {0x01, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0x7e, 0x5f,
                          0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b};

ComponentHealth sampleHealth() {
  ComponentHealth output;
  output.healthy = false;
  output.status = "down";
  output.last_error = "connecting to https://proc:4318: refused";
  output.start_time_ns = 1700000000000000000ULL;
  output.status_time_ns = 1700000000500000000ULL;
  output.attributes = {
      {"backlog_bytes", "1048576"}, {"backlog_records", "2048"}, {"last_endpoint", "https://a b"}};
  ComponentHealth input;
  input.healthy = true;
  input.status = "running";
  input.attributes = {{"capture_dropped_packets", "0"}};
  ComponentHealth agent;
  agent.healthy = false;
  agent.status = "degraded";
  agent.start_time_ns = 1;
  agent.status_time_ns = 2;
  agent.components = {{"output:otlp", output}, {"input:eth0", input}};
  return agent;
}

TEST_CASE("an AgentToServer with every field survives encoding", "[unit]") {
  AgentToServerMessage m;
  m.instance_uid = kUid;
  m.sequence_num = 42;
  m.capabilities = kCisternCapabilities;
  m.description = describeAgent(
      AgentDescription{
          "cistern", "1.2.3", "sensor-7", "linux", "Debian 12", "agent-7", {{"site", "lab"}}},
      kUid);
  m.health = sampleHealth();
  m.effective_config = "inputs: []\n";
  m.remote_config_status =
      RemoteConfigStatusReport{"\x01\x02\xff", RemoteConfigState::kFailed, "bad key 'x'"};

  const std::string bytes = encodeAgentToServer(m);
  auto back = decodeAgentToServer(bytes);
  REQUIRE(back);
  CHECK(*back == m);
  CHECK(kCisternCapabilities == 0x3807);
}

TEST_CASE("absent parts stay absent; a heartbeat is small", "[unit]") {
  AgentToServerMessage m;
  m.instance_uid = kUid;
  m.sequence_num = 7;
  m.capabilities = kCisternCapabilities;
  const std::string bytes = encodeAgentToServer(m);
  CHECK(bytes.size() < 30);
  auto back = decodeAgentToServer(bytes);
  REQUIRE(back);
  CHECK_FALSE(back->description);
  CHECK_FALSE(back->health);
  CHECK_FALSE(back->effective_config);
  CHECK_FALSE(back->remote_config_status);
  CHECK_FALSE(back->disconnect);

  // An empty status and an empty effective config are still present when set.
  m.remote_config_status = RemoteConfigStatusReport{};
  m.effective_config = "";
  m.disconnect = true;
  auto again = decodeAgentToServer(encodeAgentToServer(m));
  REQUIRE(again);
  CHECK(again->remote_config_status == RemoteConfigStatusReport{});
  CHECK(again->effective_config == std::string());
  CHECK(again->disconnect);
}

TEST_CASE("a ServerToAgent with every field Cistern reads survives encoding", "[unit]") {
  ServerToAgentMessage m;
  m.instance_uid = std::string(kUid.begin(), kUid.end());
  m.remote_config = RemoteConfig{
      "hash-bytes",
      {{"cistern.yaml", {"a: 1\n", "text/yaml"}}, {"x", {std::string("\0\1", 2), ""}}}};
  m.flags = kReportFullState;
  m.capabilities = 3;
  m.heartbeat_interval_seconds = 15;
  m.new_instance_uid = std::string(16, 'u');
  m.command = true;
  auto back = decodeServerToAgent(encodeServerToAgent(m));
  REQUIRE(back);
  CHECK(*back == m);

  ServerToAgentMessage error;
  error.error = ServerError{ServerErrorType::kUnavailable, "busy", std::chrono::seconds(3)};
  auto error_back = decodeServerToAgent(encodeServerToAgent(error));
  REQUIRE(error_back);
  CHECK(*error_back == error);

  ServerToAgentMessage zero_interval;
  zero_interval.heartbeat_interval_seconds = 0;  // connection settings present, interval 0
  auto zero_back = decodeServerToAgent(encodeServerToAgent(zero_interval));
  REQUIRE(zero_back);
  CHECK(zero_back->heartbeat_interval_seconds == std::optional<std::uint64_t>(0));
}

TEST_CASE("bytes that are not the message are reported corrupt", "[unit]") {
  auto bad = decodeServerToAgent("\xff\xff\xff\xff not protobuf");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::kCorrupt);
  // An empty body is a valid, empty ServerToAgent.
  CHECK(decodeServerToAgent(""));

  auto short_uid =
      decodeAgentToServer(std::string("\x0a\x03"
                                      "abc",
                                      5));
  REQUIRE_FALSE(short_uid);
  CHECK_THAT(short_uid.error().message, Catch::Contains("3-byte instance_uid"));
}

TEST_CASE("health attributes travel in the status text, logfmt style", "[unit]") {
  CHECK(formatHealthStatus("down", {}) == "down");
  CHECK(formatHealthStatus("down", {{"b", "2"}, {"a", "1"}}) == "down a=1 b=2");
  CHECK(formatHealthStatus("", {{"a", "1"}}) == "a=1");
  CHECK(formatHealthStatus("s", {{"k", ""}}) == "s k=\"\"");
  CHECK(formatHealthStatus("s", {{"k", "a b"}}) == "s k=\"a b\"");
  CHECK(formatHealthStatus("s", {{"k", "say \"hi\"\\"}}) == "s k=\"say \\\"hi\\\"\\\\\"");
  CHECK(formatHealthStatus("s", {{"k", "x=y"}}) == "s k=\"x=y\"");
  CHECK(formatHealthStatus("s", {{"k", "l1\nl2\t\x01"}}) == "s k=\"l1\\nl2\\t\\x01\"");
  CHECK(formatHealthStatus("s", {{"bad key!", "1"}, {"", "2"}}) == "s _=2 bad_key_=1");

  const std::map<std::string, std::string> tricky = {
      {"empty", ""},       {"quote", "\"q\""},    {"slash", "a\\b"},       {"eq", "a=b"},
      {"space", "a b  c"}, {"ctl", "\r\n\t\x7f"}, {"utf8", "caf\xc3\xa9"}, {"plain", "42"}};
  const auto [status, attributes] = parseHealthStatus(formatHealthStatus("recovering", tricky));
  CHECK(status == "recovering");
  CHECK(attributes == tricky);

  // Text from another agent: no attributes, the whole of it is the status.
  const auto [other, none] = parseHealthStatus("StatusOK all good");
  CHECK(other == "StatusOK all good");
  CHECK(none.empty());
}

TEST_CASE("the agent description follows the resource conventions", "[unit]") {
  AgentDescription d;
  d.service_version = "0.3.0";
  d.host_name = "tap-17";
  d.os_type = "linux";
  d.os_description = "Debian GNU/Linux 12 (bookworm)";
  d.agent_id = "tap-17-a";
  d.extra_attributes = {{"site", "fra1"}, {"service.name", "spoof"}};
  const auto attrs = describeAgent(d, kUid);
  CHECK(attrs.identifying == Attributes{{"service.name", "cistern"},
                                        {"service.version", "0.3.0"},
                                        {"service.instance.id", "tap-17-a"},
                                        {"cistern.agent.id", "tap-17-a"}});
  CHECK(attrs.non_identifying ==
        Attributes{{"host.name", "tap-17"},
                   {"os.type", "linux"},
                   {"os.description", "Debian GNU/Linux 12 (bookworm)"},
                   {"cistern.instance_uid", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"},
                   {"site", "fra1"}});

  // Without an agent id, the instance UID is the instance id.
  const auto anonymous = describeAgent(AgentDescription{}, kUid);
  CHECK(anonymous.identifying ==
        Attributes{{"service.name", "cistern"},
                   {"service.instance.id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}});
}

TEST_CASE("strings are made valid UTF-8 before they are sent", "[unit]") {
  CHECK(validUtf8("plain") == "plain");
  CHECK(validUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(validUtf8("a\xff"
                  "b") ==
        "a\xef\xbf\xbd"
        "b");
  CHECK(validUtf8("\xc3") == "\xef\xbf\xbd");                                  // truncated
  CHECK(validUtf8("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong
  CHECK(validUtf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate

  AgentToServerMessage m;
  m.instance_uid = kUid;
  m.remote_config_status = RemoteConfigStatusReport{"\xff", RemoteConfigState::kFailed, "bad \xff"};
  ComponentHealth h;
  h.last_error = "open /var/log/\xfe: denied";
  m.health = h;
  auto back = decodeAgentToServer(encodeAgentToServer(m));
  REQUIRE(back);
  CHECK(back->remote_config_status->hash == "\xff");  // bytes are not touched
  CHECK(back->remote_config_status->error == "bad \xef\xbf\xbd");
  CHECK(back->health->last_error == "open /var/log/\xef\xbf\xbd: denied");
}

TEST_CASE("hashes are shown in hex", "[unit]") {
  CHECK(hexBytes(std::string("\x00\x0f\xab", 3)) == "000fab");
  CHECK(hexBytes("").empty());
}

}  // namespace
}  // namespace cistern::heartbeat
