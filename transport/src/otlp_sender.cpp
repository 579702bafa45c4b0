#include "otlp_sender.h"

#define ZLIB_CONST
#include <uv.h>
#include <zlib.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <climits>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "batch_split.h"
#include "transport_log.h"

namespace cistern::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxBodyInError = 200;
// Warnings that a misbehaving receiver or damaged data could repeat for every batch.
constexpr auto kWarnInterval = std::chrono::seconds(60);

// At most one warning per kWarnInterval per `last`; the ones in between are only counted.
bool warnDue(Clock::time_point& last) {
  const auto now = Clock::now();
  if (last != Clock::time_point{} && now - last < kWarnInterval) return false;
  last = now;
  return true;
}

// What a receiver said, made safe for an error message and a log line: at most `max` bytes,
// line breaks as spaces, other control bytes and non-ASCII as '?'.
std::string sanitize(std::string_view text, std::size_t max) {
  std::string out;
  text = text.substr(0, max);
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else if (c < 0x20U || c >= 0x7fU) {
      out += '?';
    } else {
      out += ch;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 token characters, for header names.
bool isTokenChar(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return std::isalnum(c) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

Result<std::string> gzipCompress(std::string_view in, int level) {
  if (in.size() > UINT_MAX / 2) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("gzip: a {}-byte request body is too large", in.size()));
  }
  z_stream zs{};
  int rc = deflateInit2(&zs, level, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8, Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) return fail(ErrorCode::kIo, fmt::format("gzip: deflateInit2: {}", zError(rc)));
  std::string out(deflateBound(&zs, static_cast<uLong>(in.size())), '\0');
  zs.next_in = reinterpret_cast<const Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  rc = deflate(&zs, Z_FINISH);
  const std::string reason = zs.msg != nullptr ? zs.msg : zError(rc);
  const auto produced = static_cast<std::size_t>(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return fail(ErrorCode::kIo, "gzip: deflate: " + reason);
  out.resize(produced);
  return out;
}

SendResult closedResult(Clock::time_point start) {
  SendResult r;
  r.outcome = Outcome::kRetry;
  r.error = "closed";
  r.latency = Clock::now() - start;
  return r;
}

// Statuses that say the request can never succeed as configured (credentials, path, method,
// media type): every later batch will meet the same answer. They are a problem of the sensor's
// configuration, not of the data, so the data is kept (retried with backoff, failed over at
// once) rather than dropped: a wrong token must not turn into silent loss.
bool isConfigStatus(int status) {
  return status == 401 || status == 403 || status == 404 || status == 405 || status == 407 ||
         status == 415 || status == 495 || status == 496;
}

// nginx completes the TLS handshake without the client certificate that `ssl_verify_client on`
// requires and answers 400 ("No required SSL certificate was sent", "The SSL certificate
// error"): the same configuration problem as a refused handshake.
bool isClientCertificateRefusal(int status, const std::string& body) {
  return status == 400 && (body.find("SSL certificate") != std::string::npos ||
                           body.find("SSL Certificate") != std::string::npos);
}

}  // namespace

struct OtlpSender::Work {
  uv_work_t req{};
  OtlpSender* sender = nullptr;
  // Read on the thread pool; neither changes while the work is queued.
  const OtlpLogsEncoder* encoder = nullptr;
  bool gzip = false;
  std::shared_ptr<const Batch> batch;
  std::function<void(SendResult)> done;
  Clock::time_point start;
  std::shared_ptr<BodyPool> bodies;
  // Taken from `bodies` on the loop thread; the body is encoded into it on the thread pool.
  std::unique_ptr<std::string> buffer;
  // Written on the thread pool, read in afterWork.
  std::shared_ptr<const std::string> body;
  OtlpEncodeStats stats;
  std::string error;
};

struct OtlpSender::InFlight {
  // Valid while !finished: close() marks every request finished before the sender may go.
  OtlpSender* sender = nullptr;
  std::uint64_t id = 0;
  bool finished = false;
  bool probe = false;
  std::shared_ptr<const Batch> batch;  // null for a probe; kept for a split after a 413
  std::uint64_t records = 0;
  std::uint64_t unreadable = 0;
  std::size_t wire_bytes = 0;
  Clock::time_point start;
  std::function<void(SendResult)> done;
};

namespace {

// A body that goes back to `pool` when the last request holding it is done with it.
std::shared_ptr<const std::string> pooledBody(std::unique_ptr<std::string> body,
                                              std::shared_ptr<OtlpSender::BodyPool> pool) {
  return {body.release(), [pool = std::move(pool)](const std::string* done) {
            pool->give(std::unique_ptr<std::string>(const_cast<std::string*>(done)));
          }};
}

void runWork(uv_work_t* req) {
  auto* work = static_cast<OtlpSender::Work*>(req->data);
  std::string& encoded = *work->buffer;
  work->stats = work->encoder->encodeInto(work->batch->frames, encoded);
  if (!work->gzip) {
    work->body = pooledBody(std::move(work->buffer), std::move(work->bodies));
    return;
  }
  auto compressed = gzipCompress(encoded, kOtlpGzipLevel);
  work->bodies->give(std::move(work->buffer));
  if (compressed) {
    work->body = std::make_shared<const std::string>(std::move(*compressed));
  } else {
    work->error = compressed.error().message;
  }
}

}  // namespace

Result<std::string> otlpLogsUrl(const std::string& output_name, const std::string& endpoint) {
  const auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kConfig,
                fmt::format("output '{}': endpoint '{}': {}", output_name, endpoint, why));
  };
  std::string_view rest = endpoint;
  if (rest.size() >= 8 && iequals(rest.substr(0, 8), "https://")) {
    rest.remove_prefix(8);
  } else if (rest.size() >= 7 && iequals(rest.substr(0, 7), "http://")) {
    rest.remove_prefix(7);
  } else {
    return bad("not an http:// or https:// URL");
  }
  if (rest.empty() || rest.front() == '/') return bad("no host");
  for (const char ch : endpoint) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20U || c == 0x7fU) return bad("spaces or control characters");
  }
  if (endpoint.find_first_of("?#") != std::string::npos) {
    return bad("a query or fragment: give the base URL, /v1/logs is appended to it");
  }
  std::string base = endpoint;
  while (base.ends_with('/')) base.pop_back();
  if (base.ends_with("/v1/logs")) return bad("give the base URL: /v1/logs is appended to it");
  return base + "/v1/logs";
}

