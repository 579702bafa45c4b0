#include "runtime.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent_log.h"
#include "cistern/agent/commands.h"
#include "cistern/capture/file_tail_source.h"
#include "cistern/capture/pcap_source.h"
#include "cistern/capture/syslog_source.h"
#include "cistern/core/record_json.h"
#include "cistern/platform/process.h"
#include "commands/buffer_access.h"

namespace cistern::agent {
namespace {

using Clock = std::chrono::steady_clock;
// How long inputs get to hand over their last records at stop before the ring is closed under
// them (inputs waiting for room in a blocked ring return then).
constexpr std::chrono::seconds kInputGrace{5};
// How long outputs may finish the requests they have in flight at stop.
constexpr std::chrono::seconds kOutputGrace{5};

std::uint64_t counterOf(const std::vector<Counter>& counters, const std::string& name) {
  for (const auto& c : counters) {
    if (c.name == name) return c.value;
  }
  return 0;
}

nlohmann::json countersJson(const std::vector<Counter>& counters) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& c : counters) {
    j[c.name] = c.known ? nlohmann::json(c.value) : nlohmann::json(nullptr);
  }
  return j;
}

// Seconds since the oldest record in the ring was captured; 0 when the ring is empty.
double oldestAgeSeconds(const buffer::RingStats& s) {
  const auto now_ns =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  return s.oldest_ts != 0 && now_ns > s.oldest_ts ? static_cast<double>(now_ns - s.oldest_ts) / 1e9
                                                  : 0.0;
}

// The buffer's figures as the status and the final report show them: buffer inspect's, and the
// drops by cause.
nlohmann::json bufferJson(const buffer::RingStats& s) {
  nlohmann::json j = ringStatsJson(s);
  j["refused_queue_full"] = s.refused_queue_full;
  j["refused_invalid"] = s.refused_invalid;
  j["dropped_map_full"] = s.dropped_map_full;
  j["dropped_at_close"] = s.dropped_at_close;
  j["corrupt_frames_seen"] = s.corrupt_frames_seen;
  j["writer_blocked"] = s.writer_blocked;
  return j;
}

// One output: its state and counters, and its consumer's figures in the ring.
nlohmann::json outputJson(const transport::OutputStatus& o,
                          const std::vector<buffer::ConsumerStats>& consumers) {
  nlohmann::json entry = {{"name", o.name},
                          {"type", o.type},
                          {"state", o.state},
                          {"endpoint", o.endpoint},
                          {"last_error", o.last_error},
                          {"counters", countersJson(o.counters)}};
  for (const auto& c : consumers) {
    if (c.name != o.name) continue;
    entry["buffer"] = {{"pending_frames", c.pending_frames},
                       {"pending_records", c.pending_records},
                       {"acked_records", c.acked_records},
                       {"evicted_records", c.evicted_records},
                       {"corrupt_records", c.corrupt_records}};
  }
  return entry;
}

// Counters that only grow are Prometheus counters; the rest (in flight, state, rates, the
// endpoint in use) are gauges.
bool isGauge(const std::string& name) {
  static const char* const kGauges[] = {"batches_in_flight", "records_in_flight",
                                        "endpoint_index",    "state",
                                        "drain_rate",        "files_watched"};
  return std::any_of(std::begin(kGauges), std::end(kGauges),
                     [&name](const char* g) { return name == g; });
}

}  // namespace

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

Result<std::unique_ptr<Runtime>> Runtime::start(const Config& config, const Options& options) {
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->options_ = options;
  rt->config_ = config;
  buffer::RingOptions ring_options = config.buffer;
  ring_options.dir = bufferDirOf(config.agent.data_dir);
  auto ring = buffer::LmdbRing::open(ring_options);
  if (!ring) {
    return fail(ErrorCode::kIo, fmt::format("cannot open the buffer in {}: {}",
                                            ring_options.dir.string(), ring.error().message));
  }
  rt->ring_ = std::move(*ring);
  auto loop = platform::EventLoop::start("cistern-loop");
  if (!loop) {
    (void)rt->ring_->close();
    rt->ring_closed_ = true;
    return fail(ErrorCode::kIo, "cannot start the event loop: " + loop.error().message);
  }
  rt->loop_ = std::move(*loop);
  if (auto started = rt->startOutputsAndInputs(); !started) {
    rt->stop(nullptr);
    return tl::unexpected(started.error());
  }
  return rt;
}

