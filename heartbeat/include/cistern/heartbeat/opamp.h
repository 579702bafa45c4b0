// OpAMP client: the sensor's heartbeat to its management server, and remote configuration.
//
// OpAMP (the open agent-management protocol) over plain HTTP(S): the agent POSTs an
// AgentToServer message (binary protobuf) to the server's URL and gets a ServerToAgent message
// back, every heartbeat interval and whenever something worth telling changed. The agent reports
// who it is (a persistent instance UID, description), its health per input and output with the
// buffer's figures, its effective config and the status of the last remote config; the server may
// send a remote config, which the agent validates and applies (or refuses) through OpampAgent.
//
// The client runs on the agent's event loop and never blocks it: a server that is slow, down or
// refusing costs the agent nothing but the retries, and never holds up capture or delivery.
//
// What is sent (opamp-spec's "status compression"): the first message after start, the first
// after a failed request (the server may have missed one: the sequence is broken) and the answer
// to a server's ReportFullState carry the full state: agent description, health, effective
// config and remote config status. Other messages carry only what changed since the last one the
// server answered; a heartbeat with nothing changed carries the instance UID, the sequence
// number and the capabilities. Capabilities: ReportsStatus, AcceptsRemoteConfig,
// ReportsEffectiveConfig, ReportsHealth, ReportsRemoteConfig, ReportsHeartbeat (0x3807).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/result.h"
#include "cistern/heartbeat/instance_uid.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/tls.h"

namespace cistern::heartbeat {

// `opamp:` in the config. An empty endpoint disables the client.
struct OpampOptions {
  // The server's OpAMP URL, http:// or https:// ("https://fleet.example:4320/v1/opamp").
  std::string endpoint;
  std::vector<std::string> headers;  // extra "Name: value" request headers (auth tokens)
  transport::TlsClientOptions tls;
  // How often the agent reports when nothing changed; the server's connection settings
  // (heartbeat_interval_seconds) override it.
  std::chrono::milliseconds heartbeat_interval{30000};
  // Server unreachable: retries back off (jittered, doubling) up to this.
  std::chrono::milliseconds max_backoff{300000};
  std::chrono::milliseconds timeout{10000};  // one request
  // PEM file of an ECDSA P-256 public key; when set, a remote config must carry a valid
  // signature made with its private key, or it is refused.
  std::string config_public_key_file;
  // Something changed (OpampAgent's notifyChanged(), a remote config's status): the report goes
  // out this long after the first change, so a burst of changes makes one message. Not a config
  // key; tests shorten it.
  std::chrono::milliseconds change_delay{1000};

  bool operator==(const OpampOptions&) const = default;
};

// Health of the agent (the top level) or of one of its components (an input, an output, the
// buffer), as OpAMP's ComponentHealth.
//
// Attributes: OpAMP's ComponentHealth has no attribute field (opamp-spec as of 2025: healthy,
// start_time_unix_nano, last_error, status, status_time_unix_nano, component_health_map), so
// the figures travel in its `status` string, logfmt style, after the status word:
//
//   status "down", attributes {backlog_bytes: "1048576", last_endpoint: "https://a b"}
//   -> "down backlog_bytes=1048576 last_endpoint=\"https://a b\""
//
// Keys in key order; characters other than letters, digits, '_', '.' and '-' in a key become
// '_'; a value that is empty or holds a space, a double quote, '=', a backslash or a control
// character is quoted ("..."), with double quotes and backslashes escaped by a backslash and
// newline, carriage return, tab and other control characters written as \n, \r, \t, \xHH. So
// `status` itself should be one word without '='. Every string sent is made valid UTF-8 (invalid
// bytes become U+FFFD), as protobuf requires. Suggested keys (figures as decimal integers):
// backlog_bytes, backlog_records, oldest_age_ms, dropped_<cause>_records (evicted, map_full,
// queue_full, ...), capture_dropped_packets.
struct ComponentHealth {
  bool healthy = false;
  std::string status;      // the state in a word: "running", "healthy", "down", "recovering"
  std::string last_error;  // why it is unhealthy; empty when healthy
  std::uint64_t start_time_ns = 0;  // Unix ns since the component runs; 0 when it does not
  // Unix ns when `status` was observed. Health is sent when anything in it differs from what the
  // server has: a time that changes at every call makes every report carry the health.
  std::uint64_t status_time_ns = 0;
  std::map<std::string, std::string> attributes;      // figures, carried in `status` (above)
  std::map<std::string, ComponentHealth> components;  // by name ("input:eth0", "output:otlp")

  bool operator==(const ComponentHealth&) const = default;
};

// Who the agent is, as AgentDescription attributes (OpenTelemetry resource conventions):
// identifying: service.name, service.version, service.instance.id (the agent id, or the
// instance UID when the agent id is empty), cistern.agent.id (when set); non-identifying:
// host.name, os.type, os.description (those set), cistern.instance_uid (the UID's text form)
// and extra_attributes.
struct AgentDescription {
  std::string service_name = "cistern";
  std::string service_version;
  std::string host_name;
  std::string os_type;         // "linux", "windows"
  std::string os_description;  // "Debian GNU/Linux 12 (bookworm)"
  std::string agent_id;        // the configured agent id (OTLP's cistern.agent.id)
  std::map<std::string, std::string> extra_attributes;

  bool operator==(const AgentDescription&) const = default;
};

// One entry of a remote config's map.
struct RemoteConfigFile {
  std::string body;          // as sent (bytes)
  std::string content_type;  // as sent ("text/yaml"), may be empty

