// AgentProcess: `cistern run -c CONFIG` as a child process for integration tests: started, read
// while it runs (so its pipes never fill), stopped with SIGTERM, and its JSON report parsed.
//
//   AgentProcess agent(config_path);
//   REQUIRE(agent.waitFor([&] { return mock.records().size() >= 100; }, 30s));
//   const auto report = agent.stop();               // SIGTERM; the last stdout line as JSON
//   CHECK(AgentProcess::output(report, "otlp")["counters"]["records_acked"] == 100);
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "subprocess.h"

namespace cistern::testing {

class AgentProcess {
 public:
  explicit AgentProcess(const std::filesystem::path& config,
                        std::vector<std::string> extra_args = {}) {
    std::vector<std::string> argv = {binary("agent/cistern"), "run", "-c", config.string(),
                                     "--stats-interval",      "1"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    child_ = std::make_unique<Child>(argv);
  }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;
  ~AgentProcess() {
    if (!stopped_) child_->kill(SIGKILL);
  }

  // Runs (reading the child's output) until `done` holds, the child exits, or the timeout.
  bool waitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (!child_->pump(std::chrono::milliseconds(20))) return done();
    }
    return true;
  }

  // Keeps the child's pipes drained for `d`.
  void idle(std::chrono::milliseconds d) {
    waitFor([] { return false; }, d);
  }

  // SIGTERM, waits for exit (SIGKILL after `timeout`), returns the report (null when none).
  nlohmann::json stop(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    child_->kill(SIGTERM);
    return waitExit(timeout);
  }

  // Waits for the child to exit by itself; returns the report as stop() does.
  nlohmann::json waitExit(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (child_->pump(std::chrono::milliseconds(50))) {
      if (std::chrono::steady_clock::now() > deadline) {
        child_->kill(SIGKILL);
        break;
      }
    }
    exit_code_ = child_->wait();
    stopped_ = true;
    while (child_->pump(std::chrono::milliseconds(10))) {
    }
    const std::string& out = child_->out();
    const auto end = out.find_last_not_of('\n');
    if (end == std::string::npos) return nullptr;
    const auto start = out.rfind('\n', end);
    return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1), nullptr,
                                 false);
  }

  // SIGKILL: a crash. Waits for the child.
  void kill() {
    child_->kill(SIGKILL);
    exit_code_ = child_->wait();
    stopped_ = true;
  }

  [[nodiscard]] int exitCode() const { return exit_code_; }
  [[nodiscard]] const std::string& err() const { return child_->err(); }
  [[nodiscard]] pid_t pid() const { return child_->pid(); }

  // The entry of `report["outputs"]` named `name` (null when absent).
  static nlohmann::json output(const nlohmann::json& report, const std::string& name) {
    if (!report.is_object() || !report.contains("outputs")) return nullptr;
    for (const auto& o : report["outputs"]) {
      if (o["name"] == name) return o;
    }
    return nullptr;
  }
  // One counter of an output, or -1.
  static std::int64_t outputCounter(const nlohmann::json& report, const std::string& name,
                                    const std::string& counter) {
    const auto o = output(report, name);
    if (o.is_null()) return -1;
    return o["counters"].value(counter, std::int64_t{-1});
  }

 private:
  std::unique_ptr<Child> child_;
  bool stopped_ = false;
  int exit_code_ = -1;
};

}  // namespace cistern::testing
