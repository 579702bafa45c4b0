// OtlpSender with the real CurlHttpClient against @elastic/mockotlpserver on loopback: records of
// every kind go in, the same records come out of the receiver's decoder, with gzip; the mock's
// scripted failures check the retry mapping over a real connection.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/transport/http_client.h"
#include "otlp_mock.h"
#include "otlp_records.h"
#include "otlp_sender.h"

namespace cistern::transport {
namespace {

using testing::BatchBuilder;
using testing::OtlpMock;

constexpr auto kWait = std::chrono::seconds(30);
const Identity kIdentity{"agent-sender", "sensor-s", "3.1.0"};

// An event loop with a CurlHttpClient and an OtlpSender on it, for one endpoint.
class Pipeline {
 public:
  Pipeline(const std::string& endpoint, Compression compression) {
    auto started = platform::EventLoop::start("otlp-comp");
    REQUIRE(started);
    loop_ = std::move(*started);
    options_.name = "otlp-test";
    options_.endpoints = {endpoint};
    options_.compression = compression;
    options_.timeout = std::chrono::milliseconds(10000);
    std::string error;
    loop_->runSync([&] {
      HttpClientOptions http;
      http.owner = "output 'otlp-test'";
      auto client = makeCurlHttpClient(*loop_, http);
      if (!client) {
        error = client.error().describe();
        return;
      }
      client_ = std::move(*client);
      auto sender = makeOtlpSender(*loop_, *client_, endpoint, options_, kIdentity);
      if (!sender) {
        error = sender.error().describe();
        return;
      }
      sender_ = std::move(*sender);
    });
    REQUIRE(error.empty());
  }
  ~Pipeline() {
    std::mutex mu;
    std::condition_variable cv;
    bool closed = false;
    loop_->runSync([&] {
      sender_->close([&] {
        client_->close([&] {
          std::lock_guard lk(mu);
          closed = true;
          cv.notify_all();
        });
      });
    });
    {
      std::unique_lock lk(mu);
      cv.wait_for(lk, kWait, [&] { return closed; });
    }
    loop_->stop();
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Sends and waits for the result (bounded).
  SendResult send(std::shared_ptr<const Batch> batch) {
    return await([&](auto done) { sender_->send(std::move(batch), std::move(done)); });
  }
  SendResult probe() {
    return await([&](auto done) { sender_->probe(std::move(done)); });
  }

 private:
  template <class Start>
  SendResult await(Start start) {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<SendResult> result;
    loop_->runSync([&] {
      start([&](SendResult r) {
        std::lock_guard lk(mu);
        result = std::move(r);
        cv.notify_all();
      });
    });
    std::unique_lock lk(mu);
    REQUIRE(cv.wait_for(lk, kWait, [&] { return result.has_value(); }));
    return *result;
  }

  std::unique_ptr<platform::EventLoop> loop_;
  OtlpOutputOptions options_;
  std::unique_ptr<HttpClient> client_;
  std::unique_ptr<Sender> sender_;
};

struct Sent {
  std::string kind;
  std::string body;
  std::uint64_t ts = 0;
};

// `per_kind` records of each kind in frames of 25 records, from frame `first_frame` on.
std::shared_ptr<Batch> makeBatch(int per_kind, FrameId first_frame, std::vector<Sent>& sent) {
  using namespace std::string_literals;
  BatchBuilder b;
  FrameId frame = first_frame;
  for (int i = 0; i < per_kind; ++i) {
    if (i % 25 == 0) b.frame(frame++);
    const auto n = static_cast<std::uint64_t>(sent.size());
    const std::uint64_t ts = 1'760'000'000'000'000'000ULL + n * 1000;
    const std::string line = "line " + std::to_string(n) + " ✓";
    b.logLine("files", ts, "/var/log/app.log", n * 50, 0, line);
    sent.push_back({"log", line, ts});

    const std::string packet = "\x08\x00\x45\x00 pkt "s + std::to_string(n);
    b.packet("lan", ts + 1, 1, 1514, packet);
    sent.push_back({"packet", packet, ts + 1});

    const std::string msg = "<30>Jun 15 15:06:40 host daemon[7]: message " + std::to_string(n);
    SyslogMeta meta;
    meta.format = SyslogFormat::kRfc3164;
    meta.facility = 3;
    meta.severity = 6;
    meta.timestamp_ns = 1'749'999'999'000'000'000;
    meta.host = "host";
    meta.app = "daemon";
    meta.procid = "7";
    meta.peer = "udp://127.0.0.1:5140";
    meta.message_offset = static_cast<std::uint32_t>(msg.find("message"));
    b.syslog("syslog-in", ts + 2, meta, msg);
    sent.push_back({"syslog", msg.substr(meta.message_offset), ts + 2});
  }
  auto batch = std::make_shared<Batch>();
  batch->frames = b.build();
  return batch;
}

}  // namespace

TEST_CASE("OtlpSender with curl delivers every record to a real OTLP receiver", "[component]") {
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  const auto compression = GENERATE(Compression::kGzip, Compression::kNone);
  Pipeline pipeline(mock.url() + "/", compression);

  CHECK(pipeline.probe().outcome == Outcome::kDelivered);
  std::vector<Sent> sent;
  constexpr int kBatches = 3;
  constexpr int kPerKind = 100;
  constexpr std::size_t kPerBatch = std::size_t{kPerKind} * 3;  // records of three kinds
  for (int i = 0; i < kBatches; ++i) {
    const auto r = pipeline.send(
        makeBatch(kPerKind, FrameId{1} + FrameId{10} * static_cast<FrameId>(i), sent));
    CHECK(r.outcome == Outcome::kDelivered);
    CHECK(r.error.empty());
    CHECK(r.rejected_records == 0);
    CHECK(r.bytes_sent > 0);
  }
  REQUIRE(sent.size() == kBatches * kPerBatch);
  REQUIRE(mock.waitForRecords(sent.size()));
  const auto got = mock.records();
  REQUIRE(got.size() == sent.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto& r = got[i];
    const auto& s = sent[i];
    INFO("record " << i << " " << s.kind);
    CHECK(r.body == s.body);
    CHECK(r.body_is_bytes == (s.kind == "packet"));
    CHECK(r.observed_time_unix_nano == s.ts);
    CHECK(r.resourceText("cistern.agent.id") == "agent-sender");
    if (s.kind == "log") {
      CHECK(r.time_unix_nano == s.ts);
      CHECK(r.text("log.file.path") == "/var/log/app.log");
      CHECK(r.integer("cistern.log.offset") == static_cast<std::int64_t>(i * 50));
    } else if (s.kind == "packet") {
      CHECK(r.integer("packet.original_length") == 1514);
      CHECK(r.integer("packet.captured_length") == static_cast<std::int64_t>(s.body.size()));
    } else {
      CHECK(r.time_unix_nano == 1'749'999'999'000'000'000ULL);
      CHECK(r.severity_text == "info");
      CHECK(r.text("syslog.appname") == "daemon");
      CHECK(r.text("client.address") == "udp://127.0.0.1:5140");
    }
  }
  // One resource per request, naming its frames (4 frames of 25 records each).
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto batch = static_cast<std::int64_t>(i / kPerBatch);
    CHECK(got[i].resourceInteger("cistern.frame.first") == 1 + 10 * batch);
    CHECK(got[i].resourceInteger("cistern.frame.last") == 4 + 10 * batch);
  }
  const auto requests = mock.requests();
  REQUIRE(requests.size() == 1 + kBatches);
  for (const auto& req : requests) {
    CHECK(req.path == "/v1/logs");
    CHECK(req.headers.value("content-type", "") == "application/x-protobuf");
  }
  // The probe is never compressed; batches are when asked.
  CHECK(requests[0].headers.value("content-encoding", "").empty());
  CHECK(requests[1].headers.value("content-encoding", "") ==
        (compression == Compression::kGzip ? "gzip" : ""));
  CHECK(mock.diagnostics() == "errors:  stderr: ");
}

TEST_CASE("OtlpSender with curl maps a receiver's failures", "[component]") {
  SECTION("503 with Retry-After, then success") {
    OtlpMock mock("2:503:3");
    REQUIRE(mock.error().empty());
    Pipeline pipeline(mock.url(), Compression::kGzip);
    std::vector<Sent> sent;
    const auto batch = makeBatch(10, 1, sent);
    for (int i = 0; i < 2; ++i) {
      const auto r = pipeline.send(batch);
      CHECK(r.outcome == Outcome::kRetry);
      CHECK(r.pushback);
      REQUIRE(r.retry_after);
      CHECK(*r.retry_after == std::chrono::seconds(3));
      CHECK(r.error.find("HTTP 503 from " + mock.url() + "/v1/logs") == 0);
    }
    CHECK(pipeline.send(batch).outcome == Outcome::kDelivered);
    REQUIRE(mock.waitForRecords(sent.size()));
    CHECK(mock.records().size() == sent.size());  // the failed attempts delivered nothing
  }
  SECTION("400 is rejected for good") {
    OtlpMock mock("1:400");
    REQUIRE(mock.error().empty());
    Pipeline pipeline(mock.url(), Compression::kNone);
    std::vector<Sent> sent;
    const auto r = pipeline.send(makeBatch(5, 1, sent));
    CHECK(r.outcome == Outcome::kRejected);
    CHECK(r.rejected_records == sent.size());
    CHECK(r.error == "HTTP 400 from " + mock.url() + "/v1/logs: mock failure 400");
  }
  SECTION("nobody listening") {
    std::string url;
    {
      OtlpMock mock;  // a port that was free a moment ago and is closed now
      REQUIRE(mock.error().empty());
      url = mock.url();
    }
    Pipeline pipeline(url, Compression::kNone);
    std::vector<Sent> sent;
    const auto r = pipeline.send(makeBatch(5, 1, sent));
    CHECK(r.outcome == Outcome::kRetry);
    CHECK_FALSE(r.config_error);
    CHECK_FALSE(r.error.empty());
    CHECK(pipeline.probe().outcome == Outcome::kRetry);
  }
}

}  // namespace cistern::transport