transport::Transport::CursorFor Runtime::cursorFor() {
  return [this](const std::string& name) -> Result<FrameCursor*> {
    auto consumer = ring_->consumer(name);
    if (!consumer) return tl::unexpected(consumer.error());
    return static_cast<FrameCursor*>(*consumer);
  };
}

Status Runtime::startOutputsAndInputs() {
  auto log = agentLogger();
  std::string errors;
  const auto problem = [&errors](const std::string& text) {
    if (!errors.empty()) errors += '\n';
    errors += text;
  };
  const transport::Identity identity{config_.agent.id, platform::hostName(), options_.version};
  auto transport = transport::Transport::create(*loop_, config_.outputs, cursorFor(), identity);
  if (!transport) {
    problem(transport.error().message);
  } else {
    transport_ = std::move(*transport);
    transport::Transport* t = transport_.get();
    ring_->setCommitListener([t](const buffer::CommitInfo& info) {
      if (info.first_frame != 0) t->notifyCommitted();
    });
  }
  // Consumers left by outputs no longer configured keep their frames until evicted: say so.
  for (const auto& c : ring_->consumerStats()) {
    const bool configured =
        std::any_of(config_.outputs.begin(), config_.outputs.end(),
                    [&c](const auto& o) { return transport::outputName(o) == c.name; });
    if (!configured && c.pending_frames > 0) {
      log->warn(
          "buffer consumer '{}' has no output in the config; the {} records it did not "
          "acknowledge stay in the buffer until evicted (with when_full: block they stop "
          "capture once it is full): with the agent stopped, `cistern buffer remove-consumer "
          "{} -c CONFIG` deletes it",
          c.name, c.pending_records, c.name);
    }
  }
  std::vector<Input> inputs;
  for (const auto& input : config_.inputs) {
    auto source = makeSource(input, *ring_);
    if (!source) {
      problem(source.error().message);
      continue;
    }
    inputs.push_back({input, inputType(input), std::move(*source)});
  }
  if (!errors.empty()) {
    for (auto& in : inputs) in.source->stop();
    return fail(ErrorCode::kConfig, errors);
  }
  transport_->start();
  for (auto& in : inputs) {
    if (auto started = in.source->start(); !started) {
      problem(started.error().message);
      break;
    }
    const std::string where = in.source->localAddress();
    log->info("input={} type={} started{}", in.source->name(), in.type,
              where.empty() ? std::string() : " listening=" + where);
  }
  {
    std::lock_guard lk(inputs_mu_);
    inputs_ = std::move(inputs);
  }
  if (!errors.empty()) return fail(ErrorCode::kConfig, errors);
  if (config_.inputs.empty()) log->warn("no inputs are configured; nothing will be captured");
  if (config_.outputs.empty()) {
    log->warn("no outputs are configured; records stay in the buffer until it evicts them");
  }
  log->info("running: data_dir={} inputs={} outputs={}", config_.agent.data_dir.string(),
            config_.inputs.size(), config_.outputs.size());
  return ok();
}

Runtime::~Runtime() { stop(nullptr); }

Config Runtime::config() const {
  std::lock_guard lk(config_mu_);
  return config_;
}

