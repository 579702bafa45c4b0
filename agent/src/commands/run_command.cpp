// `cistern run -c FILE`: the agent's main job. Starts the runtime (the ring, the outputs, the
// inputs; every one that cannot start is reported, all at once), captures and delivers until
// SIGINT or SIGTERM (or, with --exit-when-done, until every input finished and every output
// delivered everything), reloads the config file on SIGHUP and applies remote configs from the
// OpAMP server (validate, apply, roll back on failure: control/control_plane.h), serves the local
// status API (status/status_server.h), then stops in order and prints every counter as one JSON
// object.
//
// Signals are blocked before any thread starts and taken with sigtimedwait() on this thread, so
// no handler runs inside a capture, writer or loop thread. A second SIGINT/SIGTERM while the
// agent stops exits at once: everything committed is safe (the ring survives kill -9); what was
// in flight is sent again at the next start.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <memory>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent_log.h"
#include "cistern/agent/commands.h"
#include "cistern/agent/config.h"
#include "control/control_plane.h"
#include "runtime/runtime.h"
#include "status/status_server.h"

namespace cistern::agent {
namespace {

using Clock = std::chrono::steady_clock;

spdlog::level::level_enum toSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

sigset_t stopAndReloadSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  return signals;
}

}  // namespace

int runCommand(const RunOptions& options, std::FILE* out, std::FILE* err) {
  auto control = ControlPlane::prepare({options.config_file, options.version});
  if (!control) {
    fmt::print(err, "{}\n", control.error().message);
    return kExitCheckFailed;
  }
  const Config& config = (*control)->startConfig();
  if (!options.verbose) spdlog::set_level(toSpdlog(config.log.level));
  auto log = agentLogger();

  // Before any thread exists, so every thread inherits the mask.
  const sigset_t signals = stopAndReloadSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto runtime = Runtime::start(config, {options.version});
  if (!runtime) {
    fmt::print(err, "{}\n", runtime.error().message);
    return kExitCannotRun;
  }
  // Whatever else cannot start stops what did, in order.
  const auto cannotRun = [&](const std::string& message) {
    (*control)->stop();
    (*runtime)->stop(err);
    fmt::print(err, "{}\n", message);
    return kExitCannotRun;
  };
  AgentStatus status_source(**runtime, **control);
  std::unique_ptr<StatusServer> status_server;
  if (!config.status.listen.empty()) {
    StatusServerOptions server_options;
    server_options.listen = config.status.listen;
    status_server = std::make_unique<StatusServer>(server_options, status_source);
    if (auto started = status_server->start(); !started) {
      return cannotRun("status API: " + started.error().message);
    }
  }
  if (auto started = (*control)->start(**runtime); !started) {
    if (status_server) status_server->stop();
    return cannotRun("opamp: " + started.error().message);
  }

  auto last_stats = Clock::now();
  int signal_seen = 0;
  while (signal_seen == 0) {
    timespec wait{0, 100'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    bool reconfigured = false;
    if (sig == SIGHUP) {
      reconfigured = (*control)->reload();
    } else if (sig > 0) {
      signal_seen = sig;
    }
    reconfigured = (*control)->poll() || reconfigured;
    if (reconfigured && !options.verbose) {
      spdlog::set_level(toSpdlog((*runtime)->config().log.level));
    }
    if (options.exit_when_done && (*runtime)->inputsFinished() && (*runtime)->delivered()) break;
    if (options.stats_interval.count() > 0 && Clock::now() - last_stats >= options.stats_interval) {
      (*runtime)->logStats();
      last_stats = Clock::now();
    }
  }
  if (signal_seen != 0) log->info("signal {}: stopping (a second one exits at once)", signal_seen);
  // A second stop signal while stopping: leave at once. The ring is crash-safe; in-flight
  // batches are unacknowledged and go again at the next start.
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    while (!done.load()) {
      timespec wait{0, 100'000'000};
      const int sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig == SIGINT || sig == SIGTERM) {
        log->warn("signal {} while stopping: exiting at once", sig);
        spdlog::shutdown();
        ::_exit(128 + sig);
      }
    }
  });
  // The OpAMP client says goodbye while the loop still runs; the status API answers until the
  // runtime stops.
  (*control)->stop();
  if (status_server) status_server->stop();
  const int status = (*runtime)->stop(err);
  done = true;
  watchdog.join();
  (*runtime)->logStats();
  fmt::print(out, "{}\n", (*runtime)->report().dump());
  std::fflush(out);
  return status;
}

}  // namespace cistern::agent
