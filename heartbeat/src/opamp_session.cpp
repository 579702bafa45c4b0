#include "opamp_session.h"

#include <utility>

#include "config_signature.h"

namespace cistern::heartbeat {

OpampSession::OpampSession(const InstanceUid& instance_uid, AgentDescription description,
                           std::string applied_hash)
    : instance_uid_(instance_uid), description_(std::move(description)) {
  if (!applied_hash.empty()) {
    status_ = RemoteConfigStatusReport{std::move(applied_hash), RemoteConfigState::kApplied, {}};
  }
}

AgentToServerMessage OpampSession::nextReport(ComponentHealth health,
                                              std::string effective_config) {
  Snapshot now{describeAgent(description_, instance_uid_), std::move(health),
               std::move(effective_config), status_};
  AgentToServerMessage message;
  message.instance_uid = instance_uid_;
  message.sequence_num = ++sequence_num_;
  message.capabilities = kCisternCapabilities;
  const bool full = full_state_due_ || !server_has_;
  if (full || now.description != server_has_->description) message.description = now.description;
  if (full || now.health != server_has_->health) message.health = now.health;
  if (full || now.effective_config != server_has_->effective_config) {
    message.effective_config = now.effective_config;
  }
  if (full || now.remote_config_status != server_has_->remote_config_status) {
    message.remote_config_status = now.remote_config_status;
  }
  full_state_due_ = false;
  last_built_ = std::move(now);
  return message;
}

AgentToServerMessage OpampSession::disconnectMessage() {
  AgentToServerMessage message;
  message.instance_uid = instance_uid_;
  message.sequence_num = ++sequence_num_;
  message.capabilities = kCisternCapabilities;
  message.disconnect = true;
  return message;
}

void OpampSession::answered() {
  if (last_built_) server_has_ = last_built_;
}

void OpampSession::setInstanceUid(const InstanceUid& instance_uid) {
  if (instance_uid == instance_uid_) return;
  instance_uid_ = instance_uid;
  full_state_due_ = true;
}

OpampSession::OfferResult OpampSession::offer(const RemoteConfig& config,
                                              const ConfigSignatureVerifier* verifier) {
  if (config.hash.empty()) return {Offer::kNoHash, {}};
  if (config.hash == status_.hash) return {Offer::kSameAsLast, {}};
  status_ = RemoteConfigStatusReport{config.hash, RemoteConfigState::kApplying, {}};
  if (verifier != nullptr) {
    auto verified = verifier->verifyConfig(config);
    if (!verified) {
      status_.state = RemoteConfigState::kFailed;
      status_.error = verified.error().message;
      return {Offer::kRefused, status_.error};
    }
  }
  return {Offer::kAccepted, {}};
}

bool OpampSession::reportRemoteConfig(const std::string& hash, RemoteConfigState state,
                                      std::string error) {
  if (hash != status_.hash) return false;
  status_.state = state;
  status_.error = state == RemoteConfigState::kFailed ? std::move(error) : std::string();
  return true;
}

}  // namespace cistern::heartbeat
