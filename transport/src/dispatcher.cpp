#include "dispatcher.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "transport_log.h"

namespace cistern::transport {
namespace {

constexpr std::chrono::milliseconds kTickInterval{1000};
constexpr std::chrono::milliseconds kReadErrorDelay{1000};

Dispatcher* self(uv_timer_t* timer) { return static_cast<Dispatcher*>(timer->data); }

// Timer delays are at least 1 ms: libuv runs a timer re-armed with 0 from a timer callback again
// in the same pass, which would spin.
std::uint64_t toMs(std::chrono::nanoseconds d) {
  return static_cast<std::uint64_t>(
      std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::milliseconds>(d).count()));
}

}  // namespace

Dispatcher::Dispatcher(uv_loop_t* loop, FrameCursor& cursor,
                       std::vector<std::unique_ptr<Sender>> senders, DispatcherOptions options)
    : loop_(loop),
      cursor_(cursor),
      senders_(std::move(senders)),
      options_(std::move(options)),
      connectivity_(options_.heartbeat, Clock::now(), std::random_device{}()),
      drain_(options_.drain),
      failed_in_run_(senders_.size(), false),
      rng_(std::random_device{}()) {
  options_.batch.max_in_flight = std::max<std::size_t>(1, options_.batch.max_in_flight);
  options_.retry.failover_after = std::max<std::uint32_t>(1, options_.retry.failover_after);
  for (uv_timer_t* t : {&wake_timer_, &probe_timer_, &failback_timer_, &tick_timer_}) {
    uv_timer_init(loop_, t);
    t->data = this;
    ++open_handles_;
  }
  open_senders_ = senders_.size();
}

Dispatcher::~Dispatcher() = default;

void Dispatcher::start() {
  started_ = true;
  const auto now = Clock::now();
  drawLanes(now);
  if (!backlog_read_) {
    transportLogger()->info("output={} backlog of earlier runs: frames {} to {}, drained {}",
                            options_.output_name, backlog_next_, live_from_ - 1,
                            drain_.limited() ? "under the drain rate" : "without a rate limit");
  }
  uv_timer_start(
      &tick_timer_, [](uv_timer_t* t) { self(t)->pump(); },
      static_cast<std::uint64_t>(kTickInterval.count()),
      static_cast<std::uint64_t>(kTickInterval.count()));
  pump();
}

// Everything unacknowledged now is backlog; what is committed from now on is live.
void Dispatcher::drawLanes(SteadyTime now) {
  const FrameId oldest = cursor_.oldestUnacked();
  const FrameId newest = cursor_.newestFrame();
  live_from_ = std::max(oldest, newest + 1);
  live_next_ = live_from_;
  backlog_next_ = oldest;
  backlog_read_ = oldest >= live_from_;
  if (!backlog_read_) drain_.startRamp(now);
}

bool Dispatcher::backlogActive() const { return !backlog_read_ || inFlightOf(Lane::kBacklog) > 0; }

std::size_t Dispatcher::inFlightOf(Lane lane) const {
  return static_cast<std::size_t>(
      std::count_if(in_flight_.begin(), in_flight_.end(),
                    [lane](const auto& e) { return e.second.lane == lane; }));
}

