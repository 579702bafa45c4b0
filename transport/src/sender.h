// Sender: the protocol half of an output. The dispatcher (dispatcher.h) reads frames from the
// buffer, groups them into batches, and hands each batch to the Sender of the endpoint in use;
// the Sender encodes and transmits it and reports one SendResult. The dispatcher acknowledges
// the batch's frames in the buffer only for kDelivered and kRejected, and resends on kRetry.
//
// One Sender per endpoint. Threads: the event loop's thread only, callbacks included.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/frames.h"

namespace cistern::transport {

// A request: whole frames read from the buffer, sent together and acknowledged together.
struct Batch {
  ReadBatch frames;
  std::uint64_t seq = 0;      // the dispatcher's number for it, increasing
  std::uint32_t attempt = 0;  // 0 the first time it is sent, +1 per resend
};

enum class Outcome {
  // The receiver confirmed the batch. `rejected_records` of it that the receiver refused
  // (OTLP partial success) are counted and not resent.
  kDelivered,
  // The receiver refused the batch for good (HTTP 400 and other non-retryable answers): it is
  // acknowledged in the buffer, counted as rejected, and never resent.
  kRejected,
  // A transient failure (429/502/503/504, network error, timeout, connection lost): the batch is
  // resent after a backoff, on this endpoint or the next.
  kRetry,
};

struct SendResult {
  Outcome outcome = Outcome::kRetry;
  std::uint64_t rejected_records = 0;  // kDelivered (partial) or kRejected (the whole batch)
  // Records of the batch this sender does not carry (a packet on a syslog output): not sent,
  // counted as skipped, acknowledged with the batch.
  std::uint64_t skipped_records = 0;
  std::uint64_t bytes_sent = 0;  // bytes put on the wire for this attempt (after encoding)
  // The receiver asked to slow down (429, 503): the backlog's drain rate backs off, and the
  // failure does not count towards the output being DOWN (the receiver is there, only busy).
  bool pushback = false;
  // No answer in time: counts as a failure and as pushback.
  bool timed_out = false;
  // Retry-After from the receiver; the dispatcher sends nothing to this endpoint before it.
  std::optional<std::chrono::milliseconds> retry_after;
  // A configuration problem (bad certificate, unknown CA, missing client certificate): retrying
  // is pointless until the config changes; reported as the output's last error.
  bool config_error = false;
  // What failed, naming the endpoint; empty for kDelivered without rejections.
  std::string error;
  std::chrono::nanoseconds latency{};  // from send() to the result
};

class Sender {
 public:
  virtual ~Sender() = default;

  // The endpoint this sender talks to, as configured ("https://proc:4318", "relp://h:2514").
  [[nodiscard]] virtual const std::string& endpoint() const = 0;

  // Starts sending `batch`. `done` is called exactly once, on the loop thread, never inside
  // send() (also with kRetry "closed" when close() comes first). Stream senders (syslog) keep
  // batches in send order and may pipeline up to maxInFlight().
  virtual void send(std::shared_ptr<const Batch> batch, std::function<void(SendResult)> done) = 0;

  // Checks that the endpoint answers without sending records (an empty OTLP export, a TCP/TLS
  // connect, a RELP open). `done` as for send(): kDelivered when healthy, kRetry otherwise.
  virtual void probe(std::function<void(SendResult)> done) = 0;

  // Batches this sender can usefully have in flight at once.
  [[nodiscard]] virtual std::size_t maxInFlight() const = 0;

  // The protocol's own counters (messages truncated, bodies sent as bytes, ...), in a stable
  // order; the output reports them after its own, summed over its endpoints.
  [[nodiscard]] virtual std::vector<Counter> counters() const { return {}; }

  // Fails everything in flight (each with kRetry "closed"), closes connections and handles;
  // `closed` runs on the loop thread when the last handle is closed. Call once, before
  // destruction.
  virtual void close(std::function<void()> closed) = 0;
};

}  // namespace cistern::transport
