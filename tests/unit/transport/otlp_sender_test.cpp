// OtlpSender against a scripted FakeHttpClient: requests (URL, headers, body, gzip), how every
// kind of answer maps to a SendResult, probes, and close() with work in flight.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <zlib.h>

#include <catch2/catch.hpp>

#include "batch_split.h"
#include "fake_http_client.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "otlp_encode.h"
#include "otlp_records.h"
#include "otlp_sender.h"

namespace cistern::transport {
namespace {

namespace pb_collector = opentelemetry::proto::collector::logs::v1;
using testing::BatchBuilder;
using testing::FakeHttpClient;

constexpr auto kWait = std::chrono::seconds(10);
const Identity kIdentity{"agent-7", "sensor-7", "0.9.0"};

// Collects SendResults delivered on the loop thread; the test thread waits for them.
class Results {
 public:
  explicit Results(platform::EventLoop& loop) : loop_(loop) {}

  std::function<void(SendResult)> callback() {
    return [this](SendResult r) {
      std::lock_guard lk(mu_);
      if (!loop_.inLoopThread()) ++off_loop_;
      got_.push_back(std::move(r));
      cv_.notify_all();
    };
  }
  bool waitFor(std::size_t n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, kWait, [&] { return got_.size() >= n; });
  }
  std::vector<SendResult> all() {
    std::lock_guard lk(mu_);
    return got_;
  }
  std::size_t offLoop() {
    std::lock_guard lk(mu_);
    return off_loop_;
  }

 private:
  platform::EventLoop& loop_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SendResult> got_;
  std::size_t off_loop_ = 0;
};

OtlpOutputOptions options(Compression compression = Compression::kNone) {
  OtlpOutputOptions o;
  o.name = "otlp-main";
  o.endpoints = {"http://collector.test:4318/"};
  o.headers = {"Authorization: Bearer s3cret", "X-Tenant: blue"};
  o.compression = compression;
  o.timeout = std::chrono::milliseconds(1234);
  o.batch.max_in_flight = 3;
  return o;
}

std::shared_ptr<const Batch> makeBatch(int records, std::uint32_t attempt = 0) {
  BatchBuilder builder;
  builder.frame(41);
  for (int i = 0; i < records; ++i) {
    builder.logLine("app", 1000 + static_cast<std::uint64_t>(i), "/var/log/app.log",
                    static_cast<std::uint64_t>(i) * 10, 0, "line " + std::to_string(i));
  }
  auto batch = std::make_shared<Batch>();
  batch->frames = builder.build();
  batch->seq = 1;
  batch->attempt = attempt;
  return batch;
}

std::string gunzip(const std::string& in) {
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 15 + 16) == Z_OK);
  std::string out;
  char buf[16384];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  inflateEnd(&zs);
  REQUIRE(rc == Z_STREAM_END);
  return out;
}

class SenderFixture {
 public:
  explicit SenderFixture(const OtlpOutputOptions& o = options()) {
    auto started = platform::EventLoop::start("otlp-test");
    REQUIRE(started);
    loop = std::move(*started);
    http = std::make_unique<FakeHttpClient>(*loop);
    Result<std::unique_ptr<Sender>> made = fail(ErrorCode::kIo, "not run");
    loop->runSync([&] { made = makeOtlpSender(*loop, *http, o.endpoints.front(), o, kIdentity); });
    REQUIRE(made);
    sender = std::move(*made);
    results = std::make_unique<Results>(*loop);
  }
  ~SenderFixture() {
    if (!closed) close();
    loop->stop();
  }
  SenderFixture(const SenderFixture&) = delete;
  SenderFixture& operator=(const SenderFixture&) = delete;

