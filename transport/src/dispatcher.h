// Dispatcher: the protocol-independent half of an output. It reads whole frames from the output's
// cursor in the buffer, groups them into batches, hands each batch to the Sender of the endpoint
// in use, and acknowledges the batch's frames in the buffer only once the Sender reported the
// receiver's confirmation (kDelivered) or a final refusal (kRejected, counted). A batch that
// failed transiently (kRetry) stays in memory and is sent again, in its original order, after a
// jittered exponential backoff that honours the receiver's Retry-After.
//
// Lanes. Frames committed since the output last became reachable (at start, or when a probe
// found a DOWN receiver back) are the live lane: sent first, as they come, not rate limited. The
// unacknowledged frames older than that are the backlog lane: sent oldest first under the drain
// control's token bucket (drain_control.h: a ramp from a fraction of drain.rate, AIMD on
// pushback), and while a backlog exists live batches hold at most live_share of the in-flight
// window, so both lanes progress.
//
// Connectivity (connectivity.h). A run of failed requests with every endpoint tried makes the
// output DOWN: nothing is sent, the batches waiting for a resend are dropped from memory (their
// frames stay unacknowledged in the buffer) and every endpoint is probed with backoff. The first
// probe that succeeds makes it RECOVERING: that endpoint is used, the lanes are drawn anew and the
// ramp starts. An output idle for heartbeat.interval probes its endpoint (a heartbeat).
//
// Endpoints. After `failover_after` consecutive failures (at once for a configuration error such
// as a bad certificate) the dispatcher moves to the next endpoint in the list; while not on the
// first, it probes the first every `failback_interval` and returns to it when the probe succeeds.
//
// Memory: at most max_in_flight batches are held, the ones waiting for a resend among them, so an
// output holds at most max_in_flight x max_batch_bytes of records whatever the backlog.
//
// Threads: everything on the event loop's thread, but counters(), state() and lastError() (any
// thread).
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/frames.h"
#include "cistern/transport/outputs.h"
#include "connectivity.h"
#include "drain_control.h"
#include "sender.h"

namespace cistern::transport {

struct DispatcherOptions {
  std::string output_name;
  BatchOptions batch;
  RetryOptions retry;
  HeartbeatOptions heartbeat;
  DrainOptions drain;
};

class Dispatcher {
 public:
  // `loop` is the uv_loop_t of the thread this runs on; `cursor` and the loop outlive it.
  // `senders`: one per endpoint, in the configured order (at least one).
  Dispatcher(uv_loop_t* loop, FrameCursor& cursor, std::vector<std::unique_ptr<Sender>> senders,
             DispatcherOptions options);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts reading and sending: frames left unacknowledged by an earlier run are the backlog.
  // Call once.
  void start();

  // Reads and sends what it can now (new frames were committed, a slot freed up). Cheap when
  // there is nothing to do.
  void pump();

  // Stops reading new frames. Batches in flight go on until they complete or close() is called.
  void drain();
  [[nodiscard]] std::size_t inFlight() const { return in_flight_.size(); }

  // Fails what is still in flight (it stays unacknowledged in the buffer), closes every sender
  // and every handle; `closed` runs when the last one is closed. Call once; the dispatcher may
  // be destroyed after `closed` ran.
  void close(std::function<void()> closed);

  // The endpoint in use.
  [[nodiscard]] std::string endpoint() const;
  [[nodiscard]] std::string lastError() const;
  [[nodiscard]] OutputState state() const { return state_gauge_.load(); }
  // In the order documented for OutputStatus::counters. Any thread.
  [[nodiscard]] std::vector<Counter> counters() const;
  // The senders' own counters, summed over the endpoints by name. Loop thread.
  [[nodiscard]] std::vector<Counter> senderCounters() const;

 private:
  using Clock = std::chrono::steady_clock;
  enum class Lane { kLive, kBacklog };

  struct InFlight {
    std::shared_ptr<Batch> batch;
    std::uint64_t records = 0;
    std::uint64_t bytes = 0;  // record bytes (the frames' bodies)
    std::size_t sender = 0;   // index of the endpoint it was sent to
    Lane lane = Lane::kLive;
    std::uint64_t epoch = 0;  // the lanes it was read under; older ones are not resent
    bool waiting = false;     // failed; waiting in the retry queue, not at a sender
  };

  // Lanes.
  void drawLanes(SteadyTime now);
  [[nodiscard]] bool backlogActive() const;
  [[nodiscard]] std::size_t inFlightOf(Lane lane) const;
  bool readAndSend(Lane lane, SteadyTime now);
  void sendBatch(std::uint64_t seq);

  // Results.
  void onResult(std::uint64_t seq, const SendResult& result);
  void onDelivered(InFlight& entry, const SendResult& result, SteadyTime now);
  void onRetry(std::uint64_t seq, InFlight& entry, const SendResult& result, SteadyTime now);
  void eraseEntry(std::map<std::uint64_t, InFlight>::iterator it);
  void ackBatch(const Batch& batch);
  void scheduleRetry(const SendResult& result);
  void failOver(const std::string& why);