void Dispatcher::pump() {
  if (!started_ || closing_ || pumping_) return;
  pumping_ = true;
  const auto now = Clock::now();
  if (connectivity_.state() == OutputState::kRecovering && drain_.rampDone(now)) {
    apply(connectivity_.onRampDone(now), now);
  }
  publishGauges(now);
  armProbe();
  if (connectivity_.state() == OutputState::kDown) {
    pumping_ = false;
    return;
  }
  if (now < resume_at_) {
    armWake(resume_at_ - now);
    pumping_ = false;
    return;
  }
  const std::size_t cap = std::min(options_.batch.max_in_flight,
                                   std::max<std::size_t>(1, senders_[current_]->maxInFlight()));
  // Failed batches go again first, oldest first, so a stream receiver sees them in order.
  while (!retry_queue_.empty() && in_flight_.size() - retry_queue_.size() < cap) {
    const std::uint64_t seq = retry_queue_.front();
    InFlight& entry = in_flight_.at(seq);
    if (entry.lane == Lane::kBacklog) {
      if (!drain_.ready(now)) {
        armWake(drain_.waitTime(now));
        break;
      }
      drain_.charge(entry.bytes);
    }
    retry_queue_.pop_front();
    sendBatch(seq);
  }
  if (retry_queue_.empty() && reading_) {
    const std::size_t live_cap = backlogActive() ? drain_.liveSlots(cap) : cap;
    while (in_flight_.size() < cap && inFlightOf(Lane::kLive) < live_cap) {
      if (!readAndSend(Lane::kLive, now)) break;
    }
    while (in_flight_.size() < cap && !backlog_read_) {
      if (!drain_.ready(now)) {
        armWake(drain_.waitTime(now));
        break;
      }
      if (!readAndSend(Lane::kBacklog, now)) break;
    }
  }
  stats_.batches_in_flight = in_flight_.size();
  pumping_ = false;
}

// Reads the next batch of `lane` and sends it; false when there was nothing to read.
bool Dispatcher::readAndSend(Lane lane, SteadyTime now) {
  auto batch = std::make_shared<Batch>();
  ReadLimits limits{options_.batch.max_frames, options_.batch.max_bytes, 0};
  FrameId& next = lane == Lane::kLive ? live_next_ : backlog_next_;
  if (lane == Lane::kBacklog) {
    limits.max_bytes = drain_.batchBytes(now, options_.batch.max_bytes);
    limits.end = live_from_;
  }
  // Under load every batch ends with the frame that crosses max_bytes: room for that much up
  // front, so the read does not copy what it has read into a reallocated buffer as it grows. (A
  // frame larger than max_bytes, a single huge record, is left to grow the buffer.)
  bool& full = lane == Lane::kLive ? live_batch_full_ : backlog_batch_full_;
  if (full) {
    batch->frames.storage().reserve(limits.max_bytes + std::min(largest_frame_, limits.max_bytes));
  }
  auto n = cursor_.readAt(next, Direction::kForward, batch->frames, limits);
  if (!n) {
    ++stats_.read_errors;
    setLastError("reading the buffer: " + n.error().message);
    transportLogger()->error("output={} reading the buffer failed: {}", options_.output_name,
                             n.error().message);
    resume_at_ = now + kReadErrorDelay;
    armWake(kReadErrorDelay);
    return false;
  }
  if (*n == 0) {
    if (lane == Lane::kBacklog) {
      backlog_read_ = true;
      next = live_from_;
    }
    return false;
  }
  next = batch->frames.frames().back().id + 1;
  for (const FrameView& frame : batch->frames.frames()) {
    largest_frame_ = std::max(largest_frame_, frame.body.size());
  }
  full = batch->frames.bodyBytes() >= limits.max_bytes;
  const std::uint64_t seq = next_seq_++;
  batch->seq = seq;
  InFlight entry;
  entry.records = batch->frames.records();
  entry.bytes = batch->frames.bodyBytes();
  entry.lane = lane;
  entry.epoch = epoch_;
  entry.batch = std::move(batch);
  if (lane == Lane::kBacklog) drain_.charge(entry.bytes);
  stats_.records_in_flight += entry.records;
  in_flight_.emplace(seq, std::move(entry));
  sendBatch(seq);
  return true;
}

void Dispatcher::sendBatch(std::uint64_t seq) {
  InFlight& entry = in_flight_.at(seq);
  entry.waiting = false;
  entry.sender = current_;
  stats_.records_sent += entry.records;
  (entry.lane == Lane::kLive ? stats_.live_bytes_sent : stats_.backlog_bytes_sent) += entry.bytes;
  if (entry.batch->attempt > 0) stats_.records_retried += entry.records;
  senders_[current_]->send(entry.batch,
                           [this, seq](const SendResult& result) { onResult(seq, result); });
}

