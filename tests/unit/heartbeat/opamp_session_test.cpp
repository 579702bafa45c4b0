// OpampSession: sequence numbers, the full state when it is due and only changes otherwise, and
// the remote config decisions (new, same as the last, refused by signature, reports for an older
// config).
#include <string>

#include <catch2/catch.hpp>

#include "opamp_session.h"

namespace cistern::heartbeat {
namespace {

const InstanceUid kUid = {0x01, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0x7e, 0x5f,
                          0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b};

AgentDescription description() {
  AgentDescription d;
  d.service_version = "1.0.0";
  d.host_name = "sensor";
  return d;
}

ComponentHealth healthy() {
  ComponentHealth h;
  h.healthy = true;
  h.status = "running";
  return h;
}

bool full(const AgentToServerMessage& m) {
  return m.description && m.health && m.effective_config && m.remote_config_status;
}
bool bare(const AgentToServerMessage& m) {
  return !m.description && !m.health && !m.effective_config && !m.remote_config_status &&
         !m.disconnect;
}

RemoteConfig remote(const std::string& hash) {
  return RemoteConfig{hash, {{"cistern.yaml", {"inputs: []\n", "text/yaml"}}}};
}

TEST_CASE("the first report carries the full state, unchanged heartbeats nothing more", "[unit]") {
  OpampSession s(kUid, description(), {});
  const auto first = s.nextReport(healthy(), "a: 1\n");
  CHECK(first.sequence_num == 1);
  CHECK(first.instance_uid == kUid);
  CHECK(first.capabilities == kCisternCapabilities);
  CHECK(full(first));
  CHECK(first.remote_config_status == RemoteConfigStatusReport{});  // UNSET, no hash
  s.answered();

  const auto second = s.nextReport(healthy(), "a: 1\n");
  CHECK(second.sequence_num == 2);
  CHECK(second.capabilities == kCisternCapabilities);
  CHECK(bare(second));
  s.answered();

  auto sick = healthy();
  sick.healthy = false;
  sick.components["output:otlp"].status = "down";
  const auto third = s.nextReport(sick, "a: 1\n");
  CHECK(third.health == sick);
  CHECK_FALSE(third.description);
  CHECK_FALSE(third.effective_config);
  s.answered();

  const auto fourth = s.nextReport(sick, "a: 2\n");
  CHECK(fourth.effective_config == std::string("a: 2\n"));
  CHECK_FALSE(fourth.health);
  s.answered();

  auto d = description();
  d.service_version = "1.0.1";
  s.setDescription(d);
  const auto fifth = s.nextReport(sick, "a: 2\n");
  REQUIRE(fifth.description);
  CHECK(fifth.description->identifying[1] ==
        std::pair<std::string, std::string>("service.version", "1.0.1"));
  CHECK_FALSE(fifth.health);
  CHECK(s.lastSequenceNum() == 5);
}

TEST_CASE("after a lost report, a ReportFullState or a new UID, the full state again", "[unit]") {
  OpampSession s(kUid, description(), {});
  s.nextReport(healthy(), "y");
  s.answered();
  CHECK(bare(s.nextReport(healthy(), "y")));
  s.lost();
  CHECK(s.fullStateDue());
  CHECK(full(s.nextReport(healthy(), "y")));
  s.answered();
  CHECK(bare(s.nextReport(healthy(), "y")));
  s.answered();

  s.requestFullState();
  CHECK(full(s.nextReport(healthy(), "y")));
  s.answered();

  InstanceUid other = kUid;
  other[15] = 0;
  s.setInstanceUid(other);
  const auto renamed = s.nextReport(healthy(), "y");
  CHECK(full(renamed));
  CHECK(renamed.instance_uid == other);
}

TEST_CASE("a change that was not answered is sent again", "[unit]") {
  OpampSession s(kUid, description(), {});
  s.nextReport(healthy(), "y");
  s.answered();
  auto sick = healthy();
  sick.healthy = false;
  CHECK(s.nextReport(sick, "y").health);  // not answered (in flight, then nothing)
  // The server only has the first report: the change is still a change.
  CHECK(s.nextReport(sick, "y").health);
}

TEST_CASE("the disconnect message is numbered and carries AgentDisconnect", "[unit]") {
  OpampSession s(kUid, description(), {});
  s.nextReport(healthy(), "y");
  const auto bye = s.disconnectMessage();
  CHECK(bye.sequence_num == 2);
  CHECK(bye.disconnect);
  CHECK(bye.capabilities == kCisternCapabilities);
}

TEST_CASE("remote configs: new ones are accepted once, reports follow the last one", "[unit]") {
  OpampSession s(kUid, description(), {});
  const auto a = s.offer(remote("A"), nullptr);
  CHECK(a.outcome == OpampSession::Offer::kAccepted);
  CHECK(s.remoteConfigStatus() == RemoteConfigStatusReport{"A", RemoteConfigState::kApplying, {}});
  CHECK(s.offer(remote("A"), nullptr).outcome == OpampSession::Offer::kSameAsLast);
  CHECK(s.offer(remote(""), nullptr).outcome == OpampSession::Offer::kNoHash);

  CHECK(s.reportRemoteConfig("A", RemoteConfigState::kApplied, "ignored"));
  CHECK(s.remoteConfigStatus() == RemoteConfigStatusReport{"A", RemoteConfigState::kApplied, {}});

  CHECK(s.offer(remote("B"), nullptr).outcome == OpampSession::Offer::kAccepted);
  // A late report for A changes nothing.
  CHECK_FALSE(s.reportRemoteConfig("A", RemoteConfigState::kFailed, "late"));
  CHECK(s.reportRemoteConfig("B", RemoteConfigState::kFailed, "unknown key 'x'"));
  CHECK(s.remoteConfigStatus() ==
        RemoteConfigStatusReport{"B", RemoteConfigState::kFailed, "unknown key 'x'"});
  // A failed config is not tried again either.
  CHECK(s.offer(remote("B"), nullptr).outcome == OpampSession::Offer::kSameAsLast);
}

TEST_CASE("the hash applied before the start is reported and not applied again", "[unit]") {
  OpampSession s(kUid, description(), "P");
  const auto first = s.nextReport(healthy(), "y");
  CHECK(first.remote_config_status ==
        RemoteConfigStatusReport{"P", RemoteConfigState::kApplied, {}});
  CHECK(s.offer(remote("P"), nullptr).outcome == OpampSession::Offer::kSameAsLast);
  CHECK(s.offer(remote("Q"), nullptr).outcome == OpampSession::Offer::kAccepted);
}

TEST_CASE("a status change goes out in the next report, once", "[unit]") {
  OpampSession s(kUid, description(), {});
  s.nextReport(healthy(), "y");
  s.answered();
  s.offer(remote("A"), nullptr);
  const auto applying = s.nextReport(healthy(), "y");
  CHECK(applying.remote_config_status ==
        RemoteConfigStatusReport{"A", RemoteConfigState::kApplying, {}});
  s.answered();
  CHECK_FALSE(s.nextReport(healthy(), "y").remote_config_status);
  s.answered();
  s.reportRemoteConfig("A", RemoteConfigState::kApplied, {});
  CHECK(s.nextReport(healthy(), "y").remote_config_status ==
        RemoteConfigStatusReport{"A", RemoteConfigState::kApplied, {}});
}

}  // namespace
}  // namespace cistern::heartbeat
