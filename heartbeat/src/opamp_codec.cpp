#include "opamp_codec.h"

#include <algorithm>
#include <climits>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "opamp.pb.h"

namespace cistern::heartbeat {
namespace {

namespace pb = ::opamp::proto;

static_assert(kReportsStatus == static_cast<std::uint64_t>(pb::AgentCapabilities_ReportsStatus));
static_assert(kAcceptsRemoteConfig ==
              static_cast<std::uint64_t>(pb::AgentCapabilities_AcceptsRemoteConfig));
static_assert(kReportsEffectiveConfig ==
              static_cast<std::uint64_t>(pb::AgentCapabilities_ReportsEffectiveConfig));
static_assert(kReportsHealth == static_cast<std::uint64_t>(pb::AgentCapabilities_ReportsHealth));
static_assert(kReportsRemoteConfig ==
              static_cast<std::uint64_t>(pb::AgentCapabilities_ReportsRemoteConfig));
static_assert(kReportsHeartbeat ==
              static_cast<std::uint64_t>(pb::AgentCapabilities_ReportsHeartbeat));
static_assert(kReportFullState ==
              static_cast<std::uint64_t>(pb::ServerToAgentFlags_ReportFullState));

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool isKeyChar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_' || ch == '.' || ch == '-';
}

bool needsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20U || c == 0x7fU || ch == '"' || ch == '=' || ch == '\\') return true;
  }
  return false;
}

void appendQuoted(std::string& out, std::string_view value) {
  out += '"';
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20U || c == 0x7fU) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

int hexDigit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

// Reads a quoted value starting at text[i] == '"'; returns the index after the closing quote
// (or the end of the text when it is missing).
std::size_t readQuoted(std::string_view text, std::size_t i, std::string& value) {
  for (++i; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '"') return i + 1;
    if (ch != '\\' || i + 1 == text.size()) {
      value += ch;
      continue;
    }
    const char esc = text[++i];
    switch (esc) {
      case 'n':
        value += '\n';
        break;
      case 'r':
        value += '\r';
        break;
      case 't':
        value += '\t';
        break;
      case 'x':
        if (i + 2 < text.size() && hexDigit(text[i + 1]) >= 0 && hexDigit(text[i + 2]) >= 0) {
          value += static_cast<char>(hexDigit(text[i + 1]) * 16 + hexDigit(text[i + 2]));
          i += 2;
        } else {
          value += esc;
        }
        break;
      default:
        value += esc;
    }
  }
  return i;
}

void setString(pb::KeyValue* kv, const std::string& key, const std::string& value) {
  kv->set_key(validUtf8(key));
  kv->mutable_value()->set_string_value(validUtf8(value));
}

void toProto(const Attributes& attributes, google::protobuf::RepeatedPtrField<pb::KeyValue>* out) {
  for (const auto& [key, value] : attributes) setString(out->Add(), key, value);
}

Attributes fromProto(const google::protobuf::RepeatedPtrField<pb::KeyValue>& list) {
  Attributes out;
  for (const auto& kv : list) {
    out.emplace_back(kv.key(), kv.value().has_string_value() ? kv.value().string_value() : "");
  }
  return out;
}

void toProto(const ComponentHealth& health, pb::ComponentHealth* out) {
  out->set_healthy(health.healthy);
  out->set_start_time_unix_nano(health.start_time_ns);
  out->set_last_error(validUtf8(health.last_error));
  out->set_status(validUtf8(formatHealthStatus(health.status, health.attributes)));
  out->set_status_time_unix_nano(health.status_time_ns);
  for (const auto& [name, component] : health.components) {
    toProto(component, &(*out->mutable_component_health_map())[validUtf8(name)]);
  }
}

