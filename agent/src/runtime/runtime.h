// Runtime: the running agent. It owns the ring buffer, the event loop, the outputs (Transport)
// and the inputs, starts them in order, applies a new config to them without losing buffered
// data (validate, apply, roll back on failure), and stops them in order. It is also what the
// local status API and the OpAMP heartbeat read.
//
// Start: the ring, then the outputs (they drain the backlog of earlier runs), then the inputs.
// Stop: the inputs (a grace period, then the ring is closed under inputs still waiting for room),
// the ring's last commit, the outputs (a grace period for what they have in flight), the ring.
//
// Reconfiguration (apply): the ring stays open; `agent` and `buffer` cannot change without a
// restart. Outputs are replaced through Transport::update (unchanged ones keep running). Inputs
// are compared by name: an unchanged input keeps running, a removed one stops, a new one starts,
// and a changed one is replaced; a changed pcap input's successor is opened before the old one
// stops, so the capture gap is the time between the old one's last packet and the new one's
// start (measured and reported). If any new component cannot start, what was changed is undone
// and the old config runs on; the error says what failed.
//
// Threads: start(), apply(), stop() from one controlling thread (the main thread); the status
// functions from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cistern/agent/config.h"
#include "cistern/buffer/ring.h"
#include "cistern/capture/source.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/outputs.h"
#include "status/status_source.h"

namespace cistern::agent {

class Runtime final : public StatusSource {
 public:
  struct Options {
    std::string version;
  };

  // Opens the ring under config.agent.data_dir, starts the event loop, the outputs and the
  // inputs. Every output and input that cannot start is reported in one error and nothing runs
  // then. Errors: kIo (the ring or the loop), kConfig (inputs and outputs, each named).
  static Result<std::unique_ptr<Runtime>> start(const Config& config, const Options& options);

  ~Runtime() override;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Applies `next` (see the header comment). `origin` names the change in logs ("SIGHUP",
  // "remote config 3f2a..."). Errors: kConfig (a restart-only section changed, or a component of
  // the new config could not start; the old config runs on).
  Status apply(const Config& next, const std::string& origin);

  // The config in force.
  [[nodiscard]] Config config() const;

  // Every input finished (pcap files read to the end); false when there are none.
  [[nodiscard]] bool inputsFinished() const;
  // What the inputs handed over is committed and every output acknowledged everything.
  [[nodiscard]] bool delivered();

  // Since start().
  [[nodiscard]] std::chrono::nanoseconds uptime() const {
    return std::chrono::steady_clock::now() - started_at_;
  }

  // Logs every input's and output's counters.
  void logStats() const;

  // Stops everything in order (see the header comment). Returns an exit status: 0, or 2 when
  // the last commit or closing the ring failed (said on `err`). Idempotent.
  int stop(std::FILE* err);

  // The final report of `cistern run`: inputs, outputs and the buffer's totals. After stop().
  [[nodiscard]] nlohmann::json report() const;

  // Capture gaps of inputs replaced by reconfigurations, newest last (input name, gap).
  struct Gap {
    std::string input;
    std::chrono::nanoseconds gap{};
  };
  [[nodiscard]] std::vector<Gap> gaps() const;

  // --- StatusSource ---
  [[nodiscard]] std::vector<Metric> metrics() const override;
  [[nodiscard]] std::string statusJson() const override;
  // What statusJson() serializes, for callers that add to it (the control plane's OpAMP state).
  [[nodiscard]] nlohmann::json statusObject() const;
  [[nodiscard]] Health health() const override;

  // The parts, for the OpAMP bridge and the commands.
  [[nodiscard]] buffer::LmdbRing& ring() { return *ring_; }
  [[nodiscard]] platform::EventLoop& loop() { return *loop_; }
  [[nodiscard]] std::vector<transport::OutputStatus> outputStatus() const;

  struct InputState {
    std::string name;
    std::string type;
    bool finished = false;
    bool healthy = true;
    std::string problem;  // why not healthy
    std::vector<Counter> counters;
  };
  [[nodiscard]] std::vector<InputState> inputStates() const;

  struct Input {
    InputConfig config;
    std::string type;
    std::unique_ptr<capture::Source> source;
  };

 private:
  Runtime() = default;

  Status startOutputsAndInputs();
  Status applyInputs(const std::vector<InputConfig>& next, std::vector<Gap>& gaps);
  transport::Transport::CursorFor cursorFor();

  Options options_;
  mutable std::mutex config_mu_;
  Config config_;  // guarded by config_mu_
  std::unique_ptr<buffer::LmdbRing> ring_;
  std::unique_ptr<platform::EventLoop> loop_;
  std::unique_ptr<transport::Transport> transport_;
  mutable std::mutex inputs_mu_;  // the list; apply() changes it, status readers read it
  std::vector<Input> inputs_;
  std::vector<Gap> gaps_;  // guarded by inputs_mu_
  // While applyInputs() rebuilds the list: what inputStates() answers. Guarded by inputs_mu_.
  std::optional<std::vector<InputState>> frozen_inputs_;
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  std::uint64_t reloads_ok_ = 0;      // guarded by config_mu_
  std::uint64_t reloads_failed_ = 0;  // guarded by config_mu_
  bool stopped_ = false;
  bool ring_closed_ = false;
  buffer::RingStats final_stats_;
  std::vector<buffer::ConsumerStats> final_consumers_;
  std::vector<transport::OutputStatus> final_outputs_;
};

// Makes an input's source from its config (any type). Errors as the make*Source functions.
Result<std::unique_ptr<capture::Source>> makeSource(const InputConfig& input, RecordSink& sink);

}  // namespace cistern::agent