void Dispatcher::ackBatch(const Batch& batch) {
  std::vector<FrameId> ids;
  ids.reserve(batch.frames.size());
  for (const auto& f : batch.frames.frames()) ids.push_back(f.id);
  cursor_.ack(ids);
  stats_.frames_acked += ids.size();
}

void Dispatcher::eraseEntry(std::map<std::uint64_t, InFlight>::iterator it) {
  stats_.records_in_flight -= it->second.records;
  in_flight_.erase(it);
  stats_.batches_in_flight = in_flight_.size();
}

void Dispatcher::onResult(std::uint64_t seq, const SendResult& result) {
  auto it = in_flight_.find(seq);
  if (it == in_flight_.end()) return;
  InFlight& entry = it->second;
  const auto now = Clock::now();
  stats_.bytes_sent += result.bytes_sent;
  if (result.outcome == Outcome::kRetry) {
    ++stats_.requests_failed;
    if (entry.epoch != epoch_ || closing_) {
      // Read under lanes drawn before the output went DOWN: the frames are in the buffer,
      // unacknowledged, and the lanes drawn since will read them again.
      if (!closing_) {
        eraseEntry(it);
        pump();
        return;
      }
      entry.waiting = true;
      return;
    }
    onRetry(seq, entry, result, now);
  } else {
    onDelivered(entry, result, now);
    eraseEntry(it);
  }
  if (!closing_) pump();
}

void Dispatcher::onDelivered(InFlight& entry, const SendResult& result, SteadyTime now) {
  const std::uint64_t skipped = std::min(result.skipped_records, entry.records);
  ackBatch(*entry.batch);
  drain_.onResponse(now, false, result.latency);
  if (result.outcome == Outcome::kRejected) {
    ++stats_.requests_failed;
    stats_.records_rejected += entry.records - skipped;
    stats_.records_skipped += skipped;
    setLastError(result.error);
    transportLogger()->warn("output={} records rejected by the receiver, not resent: {}",
                            options_.output_name, result.error);
  } else {
    ++stats_.requests_ok;
    const std::uint64_t rejected = std::min(result.rejected_records, entry.records - skipped);
    stats_.records_acked += entry.records - skipped - rejected;
    stats_.records_rejected += rejected;
    stats_.records_skipped += skipped;
    setLastError(rejected > 0 ? result.error : std::string());
  }
  if (backoff_failures_ > 0) {
    transportLogger()->info("output={} endpoint={} delivering again", options_.output_name,
                            senders_[entry.sender]->endpoint());
  }
  if (entry.sender == current_) consecutive_failures_ = 0;
  backoff_failures_ = 0;
  std::fill(failed_in_run_.begin(), failed_in_run_.end(), false);
  apply(connectivity_.onSuccess(now), now);
}

void Dispatcher::onRetry(std::uint64_t seq, InFlight& entry, const SendResult& result,
                         SteadyTime now) {
  entry.waiting = true;
  ++entry.batch->attempt;
  retry_queue_.insert(std::upper_bound(retry_queue_.begin(), retry_queue_.end(), seq), seq);
  setLastError(result.error);
  drain_.onResponse(now, result.pushback || result.timed_out, result.latency);
  // A busy receiver (429, 503) is there: it slows the drain down but is no sign of an outage.
  if (result.pushback && !result.timed_out) {
    scheduleRetry(result);
    return;
  }
  const bool on_current = entry.sender == current_;
  if (on_current) {
    if (consecutive_failures_ == 0) {
      transportLogger()->warn("output={} endpoint={} sending failed, retrying: {}",
                              options_.output_name, senders_[current_]->endpoint(), result.error);
    }
    ++consecutive_failures_;
    ++backoff_failures_;
    failed_in_run_[current_] = true;
  }
  apply(connectivity_.onFailure(now, allEndpointsFailed(), result.error), now);
  if (connectivity_.state() == OutputState::kDown) return;
  if (on_current && senders_.size() > 1 &&
      (result.config_error || consecutive_failures_ >= options_.retry.failover_after)) {
    failOver(result.error);
  } else if (on_current) {
    scheduleRetry(result);
  }
}

