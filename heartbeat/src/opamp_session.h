// OpampSession: the protocol state of the agent's conversation with its OpAMP server, without
// I/O or time: sequence numbers, what the server already has (so a report carries only what
// changed), when the full state is due, and which remote configs are new.
//
// The client builds a report, sends it, and tells the session how it went: answered() (the
// server has what the report carried) or lost() (it may not: the next report carries the full
// state, as after a broken sequence). One report at a time.
//
// Threads: one (the client's loop thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "cistern/heartbeat/instance_uid.h"
#include "cistern/heartbeat/opamp.h"
#include "opamp_codec.h"

namespace cistern::heartbeat {

class ConfigSignatureVerifier;

class OpampSession {
 public:
  // `applied_hash`: the remote config applied in an earlier run (reported APPLIED); empty: none
  // (reported UNSET).
  OpampSession(const InstanceUid& instance_uid, AgentDescription description,
               std::string applied_hash);

  // The next report, with the agent's health and effective config as they are now: the full
  // state when due (the first report, after lost(), after requestFullState() or a new instance
  // UID), otherwise what differs from what the server has. Numbers it (+1 each).
  AgentToServerMessage nextReport(ComponentHealth health, std::string effective_config);

  // The agent's last message (AgentDisconnect), numbered like a report.
  AgentToServerMessage disconnectMessage();

  // The last report was answered: the server has its state.
  void answered();
  // The last report may not have reached the server: the next one carries the full state.
  void lost() { full_state_due_ = true; }
  // The server asked for the full state (ReportFullState).
  void requestFullState() { full_state_due_ = true; }
  [[nodiscard]] bool fullStateDue() const { return full_state_due_; }

  void setDescription(AgentDescription description) { description_ = std::move(description); }
  // The server assigned a new instance UID: used from the next message, which carries the full
  // state (to the server, a new agent).
  void setInstanceUid(const InstanceUid& instance_uid);
  [[nodiscard]] const InstanceUid& instanceUid() const { return instance_uid_; }

  enum class Offer {
    kAccepted,    // new: now APPLYING; hand it to the agent
    kRefused,     // new, but its signature is missing or invalid: now FAILED with `error`
    kSameAsLast,  // the hash of the last one received (or applied before the start): ignored
    kNoHash,      // no config_hash: ignored (a server that offers configs must set it)
  };
  struct OfferResult {
    Offer outcome = Offer::kNoHash;
    std::string error;  // kRefused
  };
  // A remote config offered by the server. `verifier`: when not null, the signature is checked.
  OfferResult offer(const RemoteConfig& config, const ConfigSignatureVerifier* verifier);

  // The agent's report on the remote config with this hash; false (and nothing changes) when
  // the hash is not the last one received.
  bool reportRemoteConfig(const std::string& hash, RemoteConfigState state, std::string error);

  [[nodiscard]] const RemoteConfigStatusReport& remoteConfigStatus() const { return status_; }
  [[nodiscard]] std::uint64_t lastSequenceNum() const { return sequence_num_; }

 private:
  struct Snapshot {
    DescriptionAttributes description;
    ComponentHealth health;
    std::string effective_config;
    RemoteConfigStatusReport remote_config_status;
  };

  InstanceUid instance_uid_;
  AgentDescription description_;
  RemoteConfigStatusReport status_;
  std::uint64_t sequence_num_ = 0;
  bool full_state_due_ = true;
  std::optional<Snapshot> server_has_;  // after the last answered report
  std::optional<Snapshot> last_built_;  // the state as of the last report built
};

}  // namespace cistern::heartbeat
