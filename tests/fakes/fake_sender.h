// FakeSender: a scripted transport::Sender for dispatcher tests. It records every batch it is
// given and answers from a script (kDelivered when the script is empty), asynchronously on the
// loop (a zero timer), or holds the answers until the test releases them.
//
// Loop thread only, like every Sender; the test drives the loop itself (uv_run).
#pragma once

#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cistern/core/frames.h"
#include "sender.h"

namespace cistern::testing {

class FakeSender final : public transport::Sender {
 public:
  struct Sent {
    std::vector<FrameId> frames;
    std::uint64_t records = 0;
    std::uint32_t attempt = 0;
    std::uint64_t at_ms = 0;  // uv_now when send() was called
  };

  FakeSender(uv_loop_t* loop, std::string endpoint, std::size_t max_in_flight = 4)
      : loop_(loop), endpoint_(std::move(endpoint)), max_in_flight_(max_in_flight) {
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
  }

  // Answers for the next sends, in order; an empty script answers kDelivered.
  std::deque<transport::SendResult> script;
  // Answers for the next probes; an empty script answers `probe_default`.
  std::deque<transport::Outcome> probe_script;
  transport::Outcome probe_default = transport::Outcome::kDelivered;
  // While true, sends are recorded but not answered until release() (in-flight tests).
  bool hold = false;

  std::vector<Sent> sent;
  int probes = 0;
  std::size_t max_seen_in_flight = 0;

  [[nodiscard]] const std::string& endpoint() const override { return endpoint_; }
  [[nodiscard]] std::size_t maxInFlight() const override { return max_in_flight_; }

  void send(std::shared_ptr<const transport::Batch> batch,
            std::function<void(transport::SendResult)> done) override {
    Sent s;
    for (const auto& f : batch->frames.frames()) s.frames.push_back(f.id);
    s.records = batch->frames.records();
    s.attempt = batch->attempt;
    s.at_ms = uv_now(loop_);
    sent.push_back(s);
    transport::SendResult r;
    r.outcome = transport::Outcome::kDelivered;
    if (!script.empty()) {
      r = script.front();
      script.pop_front();
    }
    r.bytes_sent = batch->frames.bodyBytes();
    pending_.push_back({std::move(done), r});
    max_seen_in_flight = std::max(max_seen_in_flight, pending_.size());
    if (!hold) arm();
  }

  void probe(std::function<void(transport::SendResult)> done) override {
    ++probes;
    transport::SendResult r;
    r.outcome = probe_default;
    if (!probe_script.empty()) {
      r.outcome = probe_script.front();
      probe_script.pop_front();
    }
    probes_pending_.push_back({std::move(done), r});
    arm();
  }

  void close(std::function<void()> closed) override {
    closed_ = std::move(closed);
    hold = false;
    // Everything unanswered fails, as a real sender's close() does.
    for (auto& p : pending_) {
      p.result.outcome = transport::Outcome::kRetry;
      p.result.error = "closed";
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
      auto* self = static_cast<FakeSender*>(h->data);
      self->flush();
      if (self->closed_) self->closed_();
    });
  }

  // Fails every held send (kRetry with `error`), as a broken connection does, and answers them
  // (later sends stay held while `hold` is set).
  void failAll(const std::string& error) {
    for (auto& p : pending_) {
      p.result = transport::SendResult{};
      p.result.outcome = transport::Outcome::kRetry;
      p.result.error = error;
    }
    force_once_ = true;
    arm();
  }

  // Answers every held send now (asynchronously).
  void release() {
    hold = false;
    arm();
  }
  [[nodiscard]] std::size_t inFlight() const { return pending_.size(); }

 private:
  struct Pending {
    std::function<void(transport::SendResult)> done;
    transport::SendResult result;
  };

  void arm() {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_)) != 0) return;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<FakeSender*>(t->data)->flush(); }, 0, 0);
  }

  void flush() {
    auto answered = std::move(probes_pending_);
    probes_pending_.clear();
    for (auto& p : answered) p.done(p.result);
    if (hold && !force_once_) return;
    force_once_ = false;
    auto answers = std::move(pending_);
    pending_.clear();
    for (auto& p : answers) p.done(p.result);
  }

  uv_loop_t* loop_;
  std::string endpoint_;
  std::size_t max_in_flight_;
  uv_timer_t timer_{};
  std::deque<Pending> pending_;
  std::deque<Pending> probes_pending_;
  std::function<void()> closed_;
  bool force_once_ = false;  // failAll(): answer what is held once, even while holding
};

}  // namespace cistern::testing