bool Dispatcher::allEndpointsFailed() const {
  return std::all_of(failed_in_run_.begin(), failed_in_run_.end(), [](bool f) { return f; });
}

std::chrono::milliseconds Dispatcher::backoffDelay() {
  const auto initial = std::max<std::int64_t>(1, options_.retry.initial_backoff.count());
  const auto ceiling = std::max<std::int64_t>(initial, options_.retry.max_backoff.count());
  std::int64_t delay = initial;
  for (std::uint32_t i = 1; i < backoff_failures_ && delay < ceiling; ++i) delay *= 2;
  delay = std::min(delay, ceiling);
  // "Equal jitter": between half the delay and the whole, so senders that failed together do
  // not retry together, and the delay still grows.
  std::uniform_int_distribution<std::int64_t> jitter(delay / 2, delay);
  return std::chrono::milliseconds(jitter(rng_));
}

void Dispatcher::scheduleRetry(const SendResult& result) {
  std::chrono::nanoseconds delay = backoffDelay();
  if (result.retry_after) delay = std::max<std::chrono::nanoseconds>(delay, *result.retry_after);
  const auto now = Clock::now();
  resume_at_ = std::max(resume_at_, now + delay);
  armWake(resume_at_ - now);
}

void Dispatcher::failOver(const std::string& why) {
  const std::size_t from = current_;
  current_ = (current_ + 1) % senders_.size();
  consecutive_failures_ = 0;
  ++stats_.failovers;
  stats_.endpoint_index = current_;
  transportLogger()->warn("output={} failing over from {} to {}: {}", options_.output_name,
                          senders_[from]->endpoint(), senders_[current_]->endpoint(), why);
  // A whole round of the list failed: wait before starting the next one; otherwise try the next
  // endpoint at once (the previous one's Retry-After does not apply to it).
  if (current_ == 0) {
    scheduleRetry(SendResult{});
  } else {
    resume_at_ = {};
    uv_timer_start(
        &failback_timer_, [](uv_timer_t* t) { self(t)->onFailbackTimer(); },
        toMs(options_.retry.failback_interval), 0);
  }
}

void Dispatcher::apply(const std::optional<Transition>& t, SteadyTime now) {
  if (!t) return;
  ++stats_.state_changes;
  transportLogger()->warn("output={} state {} -> {}: {}", options_.output_name,
                          outputStateName(t->from), outputStateName(t->to), t->cause);
  if (t->to == OutputState::kDown) {
    enterDown(now);
  } else if (t->from == OutputState::kDown) {
    // Back: the receiver gets what is captured from now on first, the backlog under the ramp.
    resume_at_ = {};
    consecutive_failures_ = 0;
    backoff_failures_ = 0;
    std::fill(failed_in_run_.begin(), failed_in_run_.end(), false);
    drawLanes(now);
    transportLogger()->info("output={} endpoint={} live from frame {}, backlog {}",
                            options_.output_name, senders_[current_]->endpoint(), live_from_,
                            backlog_read_
                                ? std::string("empty")
                                : fmt::format("frames {} to {}", backlog_next_, live_from_ - 1));
  }
  publishGauges(now);
}

void Dispatcher::enterDown(SteadyTime now) {
  // Batches waiting for a resend are dropped from memory: their frames stay unacknowledged in
  // the buffer and the lanes drawn on recovery read them again. Those still at a sender are
  // dropped when they fail.
  ++epoch_;
  for (const std::uint64_t seq : retry_queue_) {
    auto it = in_flight_.find(seq);
    if (it != in_flight_.end()) eraseEntry(it);
  }
  retry_queue_.clear();
  uv_timer_stop(&failback_timer_);
  publishGauges(now);
  armProbe();
}

