// The encoder against a real OTLP implementation: requests encoded by OtlpLogsEncoder are POSTed
// (plain libcurl, blocking) to @elastic/mockotlpserver, which decodes them with protobufjs from
// the published .proto files; every record must come out as it went in.
#include <curl/curl.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "otlp_encode.h"
#include "otlp_mock.h"
#include "otlp_records.h"

namespace cistern::transport {
namespace {

using testing::BatchBuilder;
using testing::OtlpLogRecord;
using testing::OtlpMock;

const Identity kIdentity{"agent-component", "sensor-c", "2.0.0"};

struct PostResult {
  long status = 0;
  std::string error;
};

PostResult post(const std::string& url, const std::string& body, bool gzip_encoded) {
  PostResult out;
  CURL* curl = curl_easy_init();
  REQUIRE(curl != nullptr);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/x-protobuf");
  if (gzip_encoded) headers = curl_slist_append(headers, "Content-Encoding: gzip");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char*, std::size_t size, std::size_t n, void*) { return size * n; });
  const CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  } else {
    out.error = curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return out;
}

std::string gzip(const std::string& in) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(in.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// What the test put in, record by record, to compare with what the mock decoded.
struct Expected {
  std::string kind;
  std::string body;
  bool bytes = false;
  std::uint64_t ts = 0;
  std::int64_t number = 0;  // packet length, log offset or syslog severity
};

constexpr int kPerKind = 40;
constexpr std::uint64_t kBaseTs = 1'750'000'000'000'000'000ULL;

BatchBuilder mixedBatch(std::vector<Expected>& expected) {
  using namespace std::string_literals;
  BatchBuilder b;
  for (int i = 0; i < kPerKind; ++i) {
    const auto n = static_cast<std::uint64_t>(i);
    if (i % 10 == 0) b.frame(FrameId{500} + n / 10);
    const std::string line = "log line " + std::to_string(i) + " with ünïcode";
    b.logLine("files", kBaseTs + n, "/var/log/app.log", n * 100, 0, line);
    expected.push_back({"log", line, false, kBaseTs + n, static_cast<std::int64_t>(n * 100)});

    const std::string packet = "\x45\x00\x00\x54 raw \xff\xfe packet "s + std::to_string(i);
    b.packet("lan", kBaseTs + 1000 + n, 1, 1500, packet);
    expected.push_back({"packet", packet, true, kBaseTs + 1000 + n, 1500});

    const std::string text = "syslog message " + std::to_string(i);
    const std::string msg = "<13>1 2025-06-15T15:06:40.000000" + std::to_string(100 + i) +
                            "Z host app 42 ID [a@1 b=\"c\"] " + text;
    SyslogMeta meta;
    meta.format = SyslogFormat::kRfc5424;
    meta.facility = 1;
    meta.severity = static_cast<std::uint8_t>(i % 8);
    meta.timestamp_ns = 1'750'000'000'000'000'100 + i;
    meta.message_offset = static_cast<std::uint32_t>(msg.size() - text.size());
    meta.host = "host";
    meta.app = "app";
    meta.procid = "42";
    meta.msgid = "ID";
    meta.peer = "tcp://127.0.0.1:6514";
    b.syslog("syslog-in", kBaseTs + 2000 + n, meta, msg);
    expected.push_back(
        {"syslog", text, false, kBaseTs + 2000 + n, static_cast<std::int64_t>(i % 8)});
  }
  // Not UTF-8: must arrive byte for byte as bytes_value.
  const std::string latin1("caf\xe9 au lait", 12);
  b.logLine("files", kBaseTs + 5000, "/var/log/latin1.log", 7, kLogLineTruncated, latin1);
  expected.push_back({"log", latin1, true, kBaseTs + 5000, 7});
  return b;
}

void checkDecoded(const std::vector<OtlpLogRecord>& got, const std::vector<Expected>& expected) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto& r = got[i];
    const auto& e = expected[i];
    INFO("record " << i << " (" << e.kind << ")");
    CHECK(r.body == e.body);
    CHECK(r.body_is_bytes == e.bytes);
    CHECK(r.observed_time_unix_nano == e.ts);
    CHECK(r.resourceText("cistern.agent.id") == "agent-component");
    CHECK(r.resourceText("service.instance.id") == "agent-component");
    CHECK(r.resourceText("service.name") == "cistern");
    CHECK(r.resourceText("service.version") == "2.0.0");
    CHECK(r.resourceText("host.name") == "sensor-c");
    CHECK(r.resourceInteger("cistern.frame.first") == 500);
    CHECK(r.resourceInteger("cistern.frame.last") == 503);
    CHECK(r.resourceInteger("cistern.frame.count") == 4);
    if (e.kind == "log") {
      CHECK(r.time_unix_nano == e.ts);
      CHECK(r.text("cistern.input") == "files");
      CHECK(r.integer("cistern.log.offset") == e.number);
      CHECK(r.flag("cistern.log.truncated") == e.bytes);  // the latin-1 line is the truncated one
      CHECK(r.text("log.file.path") == (e.bytes ? "/var/log/latin1.log" : "/var/log/app.log"));
      CHECK(r.severity_number == 0);
    } else if (e.kind == "packet") {
      CHECK(r.time_unix_nano == e.ts);
      CHECK(r.text("cistern.input") == "lan");
      CHECK(r.integer("network.link_type") == 1);
      CHECK(r.integer("packet.original_length") == 1500);
      CHECK(r.integer("packet.captured_length") == static_cast<std::int64_t>(e.body.size()));
    } else {
      const auto severity = static_cast<std::uint8_t>(e.number);
      CHECK(r.time_unix_nano == static_cast<std::uint64_t>(1'750'000'000'000'000'100 +
                                                           static_cast<std::int64_t>(i / 3)));
      CHECK(r.severity_number == syslogSeverityNumber(severity));
      CHECK(r.severity_text == syslogSeverityName(severity));
      CHECK(r.integer("syslog.severity") == e.number);
      CHECK(r.integer("syslog.facility") == 1);
      CHECK(r.text("syslog.format") == "rfc5424");
      CHECK(r.text("syslog.hostname") == "host");
      CHECK(r.text("syslog.appname") == "app");
      CHECK(r.text("syslog.procid") == "42");
      CHECK(r.text("syslog.msgid") == "ID");
      CHECK(r.text("syslog.structured_data") == "[a@1 b=\"c\"]");
      CHECK(r.text("client.address") == "tcp://127.0.0.1:6514");
    }
  }
}

}  // namespace

