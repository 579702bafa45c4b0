// ControlPlane: where the agent's configuration comes from and who manages it. It holds the
// local config file, the remote config the OpAMP server sent (applied on top of the local file:
// mergeRemoteConfig), the OpAMP client that reports the agent's health and effective config, and
// the store that keeps the last applied remote config for the next start.
//
// Remote configs and SIGHUP go through the same path: validate (the config parser), merge (the
// local-only sections refused), Runtime::apply (outputs and inputs replaced, unchanged ones kept
// running, rolled back on failure). A remote config is reported APPLIED once it runs, FAILED with
// the error otherwise (the previous config runs on). Only an applied one is persisted.
//
// Threads: prepare(), start(), poll(), reload() and stop() on the controlling (main) thread;
// the OpampAgent functions on the event loop's thread (they only queue and read); opamp() from
// any thread. The remote config is applied on the main thread (poll()), never on the loop, which
// Runtime::apply needs for the outputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cistern/agent/config.h"
#include "cistern/heartbeat/opamp.h"
#include "remote_config_store.h"
#include "runtime/runtime.h"
#include "status/status_source.h"

namespace cistern::agent {

class ControlPlane final : public heartbeat::OpampAgent {
 public:
  struct Options {
    std::filesystem::path config_file;  // the local config file
    std::string version;                // reported in the agent description
  };

  // Reads and validates the local config file and, when OpAMP is configured, the remote config
  // applied in an earlier run, merged on top (a stored config that no longer validates or merges
  // is logged and ignored: the local file runs). Errors: kConfig, kNotFound, kIo (the local
  // file, as loadConfigFile()).
  static Result<std::unique_ptr<ControlPlane>> prepare(Options options);

  ~ControlPlane() override;
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // The config to start the runtime with.
  [[nodiscard]] const Config& startConfig() const { return start_config_; }

  // After Runtime::start: creates and starts the OpAMP client when `opamp.endpoint` is set (the
  // instance UID in `<data_dir>/instance_uid`). `runtime` must outlive stop(). Errors: kConfig
  // (the opamp options), kIo/kCorrupt (the instance UID file).
  Status start(Runtime& runtime);

  // Applies the remote config the server sent, if one is waiting. Call often (the main loop).
  // Returns whether one was taken (applied or refused): the caller then sets what lives outside
  // the runtime (the log level) from Runtime::config().
  bool poll();

  // SIGHUP: the local file again, the applied remote config on top, validated and applied; the
  // running config stays on failure (logged). Changes to `opamp` and `status` are taken at the
  // next start (logged). Returns whether the new config runs.
  bool reload();

  // Stops the OpAMP client (it says goodbye to the server, waiting up to 2 s). Before the
  // runtime stops. Idempotent.
  void stop();

  // The OpAMP client's state for /status and /metrics; nullopt when OpAMP is not configured.
  [[nodiscard]] std::optional<heartbeat::OpampStatus> opamp() const;

  // --- OpampAgent (event loop thread) ---
  heartbeat::ComponentHealth health() override;
  std::string effectiveConfig() override;
  void onRemoteConfig(heartbeat::RemoteConfig config) override;
  void onInstanceUidChanged(const heartbeat::InstanceUid& uid) override;

 private:
  explicit ControlPlane(Options options) : options_(std::move(options)) {}

  void applyRemote(const heartbeat::RemoteConfig& offer);
  void report(const std::string& hash, heartbeat::RemoteConfigState state, std::string error);

  Options options_;
  Config local_;         // the local file's config (main thread)
  Config start_config_;  // what the runtime started with
  std::optional<RemoteConfigStore> store_;
  Runtime* runtime_ = nullptr;
  std::unique_ptr<heartbeat::OpampClient> client_;
  std::filesystem::path uid_file_;
  std::vector<std::string> start_notes_;  // what prepare() found, logged by start()
  std::uint64_t start_wall_ns_ = 0;       // Unix ns when the runtime started (health)

  mutable std::mutex mu_;
  std::string local_text_;   // guarded by mu_: the local file's text
  std::string remote_text_;  // guarded by mu_: the applied remote config's text; empty: none
  std::string remote_hash_;  // guarded by mu_: its hash
  std::optional<heartbeat::RemoteConfig> pending_;  // guarded by mu_: for poll()
};

// What the status API serves: the runtime's state with the OpAMP client's.
class AgentStatus final : public StatusSource {
 public:
  AgentStatus(const Runtime& runtime, const ControlPlane& control)
      : runtime_(runtime), control_(control) {}

  [[nodiscard]] std::vector<Metric> metrics() const override;
  [[nodiscard]] std::string statusJson() const override;
  [[nodiscard]] Health health() const override { return runtime_.health(); }

 private:
  const Runtime& runtime_;
  const ControlPlane& control_;
};

// The effective config as YAML text: the local file's text with each top-level section the
// remote text has replaced by the remote one (what mergeRemoteConfig does to the parsed config).
// Text that does not parse as a YAML mapping is taken as it is.
std::string mergeConfigText(const std::string& local_text, const std::string& remote_text);

}  // namespace cistern::agent