void Dispatcher::armProbe() {
  if (closing_ || !started_) return;
  const auto now = Clock::now();
  auto due = connectivity_.nextProbe();
  // A busy output gets its heartbeats from its requests' answers: look again an interval later.
  if (connectivity_.state() != OutputState::kDown && due <= now &&
      (!in_flight_.empty() || probes_pending_ > 0)) {
    due = now + options_.heartbeat.interval;
  }
  uv_timer_start(
      &probe_timer_,
      [](uv_timer_t* t) {
        auto* d = self(t);
        const auto at = Clock::now();
        if (d->connectivity_.state() == OutputState::kDown) {
          d->probeDown();
        } else {
          d->probeIdle(at);
        }
      },
      toMs(due - now), 0);
}

void Dispatcher::probeDown() {
  if (probes_pending_ > 0 || closing_) return;
  probes_pending_ = senders_.size();
  probe_succeeded_ = false;
  for (std::size_t i = 0; i < senders_.size(); ++i) {
    ++stats_.probes;
    senders_[i]->probe([this, i](const SendResult& result) {
      --probes_pending_;
      if (closing_) return;
      const auto now = Clock::now();
      const bool ok = result.outcome == Outcome::kDelivered;
      if (!ok) {
        ++stats_.probes_failed;
        setLastError(result.error);
      }
      if (ok && !probe_succeeded_ && connectivity_.state() == OutputState::kDown) {
        probe_succeeded_ = true;
        current_ = i;
        stats_.endpoint_index = i;
        apply(connectivity_.onProbe(now, true, true, senders_[i]->endpoint()), now);
        pump();
        return;
      }
      if (probes_pending_ == 0 && !probe_succeeded_) {
        (void)connectivity_.onProbe(now, false, true, result.error);
        armProbe();
      }
    });
  }
}

void Dispatcher::probeIdle(SteadyTime now) {
  // Requests in flight are heartbeats of their own; only an idle output is probed.
  if (closing_) return;
  if (!in_flight_.empty() || probes_pending_ > 0 || now < connectivity_.nextProbe()) {
    armProbe();
    return;
  }
  probes_pending_ = 1;
  ++stats_.probes;
  const std::size_t index = current_;
  senders_[index]->probe([this, index](const SendResult& result) {
    --probes_pending_;
    if (closing_) return;
    const auto at = Clock::now();
    const bool ok = result.outcome == Outcome::kDelivered;
    if (!ok) {
      ++stats_.probes_failed;
      setLastError(result.error);
      failed_in_run_[index] = true;
      transportLogger()->warn("output={} endpoint={} heartbeat probe failed: {}",
                              options_.output_name, senders_[index]->endpoint(), result.error);
    }
    apply(connectivity_.onProbe(at, ok, allEndpointsFailed(), result.error), at);
    if (!ok && connectivity_.state() != OutputState::kDown && senders_.size() > 1 &&
        index == current_) {
      failOver(result.error);
    }
    pump();
  });
}

void Dispatcher::armWake(std::chrono::nanoseconds delay) {
  if (closing_) return;
  uv_timer_start(
      &wake_timer_, [](uv_timer_t* t) { self(t)->pump(); }, toMs(delay), 0);
}

void Dispatcher::onFailbackTimer() {
  if (current_ == 0 || failback_probing_ || closing_ ||
      connectivity_.state() == OutputState::kDown) {
    return;
  }
  failback_probing_ = true;
  ++stats_.probes;
  senders_[0]->probe([this](const SendResult& result) {
    failback_probing_ = false;
    if (closing_ || current_ == 0) return;
    if (result.outcome == Outcome::kDelivered) {
      transportLogger()->info("output={} failing back to {}", options_.output_name,
                              senders_[0]->endpoint());
      current_ = 0;
      consecutive_failures_ = 0;
      backoff_failures_ = 0;
      resume_at_ = {};
      ++stats_.failbacks;
      stats_.endpoint_index = 0;
      pump();
    } else {
      ++stats_.probes_failed;
      uv_timer_start(
          &failback_timer_, [](uv_timer_t* t) { self(t)->onFailbackTimer(); },
          toMs(options_.retry.failback_interval), 0);
    }
  });
}