Status Runtime::apply(const Config& next, const std::string& origin) {
  auto log = agentLogger();
  const Config current = config();
  const auto refuse = [&](std::string why) -> Status {
    std::lock_guard lk(config_mu_);
    ++reloads_failed_;
    log->error("{}: config not applied: {}", origin, why);
    return fail(ErrorCode::kConfig, std::move(why));
  };
  if (stopped_) return refuse("the agent is stopping");
  if (!(next.agent == current.agent)) {
    return refuse("'agent' (identity, data_dir) changes only at a restart");
  }
  if (!(next.buffer == current.buffer)) {
    return refuse("'buffer' changes only at a restart: the buffer stays open across a reload");
  }
  if (next == current) {
    log->info("{}: the config did not change", origin);
    return ok();
  }
  // Outputs first: a bad one changes nothing.
  if (!(next.outputs == current.outputs)) {
    if (auto updated = transport_->update(next.outputs, cursorFor()); !updated) {
      return refuse(updated.error().message);
    }
  }
  std::vector<Gap> gaps;
  if (auto applied = applyInputs(next.inputs, gaps); !applied) {
    // Undo: the outputs go back to what they were (the inputs were restored by applyInputs).
    if (!(next.outputs == current.outputs)) {
      if (auto back = transport_->update(current.outputs, cursorFor()); !back) {
        log->error("{}: restoring the previous outputs failed: {}", origin, back.error().message);
      }
    }
    return refuse(applied.error().message);
  }
  {
    std::lock_guard lk(config_mu_);
    config_ = next;
    ++reloads_ok_;
  }
  for (const auto& g : gaps) {
    log->info("{}: input={} replaced; capture gap {:.1f} ms", origin, g.input,
              std::chrono::duration<double, std::milli>(g.gap).count());
  }
  log->info("{}: config applied: inputs={} outputs={}", origin, next.inputs.size(),
            next.outputs.size());
  return ok();
}

Status Runtime::applyInputs(const std::vector<InputConfig>& next, std::vector<Gap>& gaps) {
  auto log = agentLogger();
  std::vector<Input> old;
  // Readers (status, metrics, heartbeats) see the inputs as they were until the new list is in
  // place, not an empty list in between.
  auto before = inputStates();
  {
    std::lock_guard lk(inputs_mu_);
    frozen_inputs_ = std::move(before);
    old = std::move(inputs_);
    inputs_.clear();
  }
  const auto nameOf = [](const InputConfig& c) { return inputName(c); };
  std::vector<Input> result;
  std::vector<Input> retired;  // stopped: removed or replaced
  std::vector<std::string> failures;
  // Inputs kept as they are.
  for (auto& in : old) {
    const auto same = std::find_if(next.begin(), next.end(), [&](const InputConfig& n) {
      return nameOf(n) == inputName(in.config) && n == in.config;
    });
    if (same != next.end()) {
      result.push_back(std::move(in));
    } else {
      retired.push_back(std::move(in));
    }
  }
  std::vector<std::string> started_names;
  for (const auto& n : next) {
    const bool kept = std::any_of(result.begin(), result.end(), [&](const Input& in) {
      return inputName(in.config) == nameOf(n);
    });
    if (kept) continue;
    auto predecessor = std::find_if(retired.begin(), retired.end(), [&](const Input& in) {
      return in.source && inputName(in.config) == nameOf(n);
    });
    const bool replaces = predecessor != retired.end();
    // A pcap input's successor opens its interface or file before the old one stops: two
    // handles on one interface are fine, and the gap shrinks to stop + start. Listeners (syslog)
    // and tails (their saved offsets) must stop first.
    const bool open_first = n.index() == 0;
    Clock::time_point gap_start{};
    if (replaces && !open_first) {
      gap_start = Clock::now();
      predecessor->source->stop();
    }
    auto source = makeSource(n, *ring_);
    if (!source) {
      failures.push_back(source.error().message);
      continue;
    }
    if (replaces && open_first) {
      gap_start = Clock::now();
      predecessor->source->stop();
    }
    if (auto started = (*source)->start(); !started) {
      failures.push_back(started.error().message);
      continue;
    }
    if (replaces) gaps.push_back({nameOf(n), Clock::now() - gap_start});
    log->info("input={} type={} {}", nameOf(n), inputType(n), replaces ? "replaced" : "started");
    started_names.push_back(nameOf(n));
    result.push_back({n, inputType(n), std::move(*source)});
  }
  if (failures.empty()) {
    for (auto& in : retired) {
      if (in.source) {
        in.source->stop();
        log->info("input={} stopped (no longer in the config)", in.source->name());
      }
    }
    std::lock_guard lk(inputs_mu_);
    inputs_ = std::move(result);
    frozen_inputs_.reset();
    gaps_.insert(gaps_.end(), gaps.begin(), gaps.end());
    return ok();
  }
  // Roll back: stop what this apply started, start the retired inputs again as they were.
  for (auto& in : result) {
    if (std::find(started_names.begin(), started_names.end(), in.source->name()) !=
        started_names.end()) {
      in.source->stop();
      in.source.reset();
    }
  }
  std::erase_if(result, [](const Input& in) { return !in.source; });
  for (auto& in : retired) {
    in.source->stop();
    auto again = makeSource(in.config, *ring_);
    if (again && (*again)->start()) {
      result.push_back({in.config, in.type, std::move(*again)});
    } else {
      log->error("input={} could not be restarted after a failed reload: {}", inputName(in.config),
                 again ? "start failed" : again.error().message);
    }
  }
  {
    std::lock_guard lk(inputs_mu_);
    inputs_ = std::move(result);
    frozen_inputs_.reset();
  }
  std::string message;
  for (const auto& f : failures) message += (message.empty() ? "" : "\n") + f;
  return fail(ErrorCode::kConfig, message);
}