TEST_CASE("The OTLP mock decodes every record kind as the encoder meant it", "[component]") {
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  std::vector<Expected> expected;
  const auto batch = mixedBatch(expected).build();
  const OtlpLogsEncoder encoder(kIdentity);
  const auto encoded = encoder.encode(batch);
  REQUIRE(encoded.stats.records == expected.size());
  CHECK(encoded.stats.bytes_bodies == 1);

  const bool gzip_encoded = GENERATE(false, true);
  INFO("gzip " << gzip_encoded);
  const auto r =
      post(mock.url() + "/v1/logs", gzip_encoded ? gzip(encoded.body) : encoded.body, gzip_encoded);
  REQUIRE(r.error.empty());
  CHECK(r.status == 200);
  REQUIRE(mock.waitForRecords(expected.size()));
  checkDecoded(mock.records(), expected);
  const auto requests = mock.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].path == "/v1/logs");
  CHECK(requests[0].headers.value("content-encoding", "") == (gzip_encoded ? "gzip" : ""));
  CHECK(mock.diagnostics() == "errors:  stderr: ");
}

TEST_CASE("The OTLP mock accepts the probe request and fails when told to", "[component]") {
  OtlpMock mock("1:503:7");
  REQUIRE(mock.error().empty());
  const OtlpLogsEncoder encoder(kIdentity);
  const std::string probe = encoder.encodeEmptyRequest();
  CHECK(post(mock.url() + "/v1/logs", probe, false).status == 503);
  CHECK(post(mock.url() + "/v1/logs", probe, false).status == 200);
  REQUIRE(mock.waitForRequests(2));
  // The decoded probe: the resource, no records.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (mock.logRequests().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto decoded = mock.logRequests();
  REQUIRE(decoded.size() == 1);
  const auto& rl = decoded[0]["resourceLogs"];
  REQUIRE(rl.size() == 1);
  CHECK_FALSE(rl[0].contains("scopeLogs"));
  CHECK(mock.records().empty());
  const auto requests = mock.requests();
  CHECK(requests[0].status == 503);
  CHECK(requests[1].status == 200);
}

TEST_CASE("OtlpMock stops within a bounded time, and twice is harmless", "[component]") {
  OtlpMock mock;
  REQUIRE(mock.error().empty());
  const auto start = std::chrono::steady_clock::now();
  mock.stop();
  mock.stop();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(6));
}

}  // namespace cistern::transport
