// `cistern run -c FILE`: the agent's main job. Opens the ring, creates every configured output
// and input (reporting every one that cannot start, all at once), captures and delivers until
// SIGINT or SIGTERM (or, with --exit-when-done, until every input finished and every output
// delivered everything), then stops the inputs, commits what they handed over, lets the outputs
// finish what they have in flight, and prints every counter as one JSON object.
//
// Start order: outputs first (they drain the backlog of earlier runs), then inputs. Stop order:
// inputs, the ring's last commit, outputs (their acknowledgements commit when the ring closes).
//
// Signals are blocked before any thread starts and taken with sigtimedwait() on this thread, so
// no handler runs inside a capture or writer thread.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "buffer_access.h"
#include "cistern/agent/commands.h"
#include "cistern/agent/config.h"
#include "cistern/buffer/ring.h"
#include "cistern/platform/event_loop.h"
#include "cistern/platform/process.h"
#include "cistern/transport/outputs.h"

namespace cistern::agent {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kStopGrace{5};
// How long outputs may finish the requests they have in flight at stop.
constexpr std::chrono::seconds kOutputGrace{5};

std::shared_ptr<spdlog::logger> agentLogger() {
  if (auto existing = spdlog::get("agent")) return existing;
  return spdlog::stderr_color_mt("agent");
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

Result<std::unique_ptr<capture::Source>> makeSource(const InputConfig& input, RecordSink& sink) {
  switch (input.index()) {
    case 0:
      return capture::makePcapSource(std::get<capture::PcapOptions>(input), sink);
    case 1:
      return capture::makeFileTailSource(std::get<capture::FileTailOptions>(input), sink);
    default:
      return capture::makeSyslogSource(std::get<capture::SyslogOptions>(input), sink);
  }
}

struct Input {
  std::string type;
  std::unique_ptr<capture::Source> source;
};

nlohmann::json countersJson(const capture::Source& source) {
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& c : source.counters()) {
    counters[c.name] = c.known ? nlohmann::json(c.value) : nlohmann::json(nullptr);
  }
  return counters;
}

nlohmann::json outputsJson(const std::vector<transport::OutputStatus>& outputs,
                           const std::vector<buffer::ConsumerStats>& consumers) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& o : outputs) {
    nlohmann::json counters = nlohmann::json::object();
    for (const auto& c : o.counters) counters[c.name] = c.value;
    nlohmann::json entry = {{"name", o.name},
                            {"type", o.type},
                            {"state", o.state},
                            {"endpoint", o.endpoint},
                            {"last_error", o.last_error},
                            {"counters", counters}};
    for (const auto& c : consumers) {
      if (c.name != o.name) continue;
      entry["buffer"] = {{"pending_frames", c.pending_frames},
                         {"pending_records", c.pending_records},
                         {"acked_records", c.acked_records},
                         {"evicted_records", c.evicted_records},
                         {"corrupt_records", c.corrupt_records}};
    }
    list.push_back(std::move(entry));
  }
  return list;
}

nlohmann::json report(const std::vector<Input>& inputs,
                      const std::vector<transport::OutputStatus>& outputs,
                      const std::vector<buffer::ConsumerStats>& consumers,
                      const buffer::RingStats& s) {
  nlohmann::json j;
  j["inputs"] = nlohmann::json::array();
  for (const auto& in : inputs) {
    j["inputs"].push_back({{"name", in.source->name()},
                           {"type", in.type},
                           {"finished", in.source->finished()},
                           {"counters", countersJson(*in.source)}});
  }
  j["outputs"] = outputsJson(outputs, consumers);
  // The ring's totals, and what this process refused or dropped before records reached it.
  j["buffer"] = ringStatsJson(s);
  j["buffer"]["refused_queue_full"] = s.refused_queue_full;
  j["buffer"]["refused_invalid"] = s.refused_invalid;
  j["buffer"]["dropped_map_full"] = s.dropped_map_full;
  j["buffer"]["dropped_at_close"] = s.dropped_at_close;
  j["buffer"]["corrupt_frames_seen"] = s.corrupt_frames_seen;
  return j;
}

