#include "control_plane.h"

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent_log.h"
#include "cistern/heartbeat/instance_uid.h"
#include "cistern/platform/files.h"
#include "cistern/platform/process.h"

namespace cistern::agent {
namespace {

using heartbeat::ComponentHealth;
using heartbeat::RemoteConfigState;

constexpr const char* kConfigEntry = "cistern.yaml";
constexpr std::chrono::milliseconds kGoodbyeWait{2000};

std::uint64_t unixNanos() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// The first 12 hex digits of a hash, for logs and origins.
std::string shortHash(const std::string& hash) { return toHex(hash).substr(0, 12); }

void addCounters(std::map<std::string, std::string>& attributes,
                 const std::vector<Counter>& counters) {
  for (const auto& c : counters) {
    if (c.known) attributes[c.name] = std::to_string(c.value);
  }
}

}  // namespace

std::string mergeConfigText(const std::string& local_text, const std::string& remote_text) {
  if (remote_text.empty()) return local_text;
  try {
    YAML::Node local = YAML::Load(local_text);
    const YAML::Node remote = YAML::Load(remote_text);
    if (!local.IsMap() || !remote.IsMap()) return remote_text;
    for (const auto& entry : remote) local[entry.first.as<std::string>()] = entry.second;
    YAML::Emitter out;
    out << local;
    return std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception&) {
    return remote_text;
  }
}

Result<std::unique_ptr<ControlPlane>> ControlPlane::prepare(Options options) {
  std::unique_ptr<ControlPlane> self(new ControlPlane(std::move(options)));
  auto local = loadConfigFile(self->options_.config_file);
  if (!local) return tl::make_unexpected(local.error());
  self->local_ = *local;
  self->start_config_ = *local;
  if (auto text = platform::readSmallFile(self->options_.config_file, kMaxConfigBytes + 1)) {
    self->local_text_ = std::move(*text);
  }
  if (local->opamp.endpoint.empty()) return self;

  self->store_.emplace(local->agent.data_dir / "opamp");
  auto stored = self->store_->load();
  if (!stored) {
    self->start_notes_.push_back(
        fmt::format("the remote config applied earlier cannot be used; starting on {}: {}",
                    self->options_.config_file.string(), stored.error().message));
    return self;
  }
  if (!stored->has_value()) return self;
  auto merged = mergeRemoteConfig(*local, (*stored)->text,
                                  (self->store_->dir() / "remote_config.yaml").string());
  if (!merged) {
    self->start_notes_.push_back(fmt::format(
        "the remote config applied earlier (hash {}) no longer applies to {}; "
        "starting on the local file:\n{}",
        shortHash((*stored)->hash), self->options_.config_file.string(), merged.error().message));
    return self;
  }
  self->start_notes_.push_back(
      fmt::format("starting with the remote config applied earlier (hash {}) over {}",
                  shortHash((*stored)->hash), self->options_.config_file.string()));
  self->start_config_ = std::move(*merged);
  self->remote_text_ = std::move((*stored)->text);
  self->remote_hash_ = std::move((*stored)->hash);
  return self;
}

ControlPlane::~ControlPlane() { stop(); }

Status ControlPlane::start(Runtime& runtime) {
  runtime_ = &runtime;
  start_wall_ns_ = unixNanos() - static_cast<std::uint64_t>(runtime.uptime().count());
  for (const auto& note : start_notes_) agentLogger()->warn("{}", note);
  const Config& cfg = start_config_;
  if (cfg.opamp.endpoint.empty()) return ok();
  uid_file_ = cfg.agent.data_dir / "instance_uid";
  auto uid = heartbeat::loadOrCreateInstanceUid(uid_file_);
  if (!uid) return tl::make_unexpected(uid.error());
  heartbeat::AgentDescription description;
  description.service_version = options_.version;
  description.host_name = platform::hostName();
  description.os_type = "linux";
  description.os_description = platform::osDescription();
  description.agent_id = cfg.agent.id;
  std::string applied_hash;
  {
    std::lock_guard lk(mu_);
    applied_hash = remote_hash_;
  }
  auto client = heartbeat::OpampClient::create(runtime.loop(), cfg.opamp, *uid,
                                               std::move(description), *this, applied_hash);
  if (!client) return tl::make_unexpected(client.error());
  client_ = std::move(*client);
  client_->start();
  return ok();
}

void ControlPlane::stop() {
  if (client_) client_->stop(kGoodbyeWait);
}

std::optional<heartbeat::OpampStatus> ControlPlane::opamp() const {
  if (!client_) return std::nullopt;
  return client_->status();
}

void ControlPlane::report(const std::string& hash, RemoteConfigState state, std::string error) {
  if (client_) client_->reportRemoteConfig(hash, state, std::move(error));
}

bool ControlPlane::poll() {
  std::optional<heartbeat::RemoteConfig> offer;
  {
    std::lock_guard lk(mu_);
    offer.swap(pending_);
  }
  if (!offer) return false;
  applyRemote(*offer);
  return true;
}

void ControlPlane::applyRemote(const heartbeat::RemoteConfig& offer) {
  auto log = agentLogger();
  const std::string origin = fmt::format("remote config {}", shortHash(offer.hash));
  const auto failed = [&](std::string why) {
    if (why.rfind(origin, 0) == 0) {
      log->error("{}", why);  // the parser's diagnostics name it already
    } else {
      log->error("{}: refused: {}", origin, why);
    }
    report(offer.hash, RemoteConfigState::kFailed, std::move(why));
  };
  // An empty config map withdraws the remote config: the local file alone runs again.
  if (offer.files.empty()) {
    if (auto applied = runtime_->apply(local_, origin + " (withdrawn)"); !applied) {
      failed(applied.error().message);
      return;
    }
    if (store_) {
      if (auto cleared = store_->clear(); !cleared) log->warn("{}", cleared.error().message);
    }
    {
      std::lock_guard lk(mu_);
      remote_text_.clear();
      remote_hash_ = offer.hash;
    }
    log->info("{}: withdrawn; running on {} alone", origin, options_.config_file.string());
    report(offer.hash, RemoteConfigState::kApplied, {});
    if (client_) client_->notifyChanged();
    return;
  }
  const auto entry = offer.files.find(kConfigEntry);
  if (entry == offer.files.end()) {
    std::string names;
    for (const auto& [name, file] : offer.files) names += (names.empty() ? "" : ", ") + name;
    failed(fmt::format("the config map has no entry '{}' (it has: {})", kConfigEntry, names));
    return;
  }
  const std::string& text = entry->second.body;
  auto merged = mergeRemoteConfig(local_, text, origin);
  if (!merged) {
    failed(merged.error().message);
    return;
  }
  if (auto applied = runtime_->apply(*merged, origin); !applied) {
    failed(applied.error().message);
    return;
  }
  if (store_) {
    if (auto saved = store_->save({offer.hash, text}); !saved) {
      log->warn("{}: applied, but it could not be kept for the next start: {}", origin,
                saved.error().message);
    }
  }
  {
    std::lock_guard lk(mu_);
    remote_text_ = text;
    remote_hash_ = offer.hash;
  }
  report(offer.hash, RemoteConfigState::kApplied, {});
  if (client_) client_->notifyChanged();
}

bool ControlPlane::reload() {
  auto log = agentLogger();
  log->info("SIGHUP: reloading {}", options_.config_file.string());
  auto next = loadConfigFile(options_.config_file);
  if (!next) {
    log->error("SIGHUP: {} is not valid; the running config stays:\n{}",
               options_.config_file.string(), next.error().message);
    return false;
  }
  if (!(next->opamp == local_.opamp) || !(next->status == local_.status)) {
    log->warn("SIGHUP: changes to 'opamp' and 'status' take effect at the next start");
    next->opamp = local_.opamp;
    next->status = local_.status;
  }
  std::string remote_text;
  {
    std::lock_guard lk(mu_);
    remote_text = remote_text_;
  }
  Config effective = *next;
  if (!remote_text.empty()) {
    auto merged = mergeRemoteConfig(*next, remote_text, "the applied remote config");
    if (!merged) {
      log->error(
          "SIGHUP: the applied remote config does not fit the new local file; the running "
          "config stays:\n{}",
          merged.error().message);
      return false;
    }
    effective = std::move(*merged);
  }
  if (auto applied = runtime_->apply(effective, "SIGHUP"); !applied) return false;
  local_ = std::move(*next);
  if (auto text = platform::readSmallFile(options_.config_file, kMaxConfigBytes + 1)) {
    std::lock_guard lk(mu_);
    local_text_ = std::move(*text);
  }
  if (client_) client_->notifyChanged();
  return true;
}

// --- OpampAgent (event loop thread) ---

ComponentHealth ControlPlane::health() {
  ComponentHealth top;
  if (runtime_ == nullptr) return top;
  const auto overall = runtime_->health();
  top.healthy = overall.ok;
  top.status = overall.ok ? "running" : "degraded";
  if (!overall.ok) top.last_error = overall.reason;
  const auto now = unixNanos();
  top.start_time_ns = start_wall_ns_;
  top.status_time_ns = now;

  const auto stats = runtime_->ring().stats();
  top.attributes["backlog_bytes"] = std::to_string(stats.used_bytes);
  top.attributes["backlog_records"] = std::to_string(stats.records);
  top.attributes["oldest_age_ms"] = std::to_string(
      stats.oldest_ts != 0 && now > stats.oldest_ts ? (now - stats.oldest_ts) / 1'000'000 : 0);
  top.attributes["dropped_evicted_records"] = std::to_string(stats.evicted_records);
  top.attributes["dropped_queue_full_records"] = std::to_string(stats.refused_queue_full);
  top.attributes["dropped_invalid_records"] = std::to_string(stats.refused_invalid);
  top.attributes["dropped_map_full_records"] = std::to_string(stats.dropped_map_full);

  std::uint64_t capture_dropped = 0;
  for (const auto& in : runtime_->inputStates()) {
    ComponentHealth c;
    c.healthy = in.healthy;
    c.status = !in.healthy ? "failed" : (in.finished ? "finished" : "running");
    c.last_error = in.problem;
    c.start_time_ns = top.start_time_ns;
    c.status_time_ns = now;
    c.attributes["type"] = in.type;
    addCounters(c.attributes, in.counters);
    for (const auto& counter : in.counters) {
      if (counter.known && counter.name.find("dropped") != std::string::npos) {
        capture_dropped += counter.value;
      }
    }
    top.components["input:" + in.name] = std::move(c);
  }
  top.attributes["capture_dropped_packets"] = std::to_string(capture_dropped);

  const auto consumers = runtime_->ring().consumerStats();
  for (const auto& out : runtime_->outputStatus()) {
    ComponentHealth c;
    c.healthy = out.state == "healthy";
    c.status = out.state;
    c.last_error = out.last_error;
    c.start_time_ns = top.start_time_ns;
    c.status_time_ns = now;
    c.attributes["type"] = out.type;
    c.attributes["endpoint"] = out.endpoint;
    addCounters(c.attributes, out.counters);
    for (const auto& consumer : consumers) {
      if (consumer.name != out.name) continue;
      c.attributes["backlog_records"] = std::to_string(consumer.pending_records);
      c.attributes["backlog_frames"] = std::to_string(consumer.pending_frames);
      c.attributes["dropped_evicted_records"] = std::to_string(consumer.evicted_records);
    }
    top.components["output:" + out.name] = std::move(c);
  }
  return top;
}

std::string ControlPlane::effectiveConfig() {
  std::lock_guard lk(mu_);
  return mergeConfigText(local_text_, remote_text_);
}

void ControlPlane::onRemoteConfig(heartbeat::RemoteConfig config) {
  std::lock_guard lk(mu_);
  pending_ = std::move(config);  // a newer offer supersedes one not applied yet
}

void ControlPlane::onInstanceUidChanged(const heartbeat::InstanceUid& uid) {
  if (auto saved = heartbeat::saveInstanceUid(uid_file_, uid); !saved) {
    agentLogger()->error("opamp: the server assigned instance UID {}, but {}",
                         heartbeat::formatUuid(uid), saved.error().message);
    return;
  }
  agentLogger()->info("opamp: the server assigned instance UID {}", heartbeat::formatUuid(uid));
}

// --- AgentStatus ---

std::vector<Metric> AgentStatus::metrics() const {
  auto out = runtime_.metrics();
  const auto status = control_.opamp();
  if (!status) return out;
  for (const auto& c : status->counters) {
    if (!c.known) continue;
    const bool gauge = c.name == "heartbeat_interval_ms" || c.name == "retry_delay_ms";
    std::string name = c.name;
    auto value = static_cast<double>(c.value);
    if (gauge) {
      name = name.substr(0, name.size() - 3) + "_seconds";
      value /= 1000.0;
    }
    out.push_back(
        {fmt::format("cistern_opamp_{}{}", name, gauge ? "" : "_total"),
         fmt::format("OpAMP client: {} (see heartbeat/include/cistern/heartbeat/opamp.h)", c.name),
         gauge ? "gauge" : "counter",
         {},
         value});
  }
  out.push_back({"cistern_opamp_connected",
                 "1 when the OpAMP server answered the last request",
                 "gauge",
                 {},
                 status->connected ? 1.0 : 0.0});
  out.push_back({"cistern_opamp_remote_config_failed",
                 "1 when the last remote config was refused or failed to apply",
                 "gauge",
                 {},
                 status->remote_config_state == RemoteConfigState::kFailed ? 1.0 : 0.0});
  return out;
}

std::string AgentStatus::statusJson() const {
  auto j = runtime_.statusObject();
  const auto status = control_.opamp();
  if (!status) {
    j["opamp"] = {{"enabled", false}};
    return j.dump();
  }
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& c : status->counters) {
    if (c.known) counters[c.name] = c.value;
  }
  j["opamp"] = {
      {"enabled", true},
      {"endpoint", status->endpoint},
      {"state", status->connected ? "connected" : "unreachable"},
      {"connected", status->connected},
      {"last_error", status->last_error},
      {"remote_config_hash", status->remote_config_hash},
      {"remote_config_status", heartbeat::remoteConfigStateName(status->remote_config_state)},
      {"remote_config_error", status->remote_config_error},
      {"counters", counters},
  };
  return j.dump();
}

}  // namespace cistern::agent