  // Connectivity.
  void apply(const std::optional<Transition>& t, SteadyTime now);
  void enterDown(SteadyTime now);
  void probeDown();
  void probeIdle(SteadyTime now);
  void onFailbackTimer();
  [[nodiscard]] bool allEndpointsFailed() const;

  // Timers.
  void armWake(std::chrono::nanoseconds delay);
  void armProbe();
  void maybeClosed();
  void setLastError(const std::string& error);
  [[nodiscard]] std::chrono::milliseconds backoffDelay();
  void publishGauges(SteadyTime now);

  uv_loop_t* loop_;
  FrameCursor& cursor_;
  std::vector<std::unique_ptr<Sender>> senders_;
  DispatcherOptions options_;
  Connectivity connectivity_;
  DrainController drain_;

  std::map<std::uint64_t, InFlight> in_flight_;  // by batch seq
  std::deque<std::uint64_t> retry_queue_;        // seqs of failed batches, oldest first
  std::uint64_t next_seq_ = 1;
  std::uint64_t epoch_ = 1;
  // The lanes: [backlog_next_, live_from_) is the backlog still to read, live_next_ onwards the
  // live lane; live_from_ == 0 before start().
  FrameId live_from_ = 0;
  FrameId live_next_ = 0;
  FrameId backlog_next_ = 0;
  bool backlog_read_ = true;  // every backlog frame was read (or there was none)
  // Whether the lane's last batch reached max_bytes (then the next one reserves its storage),
  // and the largest frame body read so far.
  bool live_batch_full_ = false;
  bool backlog_batch_full_ = false;
  std::size_t largest_frame_ = 0;

  std::size_t current_ = 0;                 // index of the endpoint in use
  std::uint32_t consecutive_failures_ = 0;  // on the endpoint in use; reset by failover
  std::uint32_t backoff_failures_ = 0;      // since the last success; drives the backoff
  std::vector<bool> failed_in_run_;         // endpoints that failed since the last success
  SteadyTime resume_at_{};                  // nothing is sent before this (backoff, Retry-After)
  bool started_ = false;
  bool reading_ = true;  // false after drain(): no new frames are read
  bool closing_ = false;
  bool failback_probing_ = false;
  std::size_t probes_pending_ = 0;  // probes in flight (DOWN: one per endpoint; idle: one)
  bool probe_succeeded_ = false;    // in the current round of DOWN probes
  bool pumping_ = false;            // guards against re-entrant pump() from a synchronous path
  std::mt19937_64 rng_;

  // Each timer's data points at this dispatcher; they are closed in close().
  uv_timer_t wake_timer_{};      // pump again: backoff, Retry-After, drain tokens
  uv_timer_t probe_timer_{};     // heartbeat: idle and DOWN probes
  uv_timer_t failback_timer_{};  // probe the first endpoint while on another
  uv_timer_t tick_timer_{};  // reads again now and then, in case a commit notification is missed
  int open_handles_ = 0;
  std::size_t open_senders_ = 0;
  std::function<void()> closed_;

  // Counters, read from any thread.
  struct Atomics {
    std::atomic<std::uint64_t> records_sent{0};
    std::atomic<std::uint64_t> bytes_sent{0};
    std::atomic<std::uint64_t> records_acked{0};
    std::atomic<std::uint64_t> frames_acked{0};
    std::atomic<std::uint64_t> records_rejected{0};
    std::atomic<std::uint64_t> records_skipped{0};
    std::atomic<std::uint64_t> records_retried{0};
    std::atomic<std::uint64_t> batches_in_flight{0};
    std::atomic<std::uint64_t> records_in_flight{0};
    std::atomic<std::uint64_t> requests_ok{0};
    std::atomic<std::uint64_t> requests_failed{0};
    std::atomic<std::uint64_t> failovers{0};
    std::atomic<std::uint64_t> failbacks{0};
    std::atomic<std::uint64_t> read_errors{0};
    std::atomic<std::uint64_t> endpoint_index{0};
    std::atomic<std::uint64_t> state_changes{0};
    std::atomic<std::uint64_t> down_ms{0};
    std::atomic<std::uint64_t> probes{0};
    std::atomic<std::uint64_t> probes_failed{0};
    std::atomic<std::uint64_t> drain_rate{0};
    std::atomic<std::uint64_t> live_bytes_sent{0};
    std::atomic<std::uint64_t> backlog_bytes_sent{0};
    std::atomic<std::uint64_t> pushbacks{0};
  } stats_;
  std::atomic<OutputState> state_gauge_{OutputState::kHealthy};
  mutable std::mutex error_mu_;
  std::string last_error_;  // guarded by error_mu_
};

}  // namespace cistern::transport