bool Runtime::inputsFinished() const {
  std::lock_guard lk(inputs_mu_);
  if (inputs_.empty()) return false;
  return std::all_of(inputs_.begin(), inputs_.end(),
                     [](const Input& in) { return in.source->finished(); });
}

bool Runtime::delivered() {
  if (!ring_->flush()) return false;
  const auto consumers = ring_->consumerStats();
  for (const auto& o : outputStatus()) {
    for (const auto& c : consumers) {
      if (c.name == o.name && c.pending_frames > 0) return false;
    }
  }
  return true;
}

std::vector<transport::OutputStatus> Runtime::outputStatus() const {
  if (!transport_) return final_outputs_;
  return transport_->status();
}

std::vector<Runtime::InputState> Runtime::inputStates() const {
  std::vector<InputState> out;
  std::lock_guard lk(inputs_mu_);
  if (frozen_inputs_) return *frozen_inputs_;
  for (const auto& in : inputs_) {
    InputState s;
    s.name = in.source->name();
    s.type = in.type;
    s.finished = in.source->finished();
    s.counters = in.source->counters();
    // A live input never finishes; a file replay does, and then only a read error is a problem.
    const bool replay =
        in.config.index() == 0 && !std::get<capture::PcapOptions>(in.config).file.empty();
    if (replay) {
      if (counterOf(s.counters, "file_errors") > 0) {
        s.healthy = false;
        s.problem = "the pcap file could not be read to its end";
      }
    } else if (s.finished) {
      s.healthy = false;
      s.problem = "stopped";
    }
    out.push_back(std::move(s));
  }
  return out;
}

void Runtime::logStats() const {
  auto log = agentLogger();
  for (const auto& in : inputStates()) {
    std::string fields;
    for (const auto& c : in.counters) {
      fields += c.known ? fmt::format(" {}={}", c.name, c.value) : fmt::format(" {}=?", c.name);
    }
    log->info("input={}{}", in.name, fields);
  }
  for (const auto& o : outputStatus()) {
    std::string fields;
    for (const auto& c : o.counters) fields += fmt::format(" {}={}", c.name, c.value);
    log->info("output={} state={} endpoint={}{}{}", o.name, o.state, o.endpoint, fields,
              o.last_error.empty() ? std::string() : " last_error=\"" + o.last_error + "\"");
  }
}