void logStats(spdlog::logger& log, const std::vector<Input>& inputs) {
  for (const auto& in : inputs) {
    std::string fields;
    for (const auto& c : in.source->counters()) {
      fields += c.known ? fmt::format(" {}={}", c.name, c.value) : fmt::format(" {}=?", c.name);
    }
    log.info("input={}{}", in.source->name(), fields);
  }
}

bool allFinished(const std::vector<Input>& inputs) {
  for (const auto& in : inputs) {
    if (!in.source->finished()) return false;
  }
  return true;
}

void logOutputs(spdlog::logger& log, const std::vector<transport::OutputStatus>& outputs) {
  for (const auto& o : outputs) {
    std::string fields;
    for (const auto& c : o.counters) fields += fmt::format(" {}={}", c.name, c.value);
    log.info("output={} state={} endpoint={}{}{}", o.name, o.state, o.endpoint, fields,
             o.last_error.empty() ? std::string() : " last_error=\"" + o.last_error + "\"");
  }
}

// Every output acknowledged every frame committed so far (nothing is pending for it).
bool allDelivered(const std::vector<buffer::ConsumerStats>& consumers,
                  const std::vector<transport::OutputStatus>& outputs) {
  for (const auto& o : outputs) {
    for (const auto& c : consumers) {
      if (c.name == o.name && c.pending_frames > 0) return false;
    }
  }
  return true;
}

