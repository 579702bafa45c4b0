#include "dispatcher.h"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "transport_log.h"

namespace cistern::transport {
namespace {

constexpr std::chrono::milliseconds kIdleInterval{1000};
constexpr std::chrono::milliseconds kReadErrorDelay{1000};

Dispatcher* self(uv_timer_t* timer) { return static_cast<Dispatcher*>(timer->data); }

}  // namespace

Dispatcher::Dispatcher(uv_loop_t* loop, FrameCursor& cursor,
                       std::vector<std::unique_ptr<Sender>> senders, DispatcherOptions options)
    : loop_(loop),
      cursor_(cursor),
      senders_(std::move(senders)),
      options_(std::move(options)),
      rng_(std::random_device{}()) {
  options_.batch.max_in_flight = std::max<std::size_t>(1, options_.batch.max_in_flight);
  options_.retry.failover_after = std::max<std::uint32_t>(1, options_.retry.failover_after);
  for (uv_timer_t* t : {&retry_timer_, &failback_timer_, &idle_timer_}) {
    uv_timer_init(loop_, t);
    t->data = this;
    ++open_handles_;
  }
  open_senders_ = senders_.size();
}

Dispatcher::~Dispatcher() = default;

void Dispatcher::start() {
  started_ = true;
  uv_timer_start(
      &idle_timer_, [](uv_timer_t* t) { self(t)->onIdleTimer(); },
      static_cast<std::uint64_t>(kIdleInterval.count()),
      static_cast<std::uint64_t>(kIdleInterval.count()));
  pump();
}

std::uint64_t Dispatcher::nowMs() const { return uv_now(loop_); }

void Dispatcher::pump() {
  if (!started_ || closing_ || pumping_) return;
  pumping_ = true;
  const std::uint64_t now = nowMs();
  if (now < resume_at_ms_) {
    armTimer(&retry_timer_, std::chrono::milliseconds(resume_at_ms_ - now));
    pumping_ = false;
    return;
  }
  const std::size_t cap = std::min(options_.batch.max_in_flight,
                                   std::max<std::size_t>(1, senders_[current_]->maxInFlight()));
  // Failed batches go again first, oldest first, so a stream receiver sees them in order.
  while (!retry_queue_.empty() && in_flight_.size() - retry_queue_.size() < cap) {
    const std::uint64_t seq = retry_queue_.front();
    retry_queue_.pop_front();
    sendBatch(seq);
  }
  const ReadLimits limits{options_.batch.max_frames, options_.batch.max_bytes};
  while (reading_ && retry_queue_.empty() && in_flight_.size() < cap) {
    auto batch = std::make_shared<Batch>();
    auto n = cursor_.readNext(batch->frames, limits);
    if (!n) {
      ++stats_.read_errors;
      setLastError("reading the buffer: " + n.error().message);
      transportLogger()->error("output={} reading the buffer failed: {}", options_.output_name,
                               n.error().message);
      resume_at_ms_ = now + static_cast<std::uint64_t>(kReadErrorDelay.count());
      armTimer(&retry_timer_, kReadErrorDelay);
      break;
    }
    if (*n == 0) break;
    const std::uint64_t seq = next_seq_++;
    batch->seq = seq;
    InFlight entry;
    entry.records = batch->frames.records();
    entry.batch = std::move(batch);
    stats_.records_in_flight += entry.records;
    in_flight_.emplace(seq, std::move(entry));
    sendBatch(seq);
  }
  stats_.batches_in_flight = in_flight_.size();
  pumping_ = false;
}

void Dispatcher::sendBatch(std::uint64_t seq) {
  InFlight& entry = in_flight_.at(seq);
  entry.waiting = false;
  entry.sender = current_;
  stats_.records_sent += entry.records;
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

void Dispatcher::onResult(std::uint64_t seq, const SendResult& result) {
  auto it = in_flight_.find(seq);
  if (it == in_flight_.end()) return;
  InFlight& entry = it->second;
  stats_.bytes_sent += result.bytes_sent;
  const std::uint64_t skipped = std::min(result.skipped_records, entry.records);
  switch (result.outcome) {
    case Outcome::kDelivered: {
      ++stats_.requests_ok;
      ackBatch(*entry.batch);
      const std::uint64_t rejected = std::min(result.rejected_records, entry.records - skipped);
      stats_.records_acked += entry.records - skipped - rejected;
      stats_.records_rejected += rejected;
      stats_.records_skipped += skipped;
      if (backoff_failures_ > 0) {
        transportLogger()->info("output={} endpoint={} delivering again", options_.output_name,
                                senders_[entry.sender]->endpoint());
      }
      if (entry.sender == current_) consecutive_failures_ = 0;
      backoff_failures_ = 0;
      if (rejected > 0) {
        setLastError(result.error);
      } else {
        setLastError({});
      }
      stats_.records_in_flight -= entry.records;
      in_flight_.erase(it);
      break;
    }
    case Outcome::kRejected: {
      ++stats_.requests_failed;
      ackBatch(*entry.batch);
      stats_.records_rejected += entry.records - skipped;
      stats_.records_skipped += skipped;
      setLastError(result.error);
      transportLogger()->warn("output={} records rejected by the receiver, not resent: {}",
                              options_.output_name, result.error);
      if (entry.sender == current_) consecutive_failures_ = 0;
      backoff_failures_ = 0;
      stats_.records_in_flight -= entry.records;
      in_flight_.erase(it);
      break;
    }
    case Outcome::kRetry: {
      ++stats_.requests_failed;
      entry.waiting = true;
      ++entry.batch->attempt;
      retry_queue_.insert(std::upper_bound(retry_queue_.begin(), retry_queue_.end(), seq), seq);
      setLastError(result.error);
      if (closing_) break;
      const bool on_current = entry.sender == current_;
      if (on_current) {
        if (consecutive_failures_ == 0) {
          transportLogger()->warn("output={} endpoint={} sending failed, retrying: {}",
                                  options_.output_name, senders_[current_]->endpoint(),
                                  result.error);
        }
        ++consecutive_failures_;
        ++backoff_failures_;
      }
      if (on_current && senders_.size() > 1 &&
          (result.config_error || consecutive_failures_ >= options_.retry.failover_after)) {
        failOver(result.error);
      } else if (on_current) {
        scheduleRetry(result);
      }
      break;
    }
  }
  stats_.batches_in_flight = in_flight_.size();
  if (!closing_) pump();
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
  std::chrono::milliseconds delay = backoffDelay();
  if (result.retry_after) delay = std::max(delay, *result.retry_after);
  resume_at_ms_ = std::max(resume_at_ms_, nowMs() + static_cast<std::uint64_t>(delay.count()));
  armTimer(&retry_timer_, std::chrono::milliseconds(resume_at_ms_ - nowMs()));
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
    resume_at_ms_ = 0;
    armTimer(&failback_timer_, options_.retry.failback_interval);
  }
}

void Dispatcher::armTimer(uv_timer_t* timer, std::chrono::milliseconds delay) {
  if (closing_) return;
  void (*cb)(uv_timer_t*) = nullptr;
  if (timer == &retry_timer_) {
    cb = [](uv_timer_t* t) { self(t)->onRetryTimer(); };
  } else {
    cb = [](uv_timer_t* t) { self(t)->onFailbackTimer(); };
  }
  uv_timer_start(timer, cb, static_cast<std::uint64_t>(std::max<std::int64_t>(0, delay.count())),
                 0);
}

void Dispatcher::onRetryTimer() { pump(); }

void Dispatcher::onIdleTimer() { pump(); }

void Dispatcher::onFailbackTimer() {
  if (current_ == 0 || probing_ || closing_) return;
  probing_ = true;
  senders_[0]->probe([this](const SendResult& result) {
    probing_ = false;
    if (closing_ || current_ == 0) return;
    if (result.outcome == Outcome::kDelivered) {
      transportLogger()->info("output={} failing back to {}", options_.output_name,
                              senders_[0]->endpoint());
      current_ = 0;
      consecutive_failures_ = 0;
      backoff_failures_ = 0;
      resume_at_ms_ = 0;
      ++stats_.failbacks;
      stats_.endpoint_index = 0;
      pump();
    } else {
      armTimer(&failback_timer_, options_.retry.failback_interval);
    }
  });
}

void Dispatcher::drain() { reading_ = false; }

void Dispatcher::close(std::function<void()> closed) {
  closing_ = true;
  closed_ = std::move(closed);
  for (uv_timer_t* t : {&retry_timer_, &failback_timer_, &idle_timer_}) {
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
  };
}

}  // namespace cistern::transport
