// The hand-written OTLP encoder, checked by decoding its output with the classes protoc generates
// from the .proto subset (a second, independent implementation of the wire format).
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "otlp_encode.h"
#include "otlp_records.h"

namespace cistern::transport {
namespace {

namespace pb_collector = opentelemetry::proto::collector::logs::v1;
namespace pb_logs = opentelemetry::proto::logs::v1;
namespace pb_common = opentelemetry::proto::common::v1;

using testing::BatchBuilder;

const Identity kIdentity{"agent-0001", "sensor-1.example", "1.2.3"};

pb_collector::ExportLogsServiceRequest decode(const std::string& body) {
  pb_collector::ExportLogsServiceRequest req;
  REQUIRE(req.ParseFromString(body));
  // The hand-written encoder must produce exactly what libprotobuf would for the same message
  // (canonical field order, minimal varints): same size, same bytes.
  REQUIRE(req.SerializeAsString() == body);
  return req;
}

std::map<std::string, pb_common::AnyValue> attrs(
    const google::protobuf::RepeatedPtrField<pb_common::KeyValue>& kvs) {
  std::map<std::string, pb_common::AnyValue> out;
  for (const auto& kv : kvs) {
    REQUIRE(out.count(kv.key()) == 0);  // keys are unique, as OTLP requires
    out[kv.key()] = kv.value();
  }
  return out;
}

const pb_logs::ScopeLogs& onlyScope(const pb_collector::ExportLogsServiceRequest& req) {
  REQUIRE(req.resource_logs_size() == 1);
  REQUIRE(req.resource_logs(0).scope_logs_size() == 1);
  return req.resource_logs(0).scope_logs(0);
}

std::string str(const pb_common::AnyValue& v) {
  REQUIRE(v.value_case() == pb_common::AnyValue::kStringValue);
  return v.string_value();
}
std::int64_t num(const pb_common::AnyValue& v) {
  REQUIRE(v.value_case() == pb_common::AnyValue::kIntValue);
  return v.int_value();
}

}  // namespace

TEST_CASE("OTLP request carries the identity and the frame range in its resource", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const auto batch = BatchBuilder()
                         .frame(12)
                         .logLine("app", 100, "/a", 0, 0, "x")
                         .frame(10)
                         .logLine("app", 101, "/a", 2, 0, "y")
                         .frame(11)
                         .build();
  const auto encoded = encoder.encode(batch);
  CHECK(encoded.stats.records == 2);
  const auto req = decode(encoded.body);
  REQUIRE(req.resource_logs_size() == 1);
  const auto res = attrs(req.resource_logs(0).resource().attributes());
  CHECK(res.size() == 8);
  CHECK(str(res.at("host.name")) == "sensor-1.example");
  CHECK(str(res.at("service.name")) == "cistern");
  CHECK(str(res.at("service.version")) == "1.2.3");
  CHECK(str(res.at("service.instance.id")) == "agent-0001");
  CHECK(str(res.at("cistern.agent.id")) == "agent-0001");
  // Frames in the batch's order are 12, 10, 11 (the live lane reads newest first).
  CHECK(num(res.at("cistern.frame.first")) == 10);
  CHECK(num(res.at("cistern.frame.last")) == 12);
  CHECK(num(res.at("cistern.frame.count")) == 3);
  const auto& scope = onlyScope(req);
  CHECK(scope.scope().name() == "cistern");
  CHECK(scope.scope().version() == "1.2.3");
  REQUIRE(scope.log_records_size() == 2);
  CHECK(scope.log_records(0).body().string_value() == "x");
  CHECK(scope.log_records(1).body().string_value() == "y");
}

TEST_CASE("OTLP packet record: bytes body, link type and lengths", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  using namespace std::string_literals;
  const std::string data = "\x00\x01\x02\xff\x80 packet"s;
  const auto encoded =
      encoder.encode(BatchBuilder().packet("lan", 1'700'000'000'123456789, 1, 1514, data).build());
  CHECK(encoded.stats.records == 1);
  CHECK(encoded.stats.malformed == 0);
  CHECK(encoded.stats.bytes_bodies == 0);  // a packet body is bytes by nature, not a fallback
  const auto req = decode(encoded.body);
  const auto& rec = onlyScope(req).log_records(0);
  CHECK(rec.time_unix_nano() == 1'700'000'000'123456789U);
  CHECK(rec.observed_time_unix_nano() == 1'700'000'000'123456789U);
  CHECK(rec.severity_number() == pb_logs::SEVERITY_NUMBER_UNSPECIFIED);
  CHECK(rec.severity_text().empty());
  REQUIRE(rec.body().value_case() == pb_common::AnyValue::kBytesValue);
  CHECK(rec.body().bytes_value() == data);
  const auto a = attrs(rec.attributes());
  CHECK(a.size() == 4);
  CHECK(str(a.at("cistern.input")) == "lan");
  CHECK(num(a.at("network.link_type")) == 1);
  CHECK(num(a.at("packet.captured_length")) == 12);
  CHECK(num(a.at("packet.original_length")) == 1514);
}

TEST_CASE("OTLP log line record: string body, path, offset and flags", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const auto batch = BatchBuilder()
                         .logLine("app", 5'000, "/var/log/app.log", 1'234'567'890'123ULL, 0,
                                  "GET /index.html 200 ünïcödé")
                         .logLine("app", 6'000, "/var/log/app.log", 99,
                                  kLogLineTruncated | kLogLineSplit | kLogLineNoNewline, "cut")
                         .build();
  const auto encoded = encoder.encode(batch);
  CHECK(encoded.stats.records == 2);
  const auto req = decode(encoded.body);
  const auto& scope = onlyScope(req);
  REQUIRE(scope.log_records_size() == 2);

  const auto& plain = scope.log_records(0);
  CHECK(plain.time_unix_nano() == 5'000);
  CHECK(plain.observed_time_unix_nano() == 5'000);
  CHECK(str(plain.body()) == "GET /index.html 200 ünïcödé");
  auto a = attrs(plain.attributes());
  CHECK(a.size() == 3);
  CHECK(str(a.at("cistern.input")) == "app");
  CHECK(str(a.at("log.file.path")) == "/var/log/app.log");
  CHECK(num(a.at("cistern.log.offset")) == 1'234'567'890'123LL);

  const auto& flagged = scope.log_records(1);
  a = attrs(flagged.attributes());
  CHECK(a.size() == 6);
  CHECK(num(a.at("cistern.log.offset")) == 99);
  CHECK(a.at("cistern.log.truncated").bool_value());
  CHECK(a.at("cistern.log.split").bool_value());
  CHECK(a.at("cistern.log.no_newline").bool_value());
}

TEST_CASE("OTLP syslog record: MSG body, severity, header fields and peer", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const std::string msg =
      "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 "
      "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] \xEF\xBB\xBF"
      "An application "
      "event";
  SyslogMeta meta;
  meta.format = SyslogFormat::kRfc5424;
  meta.facility = 20;
  meta.severity = 5;
  meta.timestamp_ns = 1'065'910'455'003'000'000;
  meta.message_offset = static_cast<std::uint32_t>(msg.find("An application"));
  meta.host = "mymachine.example.com";
  meta.app = "evntslog";
  meta.procid = "1234";
  meta.msgid = "ID47";
  meta.peer = "tcp://127.0.0.1:40000";
  const auto encoded = encoder.encode(BatchBuilder().syslog("sys", 9'000, meta, msg).build());
  const auto req = decode(encoded.body);
  const auto& rec = onlyScope(req).log_records(0);
  CHECK(rec.time_unix_nano() == 1'065'910'455'003'000'000U);  // the message's own time
  CHECK(rec.observed_time_unix_nano() == 9'000);              // when it was received
  CHECK(rec.severity_number() == pb_logs::SEVERITY_NUMBER_INFO2);
  CHECK(rec.severity_text() == "notice");
  CHECK(str(rec.body()) == "An application event");
  const auto a = attrs(rec.attributes());
  CHECK(a.size() == 10);
  CHECK(str(a.at("cistern.input")) == "sys");
  CHECK(str(a.at("syslog.format")) == "rfc5424");
  CHECK(num(a.at("syslog.facility")) == 20);
  CHECK(num(a.at("syslog.severity")) == 5);
  CHECK(str(a.at("syslog.hostname")) == "mymachine.example.com");
  CHECK(str(a.at("syslog.appname")) == "evntslog");
  CHECK(str(a.at("syslog.procid")) == "1234");
  CHECK(str(a.at("syslog.msgid")) == "ID47");
  CHECK(str(a.at("syslog.structured_data")) ==
        "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"]");
  CHECK(str(a.at("client.address")) == "tcp://127.0.0.1:40000");
}

TEST_CASE("OTLP syslog record without timestamp, PRI or fields", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  SyslogMeta raw;  // kRaw, no severity, offset 0
  raw.peer = "udp://[::1]:5514";
  SyslogMeta bsd;
  bsd.format = SyslogFormat::kRfc3164;
  bsd.facility = 4;
  bsd.severity = 2;
  bsd.host = "host";
  bsd.app = "su";
  const std::string bsd_msg = "<34>Oct 11 22:14:15 host su: 'su root' failed";
  bsd.message_offset = static_cast<std::uint32_t>(bsd_msg.find('\''));
  const auto encoded = encoder.encode(BatchBuilder()
                                          .syslog("sys", 7'000, raw, "no pri at all")
                                          .syslog("sys", 8'000, bsd, bsd_msg)
                                          .build());
  const auto req = decode(encoded.body);
  const auto& scope = onlyScope(req);
  REQUIRE(scope.log_records_size() == 2);

  const auto& r0 = scope.log_records(0);
  CHECK(r0.time_unix_nano() == 7'000);
  CHECK(r0.severity_number() == pb_logs::SEVERITY_NUMBER_UNSPECIFIED);
  CHECK(r0.severity_text().empty());
  CHECK(str(r0.body()) == "no pri at all");
  auto a = attrs(r0.attributes());
  CHECK(a.size() == 3);
  CHECK(str(a.at("syslog.format")) == "raw");
  CHECK(str(a.at("client.address")) == "udp://[::1]:5514");

  const auto& r1 = scope.log_records(1);
  CHECK(r1.time_unix_nano() == 8'000);
  CHECK(r1.severity_number() == pb_logs::SEVERITY_NUMBER_ERROR2);
  CHECK(r1.severity_text() == "crit");
  CHECK(str(r1.body()) == "'su root' failed");
  a = attrs(r1.attributes());
  CHECK(a.size() == 6);
  CHECK(str(a.at("syslog.format")) == "rfc3164");
  CHECK(num(a.at("syslog.facility")) == 4);
  CHECK(num(a.at("syslog.severity")) == 2);
  CHECK(str(a.at("syslog.appname")) == "su");
  CHECK(a.count("syslog.structured_data") == 0);
}

TEST_CASE("Syslog severities map to OTLP severity numbers and keywords", "[unit]") {
  const std::vector<std::pair<int, std::string>> expected = {
      {21, "emerg"},   {19, "alert"},  {18, "crit"}, {17, "err"},
      {13, "warning"}, {10, "notice"}, {9, "info"},  {5, "debug"}};
  for (std::uint8_t s = 0; s < 8; ++s) {
    CHECK(syslogSeverityNumber(s) == expected[s].first);
    CHECK(syslogSeverityName(s) == expected[s].second);
  }
  CHECK(syslogSeverityNumber(8) == 0);
  CHECK(syslogSeverityNumber(kNoSeverity) == 0);
  CHECK(std::string(syslogSeverityName(kNoSeverity)).empty());
}

TEST_CASE("Bodies and attributes that are not UTF-8 go as bytes, unchanged", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const std::string bad_line("latin-1 caf\xe9 line", 17);
  const std::string bad_path("/var/log/\xff\xfe.log", 15);
  SyslogMeta meta;
  meta.format = SyslogFormat::kRfc3164;
  meta.severity = 6;
  meta.host = std::string_view("h\xc0\xaf", 3);  // overlong '/'
  const std::string bad_msg("<14>Oct 11 22:14:15 x: \xed\xa0\x80 surrogate", 35);
  meta.message_offset = 23;
  const auto encoded = encoder.encode(BatchBuilder()
                                          .logLine("app", 1, "/ok", 0, 0, bad_line)
                                          .logLine("app", 2, bad_path, 0, 0, "fine")
                                          .syslog("sys", 3, meta, bad_msg)
                                          .build());
  CHECK(encoded.stats.records == 3);
  CHECK(encoded.stats.bytes_bodies == 2);
  CHECK(encoded.stats.bytes_attributes == 2);
  CHECK(encoded.stats.malformed == 0);
  const auto req = decode(encoded.body);
  const auto& scope = onlyScope(req);
  REQUIRE(scope.log_records_size() == 3);
  REQUIRE(scope.log_records(0).body().value_case() == pb_common::AnyValue::kBytesValue);
  CHECK(scope.log_records(0).body().bytes_value() == bad_line);
  CHECK(str(scope.log_records(1).body()) == "fine");
  const auto path = attrs(scope.log_records(1).attributes()).at("log.file.path");
  REQUIRE(path.value_case() == pb_common::AnyValue::kBytesValue);
  CHECK(path.bytes_value() == bad_path);
  REQUIRE(scope.log_records(2).body().value_case() == pb_common::AnyValue::kBytesValue);
  CHECK(scope.log_records(2).body().bytes_value() == bad_msg.substr(23));
  CHECK(attrs(scope.log_records(2).attributes()).at("syslog.hostname").bytes_value() ==
        std::string("h\xc0\xaf", 3));
}

TEST_CASE("isValidUtf8 follows RFC 3629", "[unit]") {
  using namespace std::string_view_literals;
  CHECK(isValidUtf8(""));
  CHECK(isValidUtf8("plain ASCII text that is longer than eight bytes"));
  CHECK(
      isValidUtf8("\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xef\xbf\xbf \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf"));
  CHECK(isValidUtf8("\x00"sv));
  CHECK_FALSE(isValidUtf8("\x80"));              // lone continuation
  CHECK_FALSE(isValidUtf8("\xc0\x80"));          // overlong NUL
  CHECK_FALSE(isValidUtf8("\xc1\xbf"));          // overlong
  CHECK_FALSE(isValidUtf8("\xe0\x9f\xbf"));      // overlong 3-byte
  CHECK_FALSE(isValidUtf8("\xed\xa0\x80"));      // surrogate U+D800
  CHECK_FALSE(isValidUtf8("\xf0\x8f\xbf\xbf"));  // overlong 4-byte
  CHECK_FALSE(isValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(isValidUtf8("\xf5\x80\x80\x80"));
  CHECK_FALSE(isValidUtf8("abcdefgh\xe2\x82"));  // truncated at the end, after the fast path
  CHECK_FALSE(isValidUtf8("\xe2\x28\xa1"));      // bad continuation
  CHECK_FALSE(isValidUtf8("\xff"));
}

TEST_CASE("An empty batch encodes as the probe request: resource, no records", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const auto encoded = encoder.encode(ReadBatch{});
  CHECK(encoded.stats.records == 0);
  CHECK(encoded.body == encoder.encodeEmptyRequest());
  CHECK_FALSE(encoded.body.empty());
  const auto req = decode(encoded.body);
  REQUIRE(req.resource_logs_size() == 1);
  CHECK(req.resource_logs(0).scope_logs_size() == 0);
  const auto res = attrs(req.resource_logs(0).resource().attributes());
  CHECK(res.size() == 5);  // identity only: no frame range
  CHECK(res.count("cistern.frame.first") == 0);
  CHECK(str(res.at("cistern.agent.id")) == "agent-0001");
}

TEST_CASE("A large batch keeps every record, in order, with any body size", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  BatchBuilder builder;
  std::vector<std::string> lines;
  constexpr int kFrames = 8;
  constexpr int kPerFrame = 1500;
  constexpr int kTotal = kFrames * kPerFrame;
  for (int f = 0; f < kFrames; ++f) {
    builder.frame(FrameId{100} + static_cast<FrameId>(f));
    for (int i = 0; i < kPerFrame; ++i) {
      const int n = f * kPerFrame + i;
      // Sizes around the varint boundaries of the length prefixes (127/128, 16383/16384).
      const auto size = static_cast<std::size_t>(n % 97 == 0 ? 16'380 + n % 9 : 100 + n % 60);
      std::string line(size, static_cast<char>('a' + n % 26));
      line.replace(0, std::to_string(n).size(), std::to_string(n));
      lines.push_back(line);
      builder.logLine("bulk", static_cast<std::uint64_t>(n), "/bulk.log",
                      static_cast<std::uint64_t>(n) * 200, 0, line);
    }
  }
  const auto encoded = encoder.encode(builder.build());
  CHECK(encoded.stats.records == kTotal);
  const auto req = decode(encoded.body);
  const auto& scope = onlyScope(req);
  REQUIRE(scope.log_records_size() == kTotal);
  for (int n = 0; n < kTotal; ++n) {
    const auto& rec = scope.log_records(n);
    if (rec.body().string_value() != lines[static_cast<std::size_t>(n)] ||
        rec.observed_time_unix_nano() != static_cast<std::uint64_t>(n)) {
      FAIL("record " << n << " differs");
    }
  }
}

TEST_CASE("Requests are canonical whatever their records' share of the length prefixes", "[unit]") {
  // The records are written after room for the length prefixes of an expected total (twice the
  // records' stored bytes) and moved when the real total needs varints of another width: tiny
  // records encode to more than twice their size, one large record to little more than its size.
  // The sweeps cross the 128 and 16384 boundaries of both prefixes from either side.
  const OtlpLogsEncoder encoder(kIdentity);
  std::string reused(3U << 20U, '#');  // a body kept from a larger request
  const auto check = [&](const ReadBatch& batch, std::uint64_t records) {
    const auto encoded = encoder.encode(batch);
    const auto req = decode(encoded.body);
    REQUIRE(onlyScope(req).log_records_size() == static_cast<int>(records));
    CHECK(encoded.stats.records == records);
    // A body reused from any earlier request (larger or smaller) is overwritten to the same
    // bytes and the same figures.
    const auto stats = encoder.encodeInto(batch, reused);
    REQUIRE(reused == encoded.body);
    CHECK(stats.records == encoded.stats.records);
  };
  for (int n = 1; n <= 400; n += 3) {
    BatchBuilder builder;
    for (int i = 0; i < n; ++i) builder.logLine("i", 1, "/p", 0, 0, "x");
    check(builder.build(), static_cast<std::uint64_t>(n));
  }
  for (std::size_t size = 20; size <= 20'000; size += size < 200 ? 7 : 499) {
    check(
        BatchBuilder().logLine("app", 1, "/var/log/app.log", 0, 0, std::string(size, 'y')).build(),
        1);
  }
}

TEST_CASE("Records with malformed metadata are sent as bytes and counted", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const std::vector<std::byte> short_meta(3, std::byte{1});
  const std::vector<std::byte> bad_version{std::byte{99}, std::byte{0}};
  const auto encoded = encoder.encode(BatchBuilder()
                                          .raw(RecordKind::kPacket, "lan", 1, short_meta, "pkt")
                                          .raw(RecordKind::kSyslog, "sys", 2, bad_version, "msg")
                                          .raw(static_cast<RecordKind>(77), "odd", 3, {}, "?")
                                          .raw(RecordKind::kTest, "bench", 4, {}, "test")
                                          .logLine("app", 5, "/ok", 0, 0, "after")
                                          .build());
  CHECK(encoded.stats.records == 5);
  CHECK(encoded.stats.malformed == 3);
  const auto req = decode(encoded.body);
  const auto& scope = onlyScope(req);
  REQUIRE(scope.log_records_size() == 5);
  const std::vector<std::string> kinds = {"packet", "syslog", "unknown", "test"};
  const std::vector<std::string> bodies = {"pkt", "msg", "?", "test"};
  for (int i = 0; i < 4; ++i) {
    const auto& rec = scope.log_records(i);
    REQUIRE(rec.body().value_case() == pb_common::AnyValue::kBytesValue);
    CHECK(rec.body().bytes_value() == bodies[static_cast<std::size_t>(i)]);
    CHECK(rec.time_unix_nano() == static_cast<std::uint64_t>(i + 1));
    const auto a = attrs(rec.attributes());
    CHECK(str(a.at("cistern.kind")) == kinds[static_cast<std::size_t>(i)]);
    CHECK(a.count("cistern.meta_error") == (i < 3 ? 1U : 0U));
    if (i < 3) CHECK_FALSE(str(a.at("cistern.meta_error")).empty());
  }
  CHECK(str(scope.log_records(4).body()) == "after");
}

TEST_CASE("Records a malformed frame body does not yield are counted, not sent", "[unit]") {
  const OtlpLogsEncoder encoder(kIdentity);
  const auto encoded = encoder.encode(BatchBuilder()
                                          .frame(1)
                                          .logLine("app", 1, "/a", 0, 0, "one")
                                          .logLine("app", 2, "/a", 4, 0, "two")
                                          .logLine("app", 3, "/a", 8, 0, "three")
                                          .truncate(2)
                                          .frame(2)
                                          .logLine("app", 4, "/a", 14, 0, "four")
                                          .build());
  CHECK(encoded.stats.records == 3);
  CHECK(encoded.stats.unreadable == 1);
  const auto req = decode(encoded.body);
  const auto& scope = onlyScope(req);
  REQUIRE(scope.log_records_size() == 3);
  CHECK(str(scope.log_records(2).body()) == "four");
}

TEST_CASE("parseExportResponse reads partial success and tolerates empty bodies", "[unit]") {
  using namespace std::string_literals;
  SECTION("empty body is full success") {
    const auto r = parseExportResponse("");
    REQUIRE(r);
    CHECK(r->rejected_log_records == 0);
    CHECK(r->error_message.empty());
  }
  SECTION("partial success as libprotobuf writes it") {
    pb_collector::ExportLogsServiceResponse resp;
    resp.mutable_partial_success()->set_rejected_log_records(17);
    resp.mutable_partial_success()->set_error_message("17 records too old");
    const auto r = parseExportResponse(resp.SerializeAsString());
    REQUIRE(r);
    CHECK(r->rejected_log_records == 17);
    CHECK(r->error_message == "17 records too old");
  }
  SECTION("a warning without rejections") {
    pb_collector::ExportLogsServiceResponse resp;
    resp.mutable_partial_success()->set_error_message("slow down soon");
    const auto r = parseExportResponse(resp.SerializeAsString());
    REQUIRE(r);
    CHECK(r->rejected_log_records == 0);
    CHECK(r->error_message == "slow down soon");
  }
  SECTION("unknown fields of every wire type are skipped") {
    // field 2 varint, field 3 fixed64, field 4 bytes, field 5 fixed32, then partial_success
    // with an unknown field 9 before rejected_log_records = 3.
    const std::string body =
        "\x10\x05\x19\x01\x02\x03\x04\x05\x06\x07\x08\x22\x02hi\x2d\x01\x02\x03\x04"
        "\x0a\x04\x48\x01\x08\x03"s;
    const auto r = parseExportResponse(body);
    REQUIRE(r);
    CHECK(r->rejected_log_records == 3);
  }
  SECTION("garbage is an error") {
    CHECK_FALSE(parseExportResponse("{\"ok\":1}"));     // JSON: a group wire type
    CHECK_FALSE(parseExportResponse("\x0a\x05\x08"s));  // truncated
    CHECK_FALSE(parseExportResponse("\x08"s));          // key without value
    const auto err = parseExportResponse("\x0a\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s);
    REQUIRE_FALSE(err);  // rejected_log_records = -1
    CHECK(err.error().code == ErrorCode::kCorrupt);
  }
}

}  // namespace cistern::transport