int Runtime::stop(std::FILE* err) {
  if (stopped_) return 0;
  stopped_ = true;
  auto log = agentLogger();
  int status = kExitOk;
  std::vector<Input> inputs;
  {
    std::lock_guard lk(inputs_mu_);
    inputs = std::move(inputs_);
    inputs_.clear();
  }
  if (ring_ && !ring_closed_) {
    // Inputs that wait for room (files, pcap replay) return from stop() only once the ring takes
    // their last batch; a ring whose writer is blocked (when_full: block, outputs not
    // acknowledging) never does, so after a grace period the ring is closed, which releases them.
    std::atomic<bool> stopped{false};
    std::thread stopper([&] {
      for (auto& in : inputs) in.source->stop();
      stopped = true;
    });
    const auto deadline = Clock::now() + kInputGrace;
    while (!stopped.load() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!stopped.load()) {
      log->warn(
          "inputs did not stop within {}s (is the buffer full and blocked?); closing the buffer "
          "to release them",
          kInputGrace.count());
      (void)ring_->close(std::chrono::seconds(2));
      ring_closed_ = true;
    }
    stopper.join();
    if (!ring_closed_) {
      if (auto flushed = ring_->flush(); !flushed) {
        if (err != nullptr) {
          fmt::print(err, "committing the last records failed: {}\n", flushed.error().message);
        }
        status = kExitCannotRun;
      }
    }
  }
  // Outputs finish what they have in flight; what they do not stays unacknowledged and is sent
  // again at the next start.
  if (transport_) {
    transport_->stop(kOutputGrace);
    final_outputs_ = transport_->status();
  }
  if (loop_) loop_->stop();
  // The outputs' last acknowledgements commit now, so the report shows what is still pending.
  if (ring_ && !ring_closed_) (void)ring_->flush();
  {
    std::lock_guard lk(inputs_mu_);
    inputs_ = std::move(inputs);  // stopped, kept for their final counters
  }
  if (ring_) {
    final_consumers_ = ring_->consumerStats();
    final_stats_ = ring_->stats();
    if (auto closed = ring_->close(); !closed) {
      if (err != nullptr)
        fmt::print(err, "closing the buffer failed: {}\n", closed.error().message);
      status = kExitCannotRun;
    }
    ring_closed_ = true;
  }
  transport_.reset();
  return status;
}

nlohmann::json Runtime::report() const {
  nlohmann::json j;
  j["inputs"] = nlohmann::json::array();
  for (const auto& in : inputStates()) {
    j["inputs"].push_back({{"name", in.name},
                           {"type", in.type},
                           {"finished", in.finished},
                           {"counters", countersJson(in.counters)}});
  }
  j["outputs"] = nlohmann::json::array();
  for (const auto& o : final_outputs_) j["outputs"].push_back(outputJson(o, final_consumers_));
  j["buffer"] = bufferJson(final_stats_);
  j["reconfigurations"] = nlohmann::json::array();
  for (const auto& g : gaps()) {
    j["reconfigurations"].push_back(
        {{"input", g.input}, {"gap_ms", std::chrono::duration<double, std::milli>(g.gap).count()}});
  }
  return j;
}

std::vector<Runtime::Gap> Runtime::gaps() const {
  std::lock_guard lk(inputs_mu_);
  return gaps_;
}

// --- StatusSource ---