  bool operator==(const RemoteConfigFile&) const = default;
};

// A remote config as the server offered it: the config map, by file name, and its hash.
// Cistern's config is the entry "cistern.yaml"; when config_public_key_file is set, the entry
// "cistern.yaml.sig" holds the base64 of an ECDSA P-256 signature (ASN.1 DER, over SHA-256 of
// the exact bytes of "cistern.yaml"), and the client checks it before the agent sees the config:
//
//   openssl dgst -sha256 -sign key.pem cistern.yaml | base64 > cistern.yaml.sig
struct RemoteConfig {
  std::string hash;  // the server's config_hash: opaque bytes, not text
  std::map<std::string, RemoteConfigFile> files;

  bool operator==(const RemoteConfig&) const = default;
};

// OpAMP's RemoteConfigStatuses.
enum class RemoteConfigState { kUnset, kApplied, kApplying, kFailed };

// "unset", "applied", "applying", "failed".
const char* remoteConfigStateName(RemoteConfigState state) noexcept;

// The agent's side of the client: implemented by the agent. Every function is called on the
// event loop's thread and must not block it.
class OpampAgent {
 public:
  virtual ~OpampAgent() = default;

  // The agent's health (top level) with each input and output (and the buffer) as components.
  // Called for every message; the client compares it with what the server has and sends it only
  // when it differs (or in a full state).
  virtual ComponentHealth health() = 0;

  // The YAML text of the config in force, sent as the effective config's entry "cistern.yaml"
  // (content type text/yaml) when it differs from what the server has.
  virtual std::string effectiveConfig() = 0;

  // A remote config the agent has not seen (its hash differs from the last one received, or
  // applied before the start), signature checked when one is required. The client reported it
  // APPLYING; the agent validates and applies it asynchronously and then calls
  // OpampClient::reportRemoteConfig() with its hash and kApplied or kFailed (with the error).
  virtual void onRemoteConfig(RemoteConfig config) = 0;

  // The server assigned the agent a new instance UID (AgentIdentification), which the client
  // uses from now on; the agent should persist it. By default, nothing is persisted.
  virtual void onInstanceUidChanged(const InstanceUid& /*uid*/) {}
};

// The client's state, for metrics, /status and logs.
struct OpampStatus {
  std::string endpoint;
  bool connected = false;          // the last request was answered (2xx, no ServerErrorResponse)
  std::string last_error;          // of the last failed request; empty when the last one succeeded
  std::string remote_config_hash;  // hex of the last remote config received (or the one given)
  RemoteConfigState remote_config_state = RemoteConfigState::kUnset;
  std::string remote_config_error;  // with kFailed
  // In this order: requests_ok, requests_failed, remote_configs_received (new hashes),
  // remote_configs_refused (signature missing or invalid), remote_configs_applied,
  // remote_configs_failed (as the agent reported them), full_state_reports, heartbeat_interval_ms
  // (in effect: the server's or the configured one), retry_delay_ms (the backoff before the
  // next attempt; 0 when connected).
  std::vector<Counter> counters;
};

// The OpAMP client. Create it, start() it, and stop() it before the event loop stops and before
// destroying it (the destructor stops it without waiting for the server if stop() was not called;
// not on the loop thread).
class OpampClient {
 public:
  // Checks the options (the endpoint URL, headers, TLS files, the public key) and builds the
  // client on `loop`, which must outlive it; nothing is sent before start(). `description` is
  // reported as AgentDescription; `agent` (which must outlive the client) is asked for health and
  // effective config and given remote configs. `applied_remote_config_hash` is the hash of the
  // remote config the agent applied in an earlier run (persisted by the agent; empty if none):
  // it is reported APPLIED, and the server offering it again is not passed on. Not from the loop
  // thread. Errors: kConfig naming the option and what is wrong with it.
  static Result<std::unique_ptr<OpampClient>> create(
      platform::EventLoop& loop, const OpampOptions& options, const InstanceUid& instance_uid,
      AgentDescription description, OpampAgent& agent, std::string applied_remote_config_hash = {});

  virtual ~OpampClient() = default;

  // Sends the first report (full state) at once, then reports every heartbeat interval. Any
  // thread; once (later calls do nothing).
  virtual void start() = 0;

  // Something the agent reports changed (health, effective config): a report goes out after
  // `change_delay` instead of at the next heartbeat. Any thread; cheap.
  virtual void notifyChanged() = 0;

  // The agent finished (kApplied, kFailed with `error`) or began (kApplying) applying the remote
  // config with this hash; reported to the server after `change_delay`. A report for another hash
  // than the last one received (an older config, superseded) is ignored. Any thread.
  virtual void reportRemoteConfig(const std::string& hash, RemoteConfigState state,
                                  std::string error) = 0;

  // Replaces the agent description (reported after `change_delay`). Any thread.
  virtual void setDescription(AgentDescription description) = 0;

  // Stops reporting and tells the server (AgentDisconnect), waiting up to `wait` for its answer,
  // then closes the connection. The agent is not called during or after stop(). Idempotent; not
  // from the loop thread. After the loop was stopped, nothing is sent and the HTTP client is left
  // unreleased (it cannot be closed any more): stop the client first.
  virtual void stop(std::chrono::milliseconds wait) = 0;

  // Counters and state. Any thread.
  [[nodiscard]] virtual OpampStatus status() const = 0;
};

}  // namespace cistern::heartbeat