ComponentHealth fromProto(const pb::ComponentHealth& health) {
  ComponentHealth out;
  out.healthy = health.healthy();
  out.start_time_ns = health.start_time_unix_nano();
  out.last_error = health.last_error();
  auto [status, attributes] = parseHealthStatus(health.status());
  out.status = std::move(status);
  out.attributes = std::move(attributes);
  out.status_time_ns = health.status_time_unix_nano();
  for (const auto& [name, component] : health.component_health_map()) {
    out.components.emplace(name, fromProto(component));
  }
  return out;
}

pb::RemoteConfigStatuses toProto(RemoteConfigState state) {
  switch (state) {
    case RemoteConfigState::kApplied:
      return pb::RemoteConfigStatuses_APPLIED;
    case RemoteConfigState::kApplying:
      return pb::RemoteConfigStatuses_APPLYING;
    case RemoteConfigState::kFailed:
      return pb::RemoteConfigStatuses_FAILED;
    case RemoteConfigState::kUnset:
      break;
  }
  return pb::RemoteConfigStatuses_UNSET;
}

RemoteConfigState fromProto(pb::RemoteConfigStatuses status) {
  switch (status) {
    case pb::RemoteConfigStatuses_APPLIED:
      return RemoteConfigState::kApplied;
    case pb::RemoteConfigStatuses_APPLYING:
      return RemoteConfigState::kApplying;
    case pb::RemoteConfigStatuses_FAILED:
      return RemoteConfigState::kFailed;
    default:
      return RemoteConfigState::kUnset;
  }
}

template <typename Message>
bool parse(Message& message, std::string_view bytes) {
  return bytes.size() <= static_cast<std::size_t>(INT_MAX) &&
         message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

}  // namespace

std::string validUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80U) {
      out += s[i++];
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((c & 0xE0U) == 0xC0U) {
      len = 2;
      cp = c & 0x1FU;
      min = 0x80;
    } else if ((c & 0xF0U) == 0xE0U) {
      len = 3;
      cp = c & 0x0FU;
      min = 0x800;
    } else if ((c & 0xF8U) == 0xF0U) {
      len = 4;
      cp = c & 0x07U;
      min = 0x10000;
    }
    bool valid = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; valid && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      valid = (cc & 0xC0U) == 0x80U;
      cp = (cp << 6U) | (cc & 0x3FU);
    }
    valid = valid && cp >= min && cp <= 0x10FFFFU && (cp < 0xD800U || cp > 0xDFFFU);
    if (valid) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

std::string hexBytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char ch : bytes) out += fmt::format("{:02x}", static_cast<unsigned char>(ch));
  return out;
}

std::string formatHealthStatus(const std::string& status,
                               const std::map<std::string, std::string>& attributes) {
  std::string out = status;
  for (const auto& [key, value] : attributes) {
    if (!out.empty()) out += ' ';
    if (key.empty()) out += '_';
    for (const char ch : key) out += isKeyChar(ch) ? ch : '_';
    out += '=';
    if (needsQuotes(value)) {
      appendQuoted(out, value);
    } else {
      out += value;
    }
  }
  return out;
}

std::pair<std::string, std::map<std::string, std::string>> parseHealthStatus(
    std::string_view text) {
  std::string status;
  std::map<std::string, std::string> attributes;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t k = i;
    while (k < text.size() && isKeyChar(text[k])) ++k;
    if (k > i && k < text.size() && text[k] == '=') {
      std::string value;
      if (k + 1 < text.size() && text[k + 1] == '"') {
        const std::size_t end = readQuoted(text, k + 1, value);
        attributes[std::string(text.substr(i, k - i))] = std::move(value);
        i = end;
      } else {
        const std::size_t end = std::min(text.find(' ', k + 1), text.size());
        attributes[std::string(text.substr(i, k - i))] = text.substr(k + 1, end - k - 1);
        i = end;
      }
      continue;
    }
    const std::size_t end = std::min(text.find(' ', i), text.size());
    if (attributes.empty()) {
      if (!status.empty()) status += ' ';
      status += text.substr(i, end - i);
    }
    i = end;
  }
  return {std::move(status), std::move(attributes)};
}

