// OtlpSender: the `otlp` output's Sender for one endpoint. POSTs each batch as one
// ExportLogsServiceRequest (otlp_encode.h) to `{endpoint}/v1/logs` through an HttpClient shared
// by the output's endpoints.
//
// Encoding and gzip run on libuv's thread pool (uv_queue_work), never on the loop thread: a
// 1 MiB batch costs milliseconds of CPU that would delay every other output and timer.
//
// Responses (OTLP/HTTP, opentelemetry-proto's otlp.md "Failures"):
//   2xx                  kDelivered; partial_success.rejected_log_records are reported as
//                        rejected_records with the receiver's error_message. A 2xx body that is
//                        not an ExportLogsServiceResponse still means delivered (the status is the
//                        acknowledgement); it is counted in responses_unparseable and logged.
//   429, 503             kRetry, pushback, Retry-After passed on
//   502, 504             kRetry, Retry-After passed on
//   no response          kRetry (connection refused or lost, timeout)
//   TLS failure          kRetry with config_error (certificate, CA or key problem)
//   401, 403, 404, 405,  kRetry with config_error: the sensor's configuration is wrong (token,
//   407, 415, 495, 496   path, client certificate), not the data, and every later batch would
//   and nginx's 400 for  meet the same answer; the data is kept until the configuration is fixed
//   a missing client     rather than dropped, although the OTLP spec does not retry them
//   certificate
//   413                  the body is over the receiver's size limit (nginx's default
//                        client_max_body_size is 1 MiB), which says nothing of the data: the
//                        batch is cut in two halves of records (batch_split.h), sent one after
//                        the other and cut again on another 413. The batch's result combines
//                        theirs: a half that must be retried makes the whole batch kRetry (the
//                        half delivered before it is sent again: at-least-once), and only a
//                        record that alone is over the limit is rejected (counted in
//                        records_too_large). Counted in batches_split.
//   anything else        kRejected: the whole batch is refused for good and never resent (400 is
//                        never retried, per the spec)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/http_client.h"
#include "cistern/transport/outputs.h"
#include "otlp_encode.h"
#include "sender.h"

namespace cistern::transport {

// zlib level for Content-Encoding: gzip. Measured on 5000 200-byte access-log lines (a 1.6 MB
// request): level 1 compresses 5.6:1 at ~110 MB/s, level 3 6.0:1 at ~98 MB/s, level 6 6.7:1 at
// ~47 MB/s. Compression costs ten times the encoding, so the extra 20% of ratio of level 6 is not
// worth 2.4 times the CPU of a small sensor.
inline constexpr int kOtlpGzipLevel = 1;

// "{endpoint}/v1/logs" with trailing slashes of the endpoint removed. Errors: kConfig naming the
// output and the endpoint when it is not an http:// or https:// URL with a host, or carries a
// query, a fragment, spaces or control characters.
Result<std::string> otlpLogsUrl(const std::string& output_name, const std::string& endpoint);

// How a response (or its absence) maps to a SendResult; `records` is the batch's record count.
// 401, 403, 404, 405, 407, 415 and nginx's 400 for a missing client certificate are
// configuration problems: kRetry with config_error, so the data is kept until the configuration is
// fixed. `probe`: anything but 2xx is kRetry (a probe never rejects), with config_error for client
// errors other than 408 and 429. Sets *unparseable (when given) for a 2xx body that is not an
// ExportLogsServiceResponse. Latency, bytes and skipped records are left to the caller. Pure.
SendResult mapOtlpResponse(const HttpResponse& response, const std::string& url,
                           std::uint64_t records, bool probe, bool* unparseable = nullptr);

class OtlpSender final : public Sender {
 public:
  // Use makeOtlpSender(), which checks the options first.
  OtlpSender(platform::EventLoop& loop, HttpClient& client, std::string endpoint, std::string url,
             const OtlpOutputOptions& options, const Identity& identity);
  ~OtlpSender() override;
  OtlpSender(const OtlpSender&) = delete;
  OtlpSender& operator=(const OtlpSender&) = delete;

  [[nodiscard]] const std::string& endpoint() const override { return endpoint_; }
  void send(std::shared_ptr<const Batch> batch, std::function<void(SendResult)> done) override;
  void probe(std::function<void(SendResult)> done) override;
  [[nodiscard]] std::size_t maxInFlight() const override { return max_in_flight_; }
  // Fails the requests in flight at once (kRetry "closed"; their responses are ignored when they
  // come), waits for batches still being encoded (milliseconds) and fails them too, then calls
  // `closed`. The HttpClient is not closed: it belongs to the output.
  void close(std::function<void()> closed) override;