nlohmann::json Runtime::statusObject() const {
  const Config cfg = config();
  nlohmann::json j;
  j["agent"] = {{"id", cfg.agent.id},
                {"version", options_.version},
                {"host", platform::hostName()},
                {"data_dir", cfg.agent.data_dir.string()},
                {"uptime_s", std::chrono::duration<double>(Clock::now() - started_at_).count()}};
  {
    std::lock_guard lk(config_mu_);
    j["agent"]["reloads_ok"] = reloads_ok_;
    j["agent"]["reloads_failed"] = reloads_failed_;
  }
  j["inputs"] = nlohmann::json::array();
  for (const auto& in : inputStates()) {
    j["inputs"].push_back({{"name", in.name},
                           {"type", in.type},
                           {"finished", in.finished},
                           {"healthy", in.healthy},
                           {"problem", in.problem},
                           {"counters", countersJson(in.counters)}});
  }
  std::vector<buffer::ConsumerStats> consumers;
  buffer::RingStats stats;
  if (ring_ && !ring_closed_) {
    consumers = ring_->consumerStats();
    stats = ring_->stats();
  } else {
    consumers = final_consumers_;
    stats = final_stats_;
  }
  j["outputs"] = nlohmann::json::array();
  for (const auto& o : outputStatus()) j["outputs"].push_back(outputJson(o, consumers));
  j["buffer"] = bufferJson(stats);
  j["buffer"]["oldest_age_s"] = oldestAgeSeconds(stats);
  if (stats.oldest_ts != 0) {
    j["buffer"]["oldest_time"] = formatTimestamp(static_cast<std::int64_t>(stats.oldest_ts));
  }
  const auto h = health();
  j["health"] = {{"ok", h.ok}, {"reason", h.reason}};
  return j;
}

std::string Runtime::statusJson() const { return statusObject().dump(); }

StatusSource::Health Runtime::health() const {
  Health h;
  std::string problems;
  for (const auto& in : inputStates()) {
    if (!in.healthy) problems += fmt::format("input {}: {}\n", in.name, in.problem);
  }
  if (!ring_ || ring_closed_) {
    problems += "the buffer is closed\n";
  } else {
    const auto s = ring_->stats();
    if (s.writer_blocked) {
      problems += "the buffer is full and its writer is blocked (when_full: block)\n";
    }
  }
  h.ok = problems.empty();
  h.reason = h.ok ? std::string("inputs running, buffer writable\n") : problems;
  return h;
}