SendResult mapOtlpResponse(const HttpResponse& response, const std::string& url,
                           std::uint64_t records, bool probe, bool* unparseable) {
  SendResult r;
  if (unparseable != nullptr) *unparseable = false;
  if (response.status == 0) {
    r.outcome = Outcome::kRetry;
    r.timed_out = response.timed_out;
    if (response.tls_error) {
      r.config_error = true;
      r.error = fmt::format("TLS failure with {}: {}", url, response.error);
    } else if (!response.error.empty()) {
      r.error = response.error;  // the client names the URL
    } else {
      r.error = fmt::format("no response from {}{}", url, response.timed_out ? " (timed out)" : "");
    }
    return r;
  }
  const int status = response.status;
  if (status >= 200 && status < 300) {
    r.outcome = Outcome::kDelivered;
    if (probe) return r;
    const auto parsed = parseExportResponse(response.body);
    if (!parsed) {
      if (unparseable != nullptr) *unparseable = true;
      return r;
    }
    const auto rejected =
        std::min(static_cast<std::uint64_t>(parsed->rejected_log_records), records);
    if (rejected > 0) {
      r.rejected_records = rejected;
      r.error = fmt::format("{} rejected {} of {} records: {}", url, rejected, records,
                            sanitize(parsed->error_message, kMaxBodyInError));
    }
    return r;
  }
  r.error = fmt::format("HTTP {} from {}", status, url);
  const std::string body = sanitize(response.body, kMaxBodyInError);
  if (!body.empty()) r.error += ": " + body;
  const bool retryable = status == 429 || status == 502 || status == 503 || status == 504;
  if (isConfigStatus(status) || isClientCertificateRefusal(status, response.body)) {
    r.outcome = Outcome::kRetry;
    r.config_error = true;
    return r;
  }
  if (retryable || probe) {
    r.outcome = Outcome::kRetry;
    r.pushback = status == 429 || status == 503;
    r.retry_after = response.retry_after;
    // A probe that gets a client error will get it again until the configuration changes.
    r.config_error = probe && !retryable && status >= 400 && status < 500 && status != 408;
    return r;
  }
  r.outcome = Outcome::kRejected;
  r.rejected_records = records;
  return r;
}