// A consumer left by an output that is no longer configured keeps every frame it did not
// acknowledge until the ring evicts it: say so once at start.
void warnAboutOrphanConsumers(spdlog::logger& log, buffer::LmdbRing& ring,
                              const std::vector<transport::OutputOptions>& outputs) {
  for (const auto& c : ring.consumerStats()) {
    bool configured = false;
    for (const auto& o : outputs) configured = configured || transport::outputName(o) == c.name;
    if (!configured && c.pending_frames > 0) {
      log.warn(
          "buffer consumer '{}' has no output in the config; the {} records it did not "
          "acknowledge stay in the buffer until evicted",
          c.name, c.pending_records);
    }
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
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  buffer::RingOptions ring_options = config->buffer;
  ring_options.dir = bufferDirOf(config->agent.data_dir);
  auto ring = buffer::LmdbRing::open(ring_options);
  if (!ring) {
    fmt::print(err, "cannot open the buffer in {}: {}\n", ring_options.dir.string(),
               ring.error().message);
    return kExitCannotRun;
  }

  // Outputs: on the agent's event loop, each with its own cursor in the ring.
  auto loop = platform::EventLoop::start("cistern-loop");
  if (!loop) {
    fmt::print(err, "cannot start the event loop: {}\n", loop.error().message);
    (void)(*ring)->close();
    return kExitCannotRun;
  }
  bool failed = false;
  const transport::Identity identity{config->agent.id, platform::hostName(), options.version};
  auto transport = transport::Transport::create(
      **loop, config->outputs,
      [&ring](const std::string& name) -> Result<FrameCursor*> {
        auto consumer = (*ring)->consumer(name);
        if (!consumer) return tl::unexpected(consumer.error());
        return static_cast<FrameCursor*>(*consumer);
      },
      identity);
  if (!transport) {
    fmt::print(err, "{}\n", transport.error().message);
    failed = true;
  } else {
    transport::Transport* t = transport->get();
    (*ring)->setCommitListener([t](const buffer::CommitInfo& info) {
      if (info.first_frame != 0) t->notifyCommitted();
    });
  }
  warnAboutOrphanConsumers(*log, **ring, config->outputs);

  std::vector<Input> inputs;
  for (const auto& input : config->inputs) {
    auto source = makeSource(input, **ring);
    if (!source) {
      fmt::print(err, "{}\n", source.error().message);
      failed = true;
      continue;
    }
    inputs.push_back({inputType(input), std::move(*source)});
  }
  for (auto& in : inputs) {
    if (failed) break;
    if (auto started = in.source->start(); !started) {
      fmt::print(err, "{}\n", started.error().message);
      failed = true;
    }
    const std::string where = in.source->localAddress();
    log->info("input={} type={} started{}", in.source->name(), in.type,
              where.empty() ? std::string() : " listening=" + where);
  }
  if (failed) {
    for (auto& in : inputs) in.source->stop();
    if (transport) (*transport)->stop(std::chrono::milliseconds(0));
    (void)(*ring)->close();
    return kExitCannotRun;
  }
  (*transport)->start();
  if (inputs.empty()) log->warn("no inputs are configured; nothing will be captured");
  if (config->outputs.empty()) {
    log->warn("no outputs are configured; records stay in the buffer until it evicts them");
  }
  log->info("running: data_dir={} inputs={} outputs={}", config->agent.data_dir.string(),
            inputs.size(), config->outputs.size());

  auto last_stats = Clock::now();
  int signal_seen = 0;
  bool inputs_flushed = false;
  while (signal_seen == 0) {
    timespec wait{0, 200'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGHUP) {
      log->warn("SIGHUP: reloading the config is not supported yet; restart the agent");
    } else if (sig > 0) {
      signal_seen = sig;
    }
    if (options.exit_when_done && !inputs.empty() && allFinished(inputs)) {
      // Done once what the inputs handed over is committed and every output delivered it.
      if (!inputs_flushed) inputs_flushed = static_cast<bool>((*ring)->flush());
      if (inputs_flushed && allDelivered((*ring)->consumerStats(), (*transport)->status())) break;
    }
    if (options.stats_interval.count() > 0 && Clock::now() - last_stats >= options.stats_interval) {
      logStats(*log, inputs);
      logOutputs(*log, (*transport)->status());
      last_stats = Clock::now();
    }
  }
  if (signal_seen != 0) log->info("signal {}: stopping", signal_seen);
  // Inputs that wait for room (files, pcap replay) return from stop() only once the ring takes
  // their last batch; a ring whose writer is blocked (when_full: block, outputs not
  // acknowledging) never does, so after a grace period the ring is closed, which releases them.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    for (auto& in : inputs) in.source->stop();
    stopped = true;
  });
  const auto stop_deadline = Clock::now() + kStopGrace;
  while (!stopped.load() && Clock::now() < stop_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int status = kExitOk;
  bool ring_closed = false;
  if (!stopped.load()) {
    log->warn(
        "inputs did not stop within {}s (is the buffer full and blocked?); closing the "
        "buffer to release them",
        kStopGrace.count());
    (void)(*ring)->close(std::chrono::seconds(2));
    ring_closed = true;
  }
  stopper.join();
  if (!ring_closed) {
    if (auto flushed = (*ring)->flush(); !flushed) {
      fmt::print(err, "committing the last records failed: {}\n", flushed.error().message);
      status = kExitCannotRun;
    }
  }
  // Outputs finish what they have in flight; what they do not stays unacknowledged and is sent
  // again at the next start.
  (*transport)->stop(kOutputGrace);
  const auto output_status = (*transport)->status();
  (*loop)->stop();
  // The outputs' last acknowledgements commit now, so the report shows what is still pending.
  if (!ring_closed) (void)(*ring)->flush();
  logStats(*log, inputs);
  logOutputs(*log, output_status);
  const auto consumers = (*ring)->consumerStats();
  const auto stats = (*ring)->stats();
  if (auto closed = (*ring)->close(); !closed) {
    fmt::print(err, "closing the buffer failed: {}\n", closed.error().message);
    status = kExitCannotRun;
  }
  fmt::print(out, "{}\n", report(inputs, output_status, consumers, stats).dump());
  std::fflush(out);
  return status;
}

}  // namespace cistern::agent