  void send(std::shared_ptr<const Batch> batch) {
    loop->runSync([&] { sender->send(std::move(batch), results->callback()); });
  }
  void probe() {
    loop->runSync([&] { sender->probe(results->callback()); });
  }
  // Sends one batch of `records` records answered with `response`; returns the result.
  SendResult roundTrip(HttpResponse response, int records = 3) {
    http->script(std::move(response));
    const std::size_t before = results->all().size();
    send(makeBatch(records));
    REQUIRE(results->waitFor(before + 1));
    return results->all().back();
  }
  // Closes the sender and waits for `closed`.
  void close() {
    std::mutex mu;
    std::condition_variable cv;
    int calls = 0;
    loop->runSync([&] {
      sender->close([&] {
        std::lock_guard lk(mu);
        ++calls;
        cv.notify_all();
      });
    });
    std::unique_lock lk(mu);
    REQUIRE(cv.wait_for(lk, kWait, [&] { return calls > 0; }));
    closed = true;
    REQUIRE(calls == 1);
  }
  std::vector<Counter> counters() {
    std::vector<Counter> out;
    loop->runSync([&] { out = dynamic_cast<OtlpSender&>(*sender).counters(); });
    return out;
  }

  std::unique_ptr<platform::EventLoop> loop;
  std::unique_ptr<FakeHttpClient> http;
  std::unique_ptr<Sender> sender;
  std::unique_ptr<Results> results;
  bool closed = false;  // the sender was closed (by close() or by the test)
};

std::uint64_t counter(const std::vector<Counter>& counters, const std::string& name) {
  for (const auto& c : counters) {
    if (c.name == name) return c.value;
  }
  FAIL("no counter " << name);
  return 0;
}

}  // namespace

TEST_CASE("OtlpSender POSTs the encoded batch to /v1/logs with the configured headers", "[unit]") {
  SenderFixture f;
  CHECK(f.sender->endpoint() == "http://collector.test:4318/");
  CHECK(f.sender->maxInFlight() == 3);
  const auto r = f.roundTrip(FakeHttpClient::status(200), 5);
  CHECK(r.outcome == Outcome::kDelivered);
  CHECK(r.rejected_records == 0);
  CHECK(r.skipped_records == 0);
  CHECK(r.error.empty());
  CHECK_FALSE(r.pushback);
  CHECK(f.results->offLoop() == 0);

  const auto requests = f.http->requests();
  REQUIRE(requests.size() == 1);
  const auto& req = requests[0];
  CHECK(req.url == "http://collector.test:4318/v1/logs");
  CHECK(req.method == "POST");
  CHECK(req.timeout == std::chrono::milliseconds(1234));
  CHECK(req.headers == std::vector<std::string>{"Content-Type: application/x-protobuf",
                                                "Authorization: Bearer s3cret", "X-Tenant: blue"});
  REQUIRE(req.body);
  CHECK(r.bytes_sent == req.body->size());
  pb_collector::ExportLogsServiceRequest decoded;
  REQUIRE(decoded.ParseFromString(*req.body));
  REQUIRE(decoded.resource_logs_size() == 1);
  REQUIRE(decoded.resource_logs(0).scope_logs_size() == 1);
  const auto& records = decoded.resource_logs(0).scope_logs(0).log_records();
  REQUIRE(records.size() == 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(records[i].body().string_value() == "line " + std::to_string(i));
  }
}

TEST_CASE("OtlpSender gzips the body when compression is gzip", "[unit]") {
  SenderFixture f(options(Compression::kGzip));
  const auto r = f.roundTrip(FakeHttpClient::status(200), 200);
  CHECK(r.outcome == Outcome::kDelivered);
  const auto req = f.http->requests().at(0);
  CHECK(req.headers.back() == "Content-Encoding: gzip");
  CHECK(req.headers.front() == "Content-Type: application/x-protobuf");
  CHECK(r.bytes_sent == req.body->size());
  const std::string plain = gunzip(*req.body);
  CHECK(plain.size() > req.body->size());  // 200 similar lines compress
  pb_collector::ExportLogsServiceRequest decoded;
  REQUIRE(decoded.ParseFromString(plain));
  const auto& records = decoded.resource_logs(0).scope_logs(0).log_records();
  REQUIRE(records.size() == 200);
  CHECK(records[199].body().string_value() == "line 199");
}