OtlpSender::OtlpSender(platform::EventLoop& loop, HttpClient& client, std::string endpoint,
                       std::string url, const OtlpOutputOptions& options, const Identity& identity)
    : loop_(loop),
      client_(client),
      endpoint_(std::move(endpoint)),
      url_(std::move(url)),
      health_url_(options.heartbeat.probe == ProbeKind::kHttpGet ? options.heartbeat.health_url
                                                                 : std::string()),
      gzip_(options.compression == Compression::kGzip),
      timeout_(options.timeout),
      max_in_flight_(std::max<std::size_t>(options.batch.max_in_flight, 1)),
      output_name_(options.name),
      encoder_(identity),
      probe_body_(std::make_shared<const std::string>(encoder_.encodeEmptyRequest())),
      bodies_(std::make_shared<BodyPool>(max_in_flight_)) {
  headers_.emplace_back("Content-Type: application/x-protobuf");
  headers_.insert(headers_.end(), options.headers.begin(), options.headers.end());
  gzip_headers_ = headers_;
  gzip_headers_.emplace_back("Content-Encoding: gzip");
}

OtlpSender::~OtlpSender() {
  // close() must have finished: a queued work item points at this sender.
  assert(work_pending_ == 0);
  if (work_pending_ > 0 || !in_flight_.empty()) {
    transportLogger()->error("output '{}': OTLP sender for {} destroyed with requests in flight",
                             output_name_, endpoint_);
  }
  for (auto& entry : in_flight_) entry.second->finished = true;
}

void OtlpSender::send(std::shared_ptr<const Batch> batch, std::function<void(SendResult)> done) {
  const auto start = Clock::now();
  if (closing_) {
    defer([done = std::move(done), start] { done(closedResult(start)); });
    return;
  }
  auto work = std::make_unique<Work>();
  work->req.data = work.get();
  work->sender = this;
  work->encoder = &encoder_;
  work->gzip = gzip_;
  work->batch = std::move(batch);
  work->done = std::move(done);
  work->start = start;
  work->bodies = bodies_;
  work->buffer = bodies_->take();
  const int rc = uv_queue_work(static_cast<uv_loop_t*>(loop_.uvLoop()), &work->req, runWork,
                               [](uv_work_t* req, int status) {
                                 std::unique_ptr<Work> owned(static_cast<Work*>(req->data));
                                 OtlpSender* self = owned->sender;
                                 self->afterWork(std::move(owned), status);
                               });
  if (rc != 0) {
    SendResult r;
    r.outcome = Outcome::kRetry;
    r.error = fmt::format("output '{}': queueing a batch for {}: {}", output_name_, url_,
                          uv_strerror(rc));
    defer([done = std::move(work->done), r] { done(r); });
    return;
  }
  // The loop owns the work item until its after-work callback.
  static_cast<void>(work.release());
  ++work_pending_;
}

void OtlpSender::afterWork(std::unique_ptr<Work> work, int status) {
  --work_pending_;
  if (closing_) {
    work->done(closedResult(work->start));
    maybeClosed();
    return;
  }
  if (status != 0 || !work->error.empty()) {
    SendResult r;
    r.outcome = Outcome::kRetry;
    r.error = fmt::format("output '{}': encoding a batch for {}: {}", output_name_, url_,
                          status != 0 ? uv_strerror(status) : work->error);
    r.latency = Clock::now() - work->start;
    work->done(r);
    return;
  }
  const OtlpEncodeStats& stats = work->stats;
  if (work->batch->attempt == 0) {
    records_bytes_body_ += stats.bytes_bodies;
    attributes_bytes_value_ += stats.bytes_attributes;
    records_malformed_ += stats.malformed;
    records_unreadable_ += stats.unreadable;
    if ((stats.malformed > 0 || stats.unreadable > 0) && warnDue(last_record_warning_)) {
      transportLogger()->warn(
          "output '{}': batch {}: {} records with malformed metadata sent as bytes, {} records "
          "of damaged frames not sent",
          output_name_, work->batch->seq, stats.malformed, stats.unreadable);
    }
  }
  startRequest(std::move(work->body), gzip_, stats.records, stats.unreadable,
               std::move(work->batch), work->start, std::move(work->done));
}

void OtlpSender::probe(std::function<void(SendResult)> done) {
  const auto start = Clock::now();
  if (closing_) {
    defer([done = std::move(done), start] { done(closedResult(start)); });
    return;
  }
  if (!health_url_.empty()) {
    // heartbeat.probe: http_get, as load balancers check a receiver: GET, expecting 2xx.
    HttpRequest http;
    http.url = health_url_;
    http.method = "GET";
    http.timeout = timeout_;
    client_.send(
        std::move(http), [this, start, done = std::move(done)](const HttpResponse& response) {
          SendResult r;
          if (response.status >= 200 && response.status < 300) {
            r.outcome = Outcome::kDelivered;
          } else {
            r.outcome = Outcome::kRetry;
            r.timed_out = response.timed_out;
            r.error = response.status == 0 ? response.error
                                           : fmt::format("health check {} answered HTTP {}",
                                                         health_url_, response.status);
          }
          r.latency = Clock::now() - start;
          done(r);
        });
    return;
  }
  // The probe body is a few hundred bytes: encoded once, sent uncompressed.
  startRequest(probe_body_, false, 0, 0, nullptr, start, std::move(done));
}