std::vector<Metric> Runtime::metrics() const {
  std::vector<Metric> out;
  // Families are emitted name by name; gather samples per name first.
  std::map<std::string, std::vector<Metric>> families;
  std::vector<std::string> order;
  const auto add = [&](Metric m) {
    auto [it, fresh] = families.try_emplace(m.name);
    if (fresh) order.push_back(m.name);
    it->second.push_back(std::move(m));
  };
  for (const auto& in : inputStates()) {
    for (const auto& c : in.counters) {
      if (!c.known) continue;
      const bool gauge = isGauge(c.name);
      add({fmt::format("cistern_input_{}{}", c.name, gauge ? "" : "_total"),
           fmt::format("Input counter {} (see capture/include/cistern/capture)", c.name),
           gauge ? "gauge" : "counter",
           {{"input", in.name}, {"type", in.type}},
           static_cast<double>(c.value)});
    }
    add({"cistern_input_up",
         "1 when the input runs (or finished a file), 0 when it failed",
         "gauge",
         {{"input", in.name}, {"type", in.type}},
         in.healthy ? 1.0 : 0.0});
  }
  for (const auto& o : outputStatus()) {
    for (const auto& c : o.counters) {
      const bool gauge = isGauge(c.name);
      std::string name = c.name;
      auto value = static_cast<double>(c.value);
      if (name == "down_ms") {
        name = "down_seconds";
        value /= 1000.0;
      } else if (name == "drain_rate") {
        name = "drain_rate_bytes_per_second";
      }
      add({fmt::format("cistern_output_{}{}", name, gauge ? "" : "_total"),
           fmt::format("Output counter {} (see transport/include/cistern/transport/outputs.h)",
                       c.name),
           gauge ? "gauge" : "counter",
           {{"output", o.name}, {"type", o.type}},
           value});
    }
  }
  if (ring_ && !ring_closed_) {
    const auto s = ring_->stats();
    const auto gauge = [&](const char* name, const char* help, double v) {
      add({std::string("cistern_buffer_") + name, help, "gauge", {}, v});
    };
    const auto counter = [&](const char* name, const char* help, double v) {
      add({std::string("cistern_buffer_") + name + "_total", help, "counter", {}, v});
    };
    gauge("frames", "Frames in the buffer", static_cast<double>(s.frames));
    gauge("records", "Records in the buffer", static_cast<double>(s.records));
    gauge("used_bytes", "Bytes the frames occupy (bounded by max_size)",
          static_cast<double>(s.used_bytes));
    gauge("max_size_bytes", "The buffer's bound", static_cast<double>(s.max_size));
    gauge("file_bytes", "Size of the data file", static_cast<double>(s.file_bytes));
    gauge("queued_bytes", "Bytes waiting for the writer", static_cast<double>(s.queued_bytes));
    gauge("writer_blocked", "1 when the writer waits for room (when_full: block)",
          s.writer_blocked ? 1 : 0);
    counter("appended_records", "Records appended since the buffer was created",
            static_cast<double>(s.appended_records));
    counter("appended_frames", "Frames appended since the buffer was created",
            static_cast<double>(s.appended_frames));
    counter("deleted_frames", "Frames every consumer acknowledged, deleted",
            static_cast<double>(s.deleted_frames));
    counter("evicted_records", "Records evicted to make room (dropped unsent)",
            static_cast<double>(s.evicted_records));
    counter("evicted_frames", "Frames evicted to make room", static_cast<double>(s.evicted_frames));
    counter("commits", "Group commits", static_cast<double>(s.commits));
    counter("refused_queue_full_records", "Records refused: the ingest queue was full",
            static_cast<double>(s.refused_queue_full));
    counter("refused_invalid_records", "Records refused as invalid",
            static_cast<double>(s.refused_invalid));
    counter("dropped_map_full_records", "Records dropped: they did not fit even an empty map",
            static_cast<double>(s.dropped_map_full));
    counter("corrupt_frames", "Frames that failed their checksum when read",
            static_cast<double>(s.corrupt_frames_seen));
    gauge("oldest_age_seconds", "Age of the oldest record in the buffer", oldestAgeSeconds(s));
    for (const auto& c : ring_->consumerStats()) {
      const auto consumer = [&](const char* name, const char* help, const char* type, double v) {
        add({std::string("cistern_buffer_consumer_") + name,
             help,
             type,
             {{"consumer", c.name}},
             v});
      };
      consumer("pending_records", "Records not yet acknowledged by this consumer (its backlog)",
               "gauge", static_cast<double>(c.pending_records));
      consumer("pending_frames", "Frames not yet acknowledged by this consumer", "gauge",
               static_cast<double>(c.pending_frames));
      consumer("acked_records_total", "Records this consumer acknowledged", "counter",
               static_cast<double>(c.acked_records));
      consumer("evicted_records_total", "Records evicted before this consumer acknowledged them",
               "counter", static_cast<double>(c.evicted_records));
      consumer("corrupt_records_total", "Records in frames that failed their checksum", "counter",
               static_cast<double>(c.corrupt_records));
    }
  }
  {
    std::lock_guard lk(config_mu_);
    add({"cistern_reloads_total",
         "Configurations applied (SIGHUP, remote)",
         "counter",
         {{"result", "ok"}},
         static_cast<double>(reloads_ok_)});
    add({"cistern_reloads_total",
         "Configurations applied (SIGHUP, remote)",
         "counter",
         {{"result", "failed"}},
         static_cast<double>(reloads_failed_)});
  }
  add({"cistern_uptime_seconds",
       "Seconds since the agent started",
       "gauge",
       {},
       std::chrono::duration<double>(Clock::now() - started_at_).count()});
  for (const auto& name : order) {
    for (auto& m : families[name]) out.push_back(std::move(m));
  }
  return out;
}

}  // namespace cistern::agent