TEST_CASE("OtlpSender maps 2xx with partial success to delivered with rejections", "[unit]") {
  SenderFixture f;
  SECTION("rejections") {
    pb_collector::ExportLogsServiceResponse resp;
    resp.mutable_partial_success()->set_rejected_log_records(2);
    resp.mutable_partial_success()->set_error_message("2 records\ntoo old");
    const auto r = f.roundTrip(FakeHttpClient::status(200, resp.SerializeAsString()), 5);
    CHECK(r.outcome == Outcome::kDelivered);
    CHECK(r.rejected_records == 2);
    CHECK(r.error ==
          "http://collector.test:4318/v1/logs rejected 2 of 5 records: 2 records too old");
  }
  SECTION("more rejections than records are capped") {
    pb_collector::ExportLogsServiceResponse resp;
    resp.mutable_partial_success()->set_rejected_log_records(99);
    const auto r = f.roundTrip(FakeHttpClient::status(202, resp.SerializeAsString()), 5);
    CHECK(r.outcome == Outcome::kDelivered);
    CHECK(r.rejected_records == 5);
  }
  SECTION("a warning without rejections is full success") {
    pb_collector::ExportLogsServiceResponse resp;
    resp.mutable_partial_success()->set_error_message("deprecated attribute");
    const auto r = f.roundTrip(FakeHttpClient::status(200, resp.SerializeAsString()));
    CHECK(r.outcome == Outcome::kDelivered);
    CHECK(r.rejected_records == 0);
    CHECK(r.error.empty());
  }
  SECTION("a garbage 2xx body is delivered and counted") {
    const auto r = f.roundTrip(FakeHttpClient::status(200, "{\"ok\":1}"));
    CHECK(r.outcome == Outcome::kDelivered);
    CHECK(r.rejected_records == 0);
    CHECK(r.error.empty());
    CHECK(counter(f.counters(), "responses_unparseable") == 1);
  }
}

TEST_CASE("OtlpSender retries 429, 502, 503 and 504 only, with Retry-After", "[unit]") {
  SenderFixture f;
  for (const int status : {429, 502, 503, 504}) {
    auto response = FakeHttpClient::status(status, "busy");
    response.retry_after = std::chrono::milliseconds(2000);
    const auto r = f.roundTrip(response);
    INFO("status " << status);
    CHECK(r.outcome == Outcome::kRetry);
    CHECK(r.pushback == (status == 429 || status == 503));
    REQUIRE(r.retry_after);
    CHECK(*r.retry_after == std::chrono::milliseconds(2000));
    CHECK_FALSE(r.config_error);
    CHECK(r.rejected_records == 0);
    CHECK(r.error ==
          "HTTP " + std::to_string(status) + " from http://collector.test:4318/v1/logs: busy");
  }
  const auto no_header = f.roundTrip(FakeHttpClient::status(503));
  CHECK_FALSE(no_header.retry_after);
  CHECK(no_header.error == "HTTP 503 from http://collector.test:4318/v1/logs");
}

TEST_CASE("OtlpSender rejects for good on other statuses, 400 included", "[unit]") {
  SenderFixture f;
  for (const int status : {400, 408, 500, 501, 302}) {
    const auto r = f.roundTrip(FakeHttpClient::status(status, "nope"), 4);
    INFO("status " << status);
    CHECK(r.outcome == Outcome::kRejected);
    CHECK(r.rejected_records == 4);
    CHECK_FALSE(r.pushback);
    CHECK_FALSE(r.config_error);
    CHECK(r.error ==
          "HTTP " + std::to_string(status) + " from http://collector.test:4318/v1/logs: nope");
  }
}