void OtlpSender::startRequest(std::shared_ptr<const std::string> body, bool gzip,
                              std::uint64_t records, std::uint64_t unreadable,
                              std::shared_ptr<const Batch> batch, Clock::time_point start,
                              std::function<void(SendResult)> done) {
  auto request = std::make_shared<InFlight>();
  request->sender = this;
  request->id = next_request_++;
  request->probe = batch == nullptr;
  request->batch = std::move(batch);
  request->records = records;
  request->unreadable = unreadable;
  request->wire_bytes = body->size();
  request->start = start;
  request->done = std::move(done);
  in_flight_.emplace(request->id, request);

  HttpRequest http;
  http.url = url_;
  http.method = "POST";
  http.headers = gzip ? gzip_headers_ : headers_;
  http.body = std::move(body);
  http.timeout = timeout_;
  client_.send(std::move(http), [request](const HttpResponse& response) {
    // After close() the batch was already failed; the sender may be gone.
    if (request->finished) return;
    request->sender->finish(*request, response);
  });
}

void OtlpSender::finish(InFlight& request, const HttpResponse& response) {
  request.finished = true;
  in_flight_.erase(request.id);
  bool unparseable = false;
  SendResult r = mapOtlpResponse(response, url_, request.records, request.probe, &unparseable);
  if (unparseable) {
    ++responses_unparseable_;
    if (warnDue(last_response_warning_)) {
      transportLogger()->warn(
          "output '{}': {} answered HTTP {} with a body that is not an OTLP export response "
          "({} bytes); taken as delivered",
          output_name_, url_, response.status, response.body.size());
    }
  }
  r.bytes_sent = response.status != 0 ? request.wire_bytes : 0;
  if (!request.probe && r.outcome != Outcome::kRetry) r.skipped_records = request.unreadable;
  r.latency = Clock::now() - request.start;
  // Nothing else in flight or being encoded: the output is idle (or about to send one batch),
  // and keeps no request memory while it is.
  if (in_flight_.empty() && work_pending_ == 0) bodies_->clear();
  const auto done = std::move(request.done);
  if (response.status == 413 && !request.probe) {
    sendSplit(std::move(request.batch), std::move(r), request.start, done);
    return;
  }
  done(r);
}

void OtlpSender::sendSplit(std::shared_ptr<const Batch> batch, SendResult refused,
                           Clock::time_point start, std::function<void(SendResult)> done) {
  auto halves = splitBatch(batch->frames);
  if (!halves) {
    // Refused for good: one record alone over the limit, or a frame whose damaged body cannot be
    // cut between records (its records are rejected, not counted as too large).
    if (batch->frames.records() == 1) {
      records_too_large_ += refused.rejected_records;
      refused.error += " (a single record over the receiver's request size limit)";
    } else {
      refused.error += " (a damaged frame that cannot be cut into smaller requests)";
    }
    done(std::move(refused));
    return;
  }
  ++batches_split_;
  auto half = [&](ReadBatch frames) {
    auto b = std::make_shared<Batch>();
    b->frames = std::move(frames);
    b->seq = batch->seq;
    b->attempt = std::max<std::uint32_t>(batch->attempt, 1);  // its records are counted already
    return std::shared_ptr<const Batch>(std::move(b));
  };
  struct Split {
    std::shared_ptr<const Batch> second;
    std::uint64_t records = 0;
    std::uint64_t bytes_sent = 0;
    std::uint64_t rejected = 0;
    std::uint64_t skipped = 0;
    std::string error;
    Clock::time_point start;
    std::function<void(SendResult)> done;
  };
  auto split = std::make_shared<Split>();
  split->second = half(std::move(halves->second));
  split->records = batch->frames.records();
  split->bytes_sent = refused.bytes_sent;
  split->start = start;
  split->done = std::move(done);
  // A half's result: a retry ends the batch at once as kRetry; otherwise its rejections add up.
  auto absorb = [split](SendResult& r) {
    split->bytes_sent += r.bytes_sent;
    if (r.outcome == Outcome::kRetry) {
      r.bytes_sent = split->bytes_sent;
      r.latency = Clock::now() - split->start;
      split->done(std::move(r));
      return false;
    }
    split->rejected += r.rejected_records;
    split->skipped += r.skipped_records;
    if (!r.error.empty()) split->error = std::move(r.error);
    return true;
  };
  auto finishBoth = [split] {
    SendResult r;
    r.rejected_records = split->rejected;
    r.skipped_records = split->skipped;
    r.outcome = split->rejected > 0 && split->rejected + split->skipped >= split->records
                    ? Outcome::kRejected
                    : Outcome::kDelivered;
    r.error = std::move(split->error);
    r.bytes_sent = split->bytes_sent;
    r.latency = Clock::now() - split->start;
    split->done(std::move(r));
  };
  send(half(std::move(halves->first)), [this, split, absorb, finishBoth](SendResult first) {
    if (!absorb(first)) return;
    if (closing_) {
      SendResult closed = closedResult(split->start);
      closed.bytes_sent = split->bytes_sent;
      split->done(std::move(closed));
      return;
    }
    send(std::move(split->second), [absorb, finishBoth](SendResult second) {
      if (absorb(second)) finishBoth();
    });
  });
}

