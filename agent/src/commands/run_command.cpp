// `cistern run -c FILE`: the agent's main job. Starts the runtime (the ring, the outputs, the
// inputs; every one that cannot start is reported, all at once), captures and delivers until
// SIGINT or SIGTERM (or, with --exit-when-done, until every input finished and every output
// delivered everything), reloads the config file on SIGHUP (validate, apply, roll back on
// failure), then stops in order and prints every counter as one JSON object.
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
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cistern/agent/commands.h"
#include "cistern/agent/config.h"
#include "runtime/runtime.h"

namespace cistern::agent {
namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> agentLogger() {
  if (auto existing = spdlog::get("agent")) return existing;
  try {
    return spdlog::stderr_color_mt("agent");
  } catch (const spdlog::spdlog_ex&) {
    auto existing = spdlog::get("agent");
    return existing ? existing : spdlog::default_logger();
  }
}

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

// SIGHUP: the config file again, validated and applied; the running config stays on failure.
void reload(const RunOptions& options, Runtime& runtime, spdlog::logger& log) {
  log.info("SIGHUP: reloading {}", options.config_file.string());
  auto next = loadConfigFile(options.config_file);
  if (!next) {
    log.error("SIGHUP: {} is not valid; the running config stays:\n{}",
              options.config_file.string(), next.error().message);
    return;
  }
  if (auto applied = runtime.apply(*next, "SIGHUP"); applied) {
    if (!options.verbose) spdlog::set_level(toSpdlog(next->log.level));
  }
}

}  // namespace

int runCommand(const RunOptions& options, std::FILE* out, std::FILE* err) {
  auto config = loadConfigFile(options.config_file);
  if (!config) {
    fmt::print(err, "{}\n", config.error().message);
    return kExitCheckFailed;
  }
  if (!options.verbose) spdlog::set_level(toSpdlog(config->log.level));
  auto log = agentLogger();

  // Before any thread exists, so every thread inherits the mask.
  const sigset_t signals = stopAndReloadSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto runtime = Runtime::start(*config, {options.version});
  if (!runtime) {
    fmt::print(err, "{}\n", runtime.error().message);
    return kExitCannotRun;
  }

  auto last_stats = Clock::now();
  int signal_seen = 0;
  while (signal_seen == 0) {
    timespec wait{0, 200'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGHUP) {
      reload(options, **runtime, *log);
    } else if (sig > 0) {
      signal_seen = sig;
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
  const int status = (*runtime)->stop(err);
  done = true;
  watchdog.join();
  (*runtime)->logStats();
  fmt::print(out, "{}\n", (*runtime)->report().dump());
  std::fflush(out);
  return status;
}

}  // namespace cistern::agent