namespace {

// The log-line bodies of every record in a request body, in order.
std::vector<std::string> linesOf(const std::string& body) {
  pb_collector::ExportLogsServiceRequest decoded;
  REQUIRE(decoded.ParseFromString(body));
  std::vector<std::string> out;
  for (const auto& rl : decoded.resource_logs()) {
    for (const auto& sl : rl.scope_logs()) {
      for (const auto& r : sl.log_records()) out.push_back(r.body().string_value());
    }
  }
  return out;
}

std::vector<std::string> lineRange(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back("line " + std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("splitBatch halves a batch between frames, or one frame between its records", "[unit]") {
  SECTION("several frames: cut between frames where the bytes are closest to half") {
    testing::BatchBuilder builder;
    const std::vector<int> sizes{1, 1, 6, 1, 1};  // records per frame
    int n = 0;
    for (std::size_t f = 0; f < sizes.size(); ++f) {
      builder.frame(10 + f);
      for (int i = 0; i < sizes[f]; ++i, ++n) {
        builder.logLine("app", 1000 + static_cast<std::uint64_t>(n), "/a.log", 0, 0,
                        "line " + std::to_string(n));
      }
    }
    const ReadBatch batch = builder.build();
    const auto halves = splitBatch(batch);
    REQUIRE(halves);
    // Frames 10, 11 (2 records) before the big frame 12 would be the closest cut below half;
    // the cut keeps whole frames and both halves non-empty.
    std::vector<FrameId> first;
    std::vector<FrameId> second;
    for (const auto& f : halves->first.frames()) first.push_back(f.id);
    for (const auto& f : halves->second.frames()) second.push_back(f.id);
    CHECK(first == std::vector<FrameId>{10, 11});
    CHECK(second == std::vector<FrameId>{12, 13, 14});
    CHECK(halves->first.records() + halves->second.records() == 10);
    CHECK(halves->first.bodyBytes() + halves->second.bodyBytes() == batch.bodyBytes());
  }
  SECTION("one frame: cut between records at half their count, same frame id") {
    const auto batch = makeBatch(7);
    const auto halves = splitBatch(batch->frames);
    REQUIRE(halves);
    REQUIRE(halves->first.size() == 1);
    REQUIRE(halves->second.size() == 1);
    const auto& a = halves->first.frames()[0];
    const auto& b = halves->second.frames()[0];
    CHECK(a.id == 41);
    CHECK(b.id == 41);
    CHECK(a.record_count == 3);
    CHECK(b.record_count == 4);
    CHECK(a.first_ts == 1000);
    CHECK(a.last_ts == 1002);
    CHECK(b.first_ts == 1003);
    CHECK(b.last_ts == 1006);
    CHECK(a.body.size() + b.body.size() == batch->frames.frames()[0].body.size());
    // Each half decodes to its records.
    RecordReader reader(b.body);
    std::uint64_t count = 0;
    while (const auto* r = reader.next()) {
      CHECK(r->timestamp_ns == 1003 + count);
      ++count;
    }
    CHECK_FALSE(reader.failed());
    CHECK(count == 4);
  }
  SECTION("one record, or nothing, cannot be cut") {
    CHECK_FALSE(splitBatch(makeBatch(1)->frames));
    CHECK_FALSE(splitBatch(ReadBatch{}));
  }
}

TEST_CASE("OtlpSender cuts a batch refused with 413 until its halves fit, each record once",
          "[unit]") {
  SenderFixture f;
  // The whole (8 records) and its first half (4) are too large; quarters and the second half
  // fit. The halves go one after the other, so the answers come in this order.
  for (const int status : {413, 413, 200, 200, 200}) f.http->script(FakeHttpClient::status(status));
  f.send(makeBatch(8));
  REQUIRE(f.results->waitFor(1));
  const auto r = f.results->all().back();
  CHECK(r.outcome == Outcome::kDelivered);
  CHECK(r.rejected_records == 0);
  CHECK(r.error.empty());
  const auto requests = f.http->requests();
  REQUIRE(requests.size() == 5);
  CHECK(linesOf(*requests[0].body) == lineRange(0, 8));
  CHECK(linesOf(*requests[1].body) == lineRange(0, 4));
  CHECK(linesOf(*requests[2].body) == lineRange(0, 2));
  CHECK(linesOf(*requests[3].body) == lineRange(2, 4));
  CHECK(linesOf(*requests[4].body) == lineRange(4, 8));
  std::uint64_t wire = 0;
  for (const auto& q : requests) wire += q.body->size();
  CHECK(r.bytes_sent == wire);
  const auto counters = f.counters();
  CHECK(counter(counters, "batches_split") == 2);
  CHECK(counter(counters, "records_too_large") == 0);
}

TEST_CASE("OtlpSender rejects only a record that alone is over the receiver's limit", "[unit]") {
  SenderFixture f;
  SECTION("a batch of one record") {
    const auto r = f.roundTrip(FakeHttpClient::status(413, "too big"), 1);
    CHECK(r.outcome == Outcome::kRejected);
    CHECK(r.rejected_records == 1);
    CHECK_THAT(r.error, Catch::StartsWith("HTTP 413 from http://collector.test:4318/v1/logs") &&
                            Catch::Contains("a single record over the receiver's request size"));
    CHECK(counter(f.counters(), "records_too_large") == 1);
  }
  SECTION("one record of two") {
    for (const int status : {413, 413, 200}) f.http->script(FakeHttpClient::status(status));
    f.send(makeBatch(2));
    REQUIRE(f.results->waitFor(1));
    const auto r = f.results->all().back();
    CHECK(r.outcome == Outcome::kDelivered);
    CHECK(r.rejected_records == 1);
    CHECK_THAT(r.error, Catch::Contains("HTTP 413"));
    CHECK(linesOf(*f.http->requests().at(2).body) == lineRange(1, 2));
    CHECK(counter(f.counters(), "records_too_large") == 1);
    CHECK(counter(f.counters(), "batches_split") == 1);
  }
}

TEST_CASE("OtlpSender retries the whole batch when a half of a cut batch must be retried",
          "[unit]") {
  SenderFixture f;
  auto busy = FakeHttpClient::status(503);
  busy.retry_after = std::chrono::milliseconds(2000);
  f.http->script(FakeHttpClient::status(413));
  f.http->script(busy);
  f.send(makeBatch(6));
  REQUIRE(f.results->waitFor(1));
  const auto r = f.results->all().back();
  CHECK(r.outcome == Outcome::kRetry);
  CHECK(r.pushback);
  CHECK(r.retry_after == std::chrono::milliseconds(2000));
  CHECK(f.http->requests().size() == 2);  // the second half was not sent
}

TEST_CASE("OtlpSender keeps the data on configuration errors: retried, never rejected", "[unit]") {
  SenderFixture f;
  for (const int status : {401, 403, 404, 405, 407, 415}) {
    const auto r = f.roundTrip(FakeHttpClient::status(status, "nope"), 4);
    INFO("status " << status);
    CHECK(r.outcome == Outcome::kRetry);
    CHECK(r.config_error);
    CHECK(r.rejected_records == 0);
    CHECK(r.error ==
          "HTTP " + std::to_string(status) + " from http://collector.test:4318/v1/logs: nope");
  }
  // nginx's answer to a missing client certificate (ssl_verify_client on) is a 400.
  const auto nginx = f.roundTrip(
      FakeHttpClient::status(400, "<html><head><title>400 No required SSL certificate was sent"),
      4);
  CHECK(nginx.outcome == Outcome::kRetry);
  CHECK(nginx.config_error);
  CHECK(nginx.rejected_records == 0);
}

TEST_CASE("OtlpSender quotes at most 200 sanitized bytes of an error body", "[unit]") {
  SenderFixture f;
  std::string body = "line one\r\nline two\x01\xff";
  body += std::string(300, 'x');
  const auto r = f.roundTrip(FakeHttpClient::status(400, body));
  const std::string prefix = "HTTP 400 from http://collector.test:4318/v1/logs: ";
  REQUIRE(r.error.rfind(prefix, 0) == 0);
  const std::string quoted = r.error.substr(prefix.size());
  CHECK(quoted.size() == 200);
  CHECK(quoted.rfind("line one  line two??xxx", 0) == 0);
}

TEST_CASE("OtlpSender retries transport failures; TLS failures are config errors", "[unit]") {
  SenderFixture f;
  SECTION("connection refused") {
    const auto r = f.roundTrip(FakeHttpClient::failure(
        "connecting to http://collector.test:4318/v1/logs: Connection refused"));
    CHECK(r.outcome == Outcome::kRetry);
    CHECK_FALSE(r.config_error);
    CHECK_FALSE(r.pushback);
    CHECK(r.bytes_sent == 0);
    CHECK(r.error == "connecting to http://collector.test:4318/v1/logs: Connection refused");
  }
  SECTION("timeout") {
    const auto r = f.roundTrip(FakeHttpClient::failure("", false, true));
    CHECK(r.outcome == Outcome::kRetry);
    CHECK(r.error == "no response from http://collector.test:4318/v1/logs (timed out)");
  }
  SECTION("TLS") {
    const auto r = f.roundTrip(FakeHttpClient::failure(
        "SSL certificate problem: unable to get local issuer certificate", true));
    CHECK(r.outcome == Outcome::kRetry);
    CHECK(r.config_error);
    CHECK(r.error ==
          "TLS failure with http://collector.test:4318/v1/logs: SSL certificate problem: unable "
          "to get local issuer certificate");
  }
}

TEST_CASE("OtlpSender probes with an export that carries no records", "[unit]") {
  SenderFixture f(options(Compression::kGzip));
  f.http->script(FakeHttpClient::status(200));
  f.http->script(FakeHttpClient::status(503));
  f.http->script(FakeHttpClient::status(404, "no such path"));
  f.http->script(FakeHttpClient::status(500));
  for (int i = 0; i < 4; ++i) f.probe();
  REQUIRE(f.results->waitFor(4));
  const auto results = f.results->all();
  CHECK(results[0].outcome == Outcome::kDelivered);
  CHECK(results[1].outcome == Outcome::kRetry);
  CHECK(results[1].pushback);
  CHECK_FALSE(results[1].config_error);
  CHECK(results[2].outcome == Outcome::kRetry);  // a probe never rejects
  CHECK(results[2].config_error);
  CHECK(results[2].error == "HTTP 404 from http://collector.test:4318/v1/logs: no such path");
  CHECK(results[3].outcome == Outcome::kRetry);
  CHECK_FALSE(results[3].config_error);

  const auto req = f.http->requests().at(0);
  CHECK(req.url == "http://collector.test:4318/v1/logs");
  // Uncompressed even on a gzip output: a few hundred bytes.
  CHECK(req.headers == std::vector<std::string>{"Content-Type: application/x-protobuf",
                                                "Authorization: Bearer s3cret", "X-Tenant: blue"});
  CHECK(*req.body == OtlpLogsEncoder(kIdentity).encodeEmptyRequest());
  pb_collector::ExportLogsServiceRequest decoded;
  REQUIRE(decoded.ParseFromString(*req.body));
  REQUIRE(decoded.resource_logs_size() == 1);
  CHECK(decoded.resource_logs(0).scope_logs_size() == 0);
}

TEST_CASE("OtlpSender reports records of damaged frames as skipped, once", "[unit]") {
  SenderFixture f;
  const std::vector<std::byte> bad_meta(2, std::byte{7});
  const auto damaged = [&](std::uint32_t attempt) {
    auto batch = std::make_shared<Batch>();
    batch->frames = BatchBuilder()
                        .frame(5)
                        .logLine("app", 1, "/a", 0, 0, "ok")
                        .raw(RecordKind::kPacket, "lan", 2, bad_meta, "pkt")
                        .logLine("app", 3, "/a", 3, 0, "cut")
                        .truncate(1)
                        .build();
    batch->attempt = attempt;
    return batch;
  };
  f.http->script(FakeHttpClient::status(503));
  f.http->script(FakeHttpClient::status(200));
  f.send(damaged(0));
  REQUIRE(f.results->waitFor(1));
  f.send(damaged(1));
  REQUIRE(f.results->waitFor(2));
  const auto results = f.results->all();
  CHECK(results[0].outcome == Outcome::kRetry);
  CHECK(results[0].skipped_records == 0);
  CHECK(results[1].outcome == Outcome::kDelivered);
  CHECK(results[1].skipped_records == 1);
  const auto counters = f.counters();
  CHECK(counter(counters, "records_malformed") == 1);  // first attempt only
  CHECK(counter(counters, "records_unreadable") == 1);
  CHECK(counter(counters, "records_bytes_body") == 0);
}

TEST_CASE("OtlpSender close fails requests in flight and waits for encoding", "[unit]") {
  SenderFixture f;
  // Nothing scripted: the requests stay pending in the fake.
  for (int i = 0; i < 3; ++i) f.send(makeBatch(10));
  REQUIRE(f.http->waitForRequests(3));
  // A fourth batch is sent and the sender closed in the same loop turn: its encoding is still
  // queued on the thread pool when close() runs.
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;
  std::size_t results_when_closed = 0;
  f.loop->runSync([&] {
    f.sender->send(makeBatch(1000), f.results->callback());
    f.sender->close([&] {
      std::lock_guard lk(mu);
      results_when_closed = f.results->all().size();
      closed = true;
      cv.notify_all();
    });
    f.sender->send(makeBatch(1), f.results->callback());  // after close
  });
  {
    std::unique_lock lk(mu);
    REQUIRE(cv.wait_for(lk, kWait, [&] { return closed; }));
  }
  f.closed = true;
  REQUIRE(f.results->waitFor(5));
  CHECK(results_when_closed == 5);  // every batch failed before `closed`
  // The late answers of the fake go nowhere.
  while (f.http->answerNext(FakeHttpClient::status(200))) {
  }
  f.loop->runSync([] {});
  f.loop->runSync([] {});
  const auto results = f.results->all();
  CHECK(results.size() == 5);
  for (const auto& r : results) {
    CHECK(r.outcome == Outcome::kRetry);
    CHECK(r.error == "closed");
  }
  CHECK(f.http->requestCount() == 3);  // the batch being encoded was never sent
}

TEST_CASE("makeOtlpSender checks the endpoint and the headers", "[unit]") {
  auto started = platform::EventLoop::start("otlp-test");
  REQUIRE(started);
  auto& loop = **started;
  FakeHttpClient http(loop);
  const auto make = [&](const std::string& endpoint, std::vector<std::string> headers = {}) {
    OtlpOutputOptions o = options();
    o.headers = std::move(headers);
    Result<std::unique_ptr<Sender>> made = fail(ErrorCode::kIo, "not run");
    loop.runSync([&] { made = makeOtlpSender(loop, http, endpoint, o, kIdentity); });
    if (made) loop.runSync([&] { (*made)->close([] {}); });
    loop.runSync([] {});
    return made ? std::string() : made.error().describe();
  };
  // Valid endpoints, and the URL each posts to.
  CHECK(otlpLogsUrl("o", "https://proc.example:4318").value() ==
        "https://proc.example:4318/v1/logs");
  CHECK(otlpLogsUrl("o", "HTTP://10.0.0.1//").value() == "HTTP://10.0.0.1/v1/logs");
  CHECK(otlpLogsUrl("o", "http://gw.example/otlp/").value() == "http://gw.example/otlp/v1/logs");
  CHECK(make("http://127.0.0.1:4318").empty());
  CHECK(make("http://[::1]:4318", {"Authorization: Basic eA==", "x-a:b"}).empty());

  CHECK(make("ftp://host:21") ==
        "config: output 'otlp-main': endpoint 'ftp://host:21': not an http:// or https:// URL");
  CHECK(make("collector:4318").find("not an http:// or https:// URL") != std::string::npos);
  CHECK(make("http://").find("no host") != std::string::npos);
  CHECK(make("https:///v1").find("no host") != std::string::npos);
  CHECK(make("http://host:4318/?x=1").find("query") != std::string::npos);
  CHECK(make("http://host name:4318").find("spaces") != std::string::npos);
  CHECK(make("http://host:4318/v1/logs").find("/v1/logs is appended") != std::string::npos);

  CHECK(make("http://h", {"NoColon"}) ==
        "config: output 'otlp-main': headers[0]: not \"Name: value\"");
  CHECK(make("http://h", {"Ok: 1", ": empty name"}).find("headers[1]") != std::string::npos);
  const std::string injected = make("http://h", {"X-A: 1\r\nX-B: 2"});
  CHECK(injected.find("line break") != std::string::npos);
  CHECK(injected.find("X-B") == std::string::npos);  // values are never echoed
  CHECK(make("http://h", {"content-type: text/plain"}) ==
        "config: output 'otlp-main': headers[0]: Content-Type is set by the OTLP output");
  CHECK(make("http://h", {"Content-Encoding: br"}).find("Content-Encoding") != std::string::npos);
  loop.stop();
}

}  // namespace cistern::transport