void Dispatcher::publishGauges(SteadyTime now) {
  state_gauge_ = connectivity_.state();
  stats_.state_changes = connectivity_.stateChanges();
  stats_.down_ms = toMs(connectivity_.downTime(now));
  stats_.pushbacks = drain_.pushbacks();
  stats_.drain_rate = backlogActive() ? static_cast<std::uint64_t>(drain_.rate(now)) : 0;
}

void Dispatcher::drain() { reading_ = false; }

void Dispatcher::close(std::function<void()> closed) {
  closing_ = true;
  closed_ = std::move(closed);
  for (uv_timer_t* t : {&wake_timer_, &probe_timer_, &failback_timer_, &tick_timer_}) {
    uv_timer_stop(t);
    uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) {
      auto* d = static_cast<Dispatcher*>(h->data);
      --d->open_handles_;
      d->maybeClosed();
    });
  }
  for (auto& sender : senders_) {
    sender->close([this] {
      --open_senders_;
      maybeClosed();
    });
  }
}

void Dispatcher::maybeClosed() {
  if (open_handles_ == 0 && open_senders_ == 0 && closed_) {
    auto cb = std::move(closed_);
    closed_ = nullptr;
    cb();
  }
}

std::string Dispatcher::endpoint() const {
  return senders_[stats_.endpoint_index.load() % senders_.size()]->endpoint();
}

void Dispatcher::setLastError(const std::string& error) {
  std::lock_guard lk(error_mu_);
  last_error_ = error;
}

std::string Dispatcher::lastError() const {
  std::lock_guard lk(error_mu_);
  return last_error_;
}

std::vector<Counter> Dispatcher::senderCounters() const {
  std::vector<Counter> sum;
  for (const auto& sender : senders_) {
    for (const auto& c : sender->counters()) {
      auto it = std::find_if(sum.begin(), sum.end(),
                             [&c](const Counter& have) { return have.name == c.name; });
      if (it == sum.end()) {
        sum.push_back(c);
      } else {
        it->value += c.value;
      }
    }
  }
  return sum;
}

std::vector<Counter> Dispatcher::counters() const {
  return {
      {"records_sent", stats_.records_sent.load()},
      {"bytes_sent", stats_.bytes_sent.load()},
      {"records_acked", stats_.records_acked.load()},
      {"frames_acked", stats_.frames_acked.load()},
      {"records_rejected", stats_.records_rejected.load()},
      {"records_skipped", stats_.records_skipped.load()},
      {"records_retried", stats_.records_retried.load()},
      {"batches_in_flight", stats_.batches_in_flight.load()},
      {"records_in_flight", stats_.records_in_flight.load()},
      {"requests_ok", stats_.requests_ok.load()},
      {"requests_failed", stats_.requests_failed.load()},
      {"failovers", stats_.failovers.load()},
      {"failbacks", stats_.failbacks.load()},
      {"read_errors", stats_.read_errors.load()},
      {"endpoint_index", stats_.endpoint_index.load()},
      {"state", static_cast<std::uint64_t>(state_gauge_.load())},
      {"state_changes", stats_.state_changes.load()},
      {"down_ms", stats_.down_ms.load()},
      {"probes", stats_.probes.load()},
      {"probes_failed", stats_.probes_failed.load()},
      {"drain_rate", stats_.drain_rate.load()},
      {"live_bytes_sent", stats_.live_bytes_sent.load()},
      {"backlog_bytes_sent", stats_.backlog_bytes_sent.load()},
      {"pushbacks", stats_.pushbacks.load()},
  };
}

}  // namespace cistern::transport