void OtlpSender::close(std::function<void()> closed) {
  if (closing_) {
    defer(std::move(closed));
    return;
  }
  closing_ = true;
  for (auto& entry : in_flight_) {
    InFlight& request = *entry.second;
    request.finished = true;
    defer([done = std::move(request.done), start = request.start] { done(closedResult(start)); });
  }
  in_flight_.clear();
  closed_ = std::move(closed);
  maybeClosed();
}

void OtlpSender::maybeClosed() {
  if (!closing_ || work_pending_ > 0 || !closed_) return;
  // Deferred, so that it runs after the failures deferred above, and so that the owner may
  // destroy this sender in it without this function still running.
  defer(std::exchange(closed_, nullptr));
}

void OtlpSender::defer(std::function<void()> fn) {
  auto shared = std::make_shared<std::function<void()>>(std::move(fn));
  if (!loop_.post([shared] { (*shared)(); })) (*shared)();
}

std::unique_ptr<std::string> OtlpSender::BodyPool::take() {
  std::lock_guard lock(mu_);
  if (free_.empty()) return std::make_unique<std::string>();
  auto body = std::move(free_.back());
  free_.pop_back();
  return body;
}

void OtlpSender::BodyPool::give(std::unique_ptr<std::string> body) {
  std::lock_guard lock(mu_);
  if (free_.size() < capacity_) free_.push_back(std::move(body));
}

void OtlpSender::BodyPool::clear() {
  std::vector<std::unique_ptr<std::string>> freed;
  std::lock_guard lock(mu_);
  freed.swap(free_);
}

std::vector<Counter> OtlpSender::counters() const {
  return {{"records_bytes_body", records_bytes_body_},
          {"attributes_bytes_value", attributes_bytes_value_},
          {"records_malformed", records_malformed_},
          {"records_unreadable", records_unreadable_},
          {"responses_unparseable", responses_unparseable_},
          {"batches_split", batches_split_},
          {"records_too_large", records_too_large_}};
}

Result<std::unique_ptr<Sender>> makeOtlpSender(platform::EventLoop& loop, HttpClient& client,
                                               const std::string& endpoint,
                                               const OtlpOutputOptions& options,
                                               const Identity& identity) {
  auto url = otlpLogsUrl(options.name, endpoint);
  if (!url) return tl::unexpected(url.error());
  for (std::size_t i = 0; i < options.headers.size(); ++i) {
    // Values are never echoed: headers carry credentials.
    const std::string& header = options.headers[i];
    const auto bad = [&](std::string_view why) {
      return fail(ErrorCode::kConfig,
                  fmt::format("output '{}': headers[{}]: {}", options.name, i, why));
    };
    const auto colon = header.find(':');
    const std::string_view name = colon == std::string::npos
                                      ? std::string_view()
                                      : trim(std::string_view(header).substr(0, colon));
    if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar)) {
      return bad("not \"Name: value\"");
    }
    if (header.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return bad(fmt::format("the value of {} holds a line break or NUL", name));
    }
    for (const std::string_view own : {"Content-Type", "Content-Encoding", "Content-Length"}) {
      if (iequals(name, own)) return bad(fmt::format("{} is set by the OTLP output", own));
    }
  }
  return std::make_unique<OtlpSender>(loop, client, endpoint, std::move(*url), options, identity);
}

}  // namespace cistern::transport