DescriptionAttributes describeAgent(const AgentDescription& description,
                                    const InstanceUid& instance_uid) {
  DescriptionAttributes out;
  const auto add = [](Attributes& to, const std::string& key, const std::string& value) {
    if (value.empty()) return;
    for (const auto& kv : to) {
      if (kv.first == key) return;
    }
    to.emplace_back(key, value);
  };
  const std::string uid = formatUuid(instance_uid);
  add(out.identifying, "service.name", description.service_name);
  add(out.identifying, "service.version", description.service_version);
  add(out.identifying, "service.instance.id",
      description.agent_id.empty() ? uid : description.agent_id);
  add(out.identifying, "cistern.agent.id", description.agent_id);
  add(out.non_identifying, "host.name", description.host_name);
  add(out.non_identifying, "os.type", description.os_type);
  add(out.non_identifying, "os.description", description.os_description);
  add(out.non_identifying, "cistern.instance_uid", uid);
  for (const auto& [key, value] : description.extra_attributes) {
    bool identifying = false;
    for (const auto& kv : out.identifying) identifying = identifying || kv.first == key;
    if (!identifying) add(out.non_identifying, key, value);
  }
  return out;
}

std::string encodeAgentToServer(const AgentToServerMessage& message) {
  pb::AgentToServer out;
  out.set_instance_uid(message.instance_uid.data(), message.instance_uid.size());
  out.set_sequence_num(message.sequence_num);
  out.set_capabilities(message.capabilities);
  out.set_flags(message.flags);
  if (message.description) {
    auto* description = out.mutable_agent_description();
    toProto(message.description->identifying, description->mutable_identifying_attributes());
    toProto(message.description->non_identifying,
            description->mutable_non_identifying_attributes());
  }
  if (message.health) toProto(*message.health, out.mutable_health());
  if (message.effective_config) {
    auto& file = (*out.mutable_effective_config()
                       ->mutable_config_map()
                       ->mutable_config_map())[std::string(kEffectiveConfigFile)];
    file.set_body(*message.effective_config);
    file.set_content_type(std::string(kYamlContentType));
  }
  if (message.remote_config_status) {
    auto* status = out.mutable_remote_config_status();
    status->set_last_remote_config_hash(message.remote_config_status->hash);
    status->set_status(toProto(message.remote_config_status->state));
    status->set_error_message(validUtf8(message.remote_config_status->error));
  }
  if (message.disconnect) out.mutable_agent_disconnect();
  return out.SerializeAsString();
}

Result<AgentToServerMessage> decodeAgentToServer(std::string_view bytes) {
  pb::AgentToServer in;
  if (!parse(in, bytes)) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("{} bytes that are not an AgentToServer message", bytes.size()));
  }
  if (in.instance_uid().size() != InstanceUid{}.size()) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("AgentToServer: a {}-byte instance_uid", in.instance_uid().size()));
  }
  AgentToServerMessage out;
  std::copy(in.instance_uid().begin(), in.instance_uid().end(), out.instance_uid.begin());
  out.sequence_num = in.sequence_num();
  out.capabilities = in.capabilities();
  out.flags = in.flags();
  if (in.has_agent_description()) {
    out.description =
        DescriptionAttributes{fromProto(in.agent_description().identifying_attributes()),
                              fromProto(in.agent_description().non_identifying_attributes())};
  }
  if (in.has_health()) out.health = fromProto(in.health());
  if (in.has_effective_config()) {
    const auto& map = in.effective_config().config_map().config_map();
    const auto it = map.find(std::string(kEffectiveConfigFile));
    out.effective_config = it == map.end() ? std::string() : it->second.body();
  }
  if (in.has_remote_config_status()) {
    out.remote_config_status = RemoteConfigStatusReport{
        in.remote_config_status().last_remote_config_hash(),
        fromProto(in.remote_config_status().status()), in.remote_config_status().error_message()};
  }
  out.disconnect = in.has_agent_disconnect();
  return out;
}

