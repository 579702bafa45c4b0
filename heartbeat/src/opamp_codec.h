// The OpAMP messages Cistern exchanges, as plain structs, and their protobuf encoding (the
// generated classes of heartbeat/proto stay inside opamp_codec.cpp). Both directions of both
// messages are here: the client encodes AgentToServer and decodes ServerToAgent; tests (and
// fake servers) do the opposite with the same code.
//
// Pure functions: any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cistern/core/result.h"
#include "cistern/heartbeat/instance_uid.h"
#include "cistern/heartbeat/opamp.h"

namespace cistern::heartbeat {

// AgentCapabilities bits (opamp.proto; checked against the generated enum in opamp_codec.cpp).
inline constexpr std::uint64_t kReportsStatus = 0x1;
inline constexpr std::uint64_t kAcceptsRemoteConfig = 0x2;
inline constexpr std::uint64_t kReportsEffectiveConfig = 0x4;
inline constexpr std::uint64_t kReportsHealth = 0x800;
inline constexpr std::uint64_t kReportsRemoteConfig = 0x1000;
inline constexpr std::uint64_t kReportsHeartbeat = 0x2000;
// What Cistern has.
inline constexpr std::uint64_t kCisternCapabilities = kReportsStatus | kAcceptsRemoteConfig |
                                                      kReportsEffectiveConfig | kReportsHealth |
                                                      kReportsRemoteConfig | kReportsHeartbeat;

// ServerToAgentFlags.
inline constexpr std::uint64_t kReportFullState = 0x1;

// The effective config's entry name and content type.
inline constexpr std::string_view kEffectiveConfigFile = "cistern.yaml";
inline constexpr std::string_view kYamlContentType = "text/yaml";

// String-valued attributes (KeyValue with a string AnyValue), in order.
using Attributes = std::vector<std::pair<std::string, std::string>>;

struct DescriptionAttributes {
  Attributes identifying;
  Attributes non_identifying;

  bool operator==(const DescriptionAttributes&) const = default;
};

struct RemoteConfigStatusReport {
  std::string hash;  // last_remote_config_hash
  RemoteConfigState state = RemoteConfigState::kUnset;
  std::string error;

  bool operator==(const RemoteConfigStatusReport&) const = default;
};

struct AgentToServerMessage {
  InstanceUid instance_uid{};
  std::uint64_t sequence_num = 0;
  std::uint64_t capabilities = 0;
  std::uint64_t flags = 0;
  // Each optional is absent from the message when unset.
  std::optional<DescriptionAttributes> description;
  std::optional<ComponentHealth> health;        // attributes folded into status (opamp.h)
  std::optional<std::string> effective_config;  // the YAML, as entry kEffectiveConfigFile
  std::optional<RemoteConfigStatusReport> remote_config_status;
  bool disconnect = false;  // agent_disconnect

  bool operator==(const AgentToServerMessage&) const = default;
};

enum class ServerErrorType { kUnknown, kBadRequest, kUnavailable };

struct ServerError {
  ServerErrorType type = ServerErrorType::kUnknown;
  std::string message;
  std::optional<std::chrono::nanoseconds> retry_after;  // retry_info

  bool operator==(const ServerError&) const = default;
};

struct ServerToAgentMessage {
  std::string instance_uid;  // bytes, as received
  std::optional<ServerError> error;
  std::optional<RemoteConfig> remote_config;
  std::uint64_t flags = 0;
  std::uint64_t capabilities = 0;
  // connection_settings.opamp.heartbeat_interval_seconds, when connection_settings.opamp is set.
  std::optional<std::uint64_t> heartbeat_interval_seconds;
  std::string new_instance_uid;  // agent_identification; empty when absent
  bool command = false;          // a command (restart), which Cistern does not accept

  bool operator==(const ServerToAgentMessage&) const = default;
};

// Binary protobuf. Strings that are not valid UTF-8 are repaired (U+FFFD), as protobuf requires.
std::string encodeAgentToServer(const AgentToServerMessage& message);

// Errors: kCorrupt (not an AgentToServer; an instance UID that is not 16 bytes).
Result<AgentToServerMessage> decodeAgentToServer(std::string_view bytes);

std::string encodeServerToAgent(const ServerToAgentMessage& message);

// Errors: kCorrupt (not a ServerToAgent).
Result<ServerToAgentMessage> decodeServerToAgent(std::string_view bytes);

// ComponentHealth.status on the wire: `status` then the attributes, logfmt style (opamp.h).
std::string formatHealthStatus(const std::string& status,
                               const std::map<std::string, std::string>& attributes);

// The reverse: the status word(s) and the attributes. Text that formatHealthStatus() did not make
// comes back whole as the status, as far as it has no key=value token.
std::pair<std::string, std::map<std::string, std::string>> parseHealthStatus(std::string_view text);

// The description's attributes (opamp.h, AgentDescription).
DescriptionAttributes describeAgent(const AgentDescription& description,
                                    const InstanceUid& instance_uid);

// `s` with every invalid UTF-8 sequence replaced by U+FFFD.
std::string validUtf8(std::string_view s);

// Lower-case hex of bytes (config hashes in logs and status).
std::string hexBytes(std::string_view bytes);

}  // namespace cistern::heartbeat
