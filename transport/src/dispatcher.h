// Dispatcher: the protocol-independent half of an output. It reads whole frames from the output's
// cursor in the buffer, groups them into batches, hands each batch to the Sender of the endpoint
// in use, and acknowledges the batch's frames in the buffer only once the Sender reported the
// receiver's confirmation (kDelivered) or a final refusal (kRejected, counted). A batch that
// failed transiently (kRetry) stays in memory and is sent again, in its original order, after a
// jittered exponential backoff that honours the receiver's Retry-After.
//
// Endpoints: the dispatcher sends to one endpoint at a time. After `failover_after` consecutive
// failures (at once for a configuration error such as a bad certificate) it moves to the next one
// in the list; while not on the first, it probes the first every `failback_interval` and returns
// to it when the probe succeeds.
//
// Memory: at most max_in_flight batches are in flight and the batches waiting for a resend are
// among them (a failed batch keeps its slot), so an output holds at most
// max_in_flight x max_bytes of records whatever the backlog.
//
// Threads: everything on the event loop's thread, but counters() and lastError() (any thread).
#pragma once

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

#include <uv.h>

#include "cistern/core/counter.h"
#include "cistern/core/frames.h"
#include "cistern/transport/outputs.h"
#include "sender.h"

namespace cistern::transport {

struct DispatcherOptions {
  std::string output_name;
  BatchOptions batch;
  RetryOptions retry;
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

  // Starts reading and sending. Call once.
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
  // In the order documented for OutputStatus::counters. Any thread.
  [[nodiscard]] std::vector<Counter> counters() const;
  // The senders' own counters, summed over the endpoints by name. Loop thread.
  [[nodiscard]] std::vector<Counter> senderCounters() const;

 private:
  struct InFlight {
    std::shared_ptr<Batch> batch;
    std::uint64_t records = 0;
    std::size_t sender = 0;  // index of the endpoint it was sent to
    bool waiting = false;    // failed; waiting in the retry queue, not at a sender
  };

  void sendBatch(std::uint64_t seq);
  void onResult(std::uint64_t seq, const SendResult& result);
  void ackBatch(const Batch& batch);
  void scheduleRetry(const SendResult& result);
  void failOver(const std::string& why);
  void armTimer(uv_timer_t* timer, std::chrono::milliseconds delay);
  void onRetryTimer();
  void onFailbackTimer();
  void onIdleTimer();
  void setLastError(const std::string& error);
  void maybeClosed();
  [[nodiscard]] std::chrono::milliseconds backoffDelay();
  [[nodiscard]] std::uint64_t nowMs() const;

  uv_loop_t* loop_;
  FrameCursor& cursor_;
  std::vector<std::unique_ptr<Sender>> senders_;
  DispatcherOptions options_;

  std::map<std::uint64_t, InFlight> in_flight_;  // by batch seq
  std::deque<std::uint64_t> retry_queue_;        // seqs of failed batches, oldest first
  std::uint64_t next_seq_ = 1;
  std::size_t current_ = 0;                 // index of the endpoint in use
  std::uint32_t consecutive_failures_ = 0;  // on the endpoint in use; reset by failover
  std::uint32_t backoff_failures_ = 0;      // since the last success; drives the backoff
  std::uint64_t resume_at_ms_ = 0;          // nothing is sent before this (backoff, Retry-After)
  bool started_ = false;
  bool reading_ = true;  // false after drain(): no new frames are read
  bool closing_ = false;
  bool probing_ = false;  // a failback probe is in flight
  bool pumping_ = false;  // guards against re-entrant pump() from a synchronous path
  std::mt19937_64 rng_;

  // Each timer's data points at this dispatcher; they are closed in close().
  uv_timer_t retry_timer_{};
  uv_timer_t failback_timer_{};
  uv_timer_t idle_timer_{};  // reads again now and then, in case a commit notification is missed
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
  } stats_;
  mutable std::mutex error_mu_;
  std::string last_error_;  // guarded by error_mu_
};

}  // namespace cistern::transport