std::string encodeServerToAgent(const ServerToAgentMessage& message) {
  pb::ServerToAgent out;
  out.set_instance_uid(message.instance_uid);
  if (message.error) {
    auto* error = out.mutable_error_response();
    switch (message.error->type) {
      case ServerErrorType::kBadRequest:
        error->set_type(pb::ServerErrorResponseType_BadRequest);
        break;
      case ServerErrorType::kUnavailable:
        error->set_type(pb::ServerErrorResponseType_Unavailable);
        break;
      case ServerErrorType::kUnknown:
        error->set_type(pb::ServerErrorResponseType_Unknown);
        break;
    }
    error->set_error_message(validUtf8(message.error->message));
    if (message.error->retry_after) {
      error->mutable_retry_info()->set_retry_after_nanoseconds(
          static_cast<std::uint64_t>(message.error->retry_after->count()));
    }
  }
  if (message.remote_config) {
    auto* config = out.mutable_remote_config();
    config->set_config_hash(message.remote_config->hash);
    auto* map = config->mutable_config()->mutable_config_map();
    for (const auto& [name, file] : message.remote_config->files) {
      auto& entry = (*map)[validUtf8(name)];
      entry.set_body(file.body);
      entry.set_content_type(validUtf8(file.content_type));
    }
  }
  if (message.heartbeat_interval_seconds) {
    out.mutable_connection_settings()->mutable_opamp()->set_heartbeat_interval_seconds(
        *message.heartbeat_interval_seconds);
  }
  out.set_flags(message.flags);
  out.set_capabilities(message.capabilities);
  if (!message.new_instance_uid.empty()) {
    out.mutable_agent_identification()->set_new_instance_uid(message.new_instance_uid);
  }
  if (message.command) out.mutable_command()->set_type(pb::CommandType_Restart);
  return out.SerializeAsString();
}

Result<ServerToAgentMessage> decodeServerToAgent(std::string_view bytes) {
  pb::ServerToAgent in;
  if (!parse(in, bytes)) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("{} bytes that are not a ServerToAgent message", bytes.size()));
  }
  ServerToAgentMessage out;
  out.instance_uid = in.instance_uid();
  if (in.has_error_response()) {
    const auto& error = in.error_response();
    ServerError e;
    switch (error.type()) {
      case pb::ServerErrorResponseType_BadRequest:
        e.type = ServerErrorType::kBadRequest;
        break;
      case pb::ServerErrorResponseType_Unavailable:
        e.type = ServerErrorType::kUnavailable;
        break;
      default:
        e.type = ServerErrorType::kUnknown;
    }
    e.message = error.error_message();
    if (error.has_retry_info()) {
      constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
      e.retry_after = std::chrono::nanoseconds(
          static_cast<std::int64_t>(std::min(error.retry_info().retry_after_nanoseconds(), kMax)));
    }
    out.error = std::move(e);
  }
  if (in.has_remote_config()) {
    RemoteConfig config;
    config.hash = in.remote_config().config_hash();
    for (const auto& [name, file] : in.remote_config().config().config_map()) {
      config.files.emplace(name, RemoteConfigFile{file.body(), file.content_type()});
    }
    out.remote_config = std::move(config);
  }
  if (in.has_connection_settings() && in.connection_settings().has_opamp()) {
    out.heartbeat_interval_seconds = in.connection_settings().opamp().heartbeat_interval_seconds();
  }
  out.flags = in.flags();
  out.capabilities = in.capabilities();
  if (in.has_agent_identification()) {
    out.new_instance_uid = in.agent_identification().new_instance_uid();
  }
  out.command = in.has_command();
  return out;
}

}  // namespace cistern::heartbeat