  // Loop thread. In a stable order: records_bytes_body (log and syslog bodies sent as
  // bytes_value, not UTF-8), attributes_bytes_value, records_malformed (metadata that did not
  // decode, sent as bytes), records_unreadable (not sent: damaged frame body; reported as
  // skipped), responses_unparseable (2xx bodies that were not an ExportLogsServiceResponse),
  // batches_split (cut in two after a 413), records_too_large (alone over the receiver's limit:
  // rejected).
  // Record figures are counted at a batch's first attempt only, so resends do not inflate them.
  [[nodiscard]] std::vector<Counter> counters() const override;

  struct Work;      // a batch being encoded on the thread pool
  struct InFlight;  // a request the HttpClient has

  // Request bodies kept for the next batches, at their size (OtlpLogsEncoder::encodeInto
  // overwrites them without zero-filling). Shared with the bodies in flight, whose deleter gives
  // them back, possibly after the sender is gone. Any thread.
  class BodyPool {
   public:
    explicit BodyPool(std::size_t capacity) : capacity_(capacity) {}
    // A kept string, or an empty one.
    std::unique_ptr<std::string> take();
    // Keeps `body` unless `capacity` strings are kept already.
    void give(std::unique_ptr<std::string> body);
    // Frees the kept strings (an idle output holds no request memory).
    void clear();

   private:
    std::mutex mu_;
    const std::size_t capacity_;
    std::vector<std::unique_ptr<std::string>> free_;  // guarded by mu_
  };

 private:
  void afterWork(std::unique_ptr<Work> work, int status);
  void startRequest(std::shared_ptr<const std::string> body, bool gzip, std::uint64_t records,
                    std::uint64_t unreadable, std::shared_ptr<const Batch> batch,
                    std::chrono::steady_clock::time_point start,
                    std::function<void(SendResult)> done);
  // After a 413 for `batch` (answered with `refused`): sends its halves one after the other and
  // calls `done` once with the combined result.
  void sendSplit(std::shared_ptr<const Batch> batch, SendResult refused,
                 std::chrono::steady_clock::time_point start, std::function<void(SendResult)> done);
  void finish(InFlight& request, const HttpResponse& response);
  // Runs `fn` on the loop thread after the current callback (inline when the loop is stopping).
  void defer(std::function<void()> fn);
  void maybeClosed();

  platform::EventLoop& loop_;
  HttpClient& client_;
  const std::string endpoint_;
  const std::string url_;
  // heartbeat.probe http_get: the URL probed instead of an empty export; empty otherwise.
  const std::string health_url_;
  std::vector<std::string> headers_;       // Content-Type and the configured ones
  std::vector<std::string> gzip_headers_;  // the same with Content-Encoding: gzip
  const bool gzip_;
  const std::chrono::milliseconds timeout_;
  const std::size_t max_in_flight_;
  const std::string output_name_;
  OtlpLogsEncoder encoder_;
  std::shared_ptr<const std::string> probe_body_;
  std::shared_ptr<BodyPool> bodies_;

  std::unordered_map<std::uint64_t, std::shared_ptr<InFlight>> in_flight_;
  std::uint64_t next_request_ = 0;
  std::size_t work_pending_ = 0;
  bool closing_ = false;
  std::function<void()> closed_;

  std::uint64_t records_bytes_body_ = 0;
  std::uint64_t attributes_bytes_value_ = 0;
  std::uint64_t records_malformed_ = 0;
  std::uint64_t records_unreadable_ = 0;
  std::uint64_t responses_unparseable_ = 0;
  std::uint64_t batches_split_ = 0;
  std::uint64_t records_too_large_ = 0;
  std::chrono::steady_clock::time_point last_record_warning_;
  std::chrono::steady_clock::time_point last_response_warning_;
};

// Checks the endpoint (see otlpLogsUrl) and the extra headers ("Name: value", no CR or LF, not
// Content-Type, Content-Encoding or Content-Length, which the sender sets) and creates the
// sender. `loop` and `client` must outlive it. Call on the loop thread. Errors: kConfig naming
// the output and what is wrong.
Result<std::unique_ptr<Sender>> makeOtlpSender(platform::EventLoop& loop, HttpClient& client,
                                               const std::string& endpoint,
                                               const OtlpOutputOptions& options,
                                               const Identity& identity);

}  // namespace cistern::transport
