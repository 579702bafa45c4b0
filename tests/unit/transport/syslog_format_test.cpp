// RFC 5424 formatting of each record kind, SD-PARAM escaping, header sanitizing, truncation and
// octet-counted framing.
#include <cstdint>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include "otlp_records.h"
#include "syslog_format.h"

namespace cistern::transport {
namespace {

using testing::BatchBuilder;

// 2024-05-01T12:00:00.123456789Z
constexpr std::uint64_t kTs = 1714564800123456789ULL;

struct Formatted {
  FormatResult result;
  std::string text;
};

Formatted formatOnly(const BatchBuilder& builder, const SyslogFormatOptions& options = {}) {
  const ReadBatch batch = builder.build();
  REQUIRE(batch.size() == 1);
  RecordReader reader(batch.frames().front().body);
  const RecordView* record = reader.next();
  REQUIRE(record != nullptr);
  Formatted f;
  f.result = formatRfc5424(*record, options, f.text);
  return f;
}

SyslogMeta rfc3164Meta() {
  SyslogMeta m;
  m.format = SyslogFormat::kRfc3164;
  m.facility = 4;
  m.severity = 2;
  m.timestamp_ns = 1714564800000000000LL;
  m.host = "web1";
  m.app = "su";
  m.procid = "77";
  m.peer = "udp://192.0.2.7:5514";
  return m;
}

TEST_CASE("RFC 3339 timestamps with microseconds in UTC", "[unit]") {
  CHECK(rfc3339Micros(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(rfc3339Micros(static_cast<std::int64_t>(kTs)) == "2024-05-01T12:00:00.123456Z");
  CHECK(rfc3339Micros(1709208000000001000LL) == "2024-02-29T12:00:00.000001Z");  // leap day
  CHECK(rfc3339Micros(-1000) == "1969-12-31T23:59:59.999999Z");
  CHECK(rfc3339Micros(INT64_MAX) == "2262-04-11T23:47:16.854775Z");
  CHECK(rfc3339Micros(INT64_MIN) == "1677-09-21T00:12:43.145224Z");
}

TEST_CASE("an RFC 5424 syslog record is forwarded as received", "[unit]") {
  SyslogMeta m;
  m.format = SyslogFormat::kRfc5424;
  m.facility = 20;
  m.severity = 5;
  m.host = "ignored-when-forwarding";
  const std::string msg =
      R"(<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 )"
      R"([exampleSDID@32473 iut="3"] An application event)";
  m.message_offset = static_cast<std::uint32_t>(msg.find("An application"));
  const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, msg));
  CHECK(f.result.outcome == FormatOutcome::kFormatted);
  CHECK_FALSE(f.result.truncated);
  CHECK(f.text == msg);
}

TEST_CASE("an RFC 3164 syslog record is rewritten as RFC 5424 from its fields", "[unit]") {
  const std::string msg = "<34>May  1 12:00:00 web1 su[77]: 'su root' failed for lonvick";
  SyslogMeta m = rfc3164Meta();
  m.message_offset = static_cast<std::uint32_t>(msg.find("'su root'"));
  const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, msg));
  CHECK(f.result.outcome == FormatOutcome::kFormatted);
  CHECK(f.text == "<34>1 2024-05-01T12:00:00.000000Z web1 su 77 - - 'su root' failed for lonvick");
}

TEST_CASE("a syslog record without its own timestamp gets the receive time", "[unit]") {
  SyslogMeta m = rfc3164Meta();
  m.timestamp_ns = 0;
  m.message_offset = 0;
  const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, "text"));
  CHECK(f.text == "<34>1 2024-05-01T12:00:00.123456Z web1 su 77 - - text");
}

TEST_CASE("a raw syslog record: default PRI, peer as host, PRI not repeated in MSG", "[unit]") {
  SyslogMeta m;
  m.format = SyslogFormat::kRaw;
  m.peer = "tcp://[2001:db8::1]:601";
  SECTION("without a PRI: user.notice (13)") {
    const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, "just some text"));
    CHECK(f.text == "<13>1 2024-05-01T12:00:00.123456Z 2001:db8::1 - - - - just some text");
  }
  SECTION("with a valid PRI") {
    m.facility = 3;
    m.severity = 4;
    const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, "<28>garbled header"));
    CHECK(f.text == "<28>1 2024-05-01T12:00:00.123456Z 2001:db8::1 - - - - garbled header");
  }
  SECTION("an empty message has no MSG part") {
    const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, ""));
    CHECK(f.text == "<13>1 2024-05-01T12:00:00.123456Z 2001:db8::1 - - - -");
  }
  SECTION("an out-of-range facility becomes user") {
    m.facility = 99;
    m.severity = 3;
    const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, "x"));
    CHECK(f.text.substr(0, 7) == "<11>1 2");
  }
}

TEST_CASE("a log line carries its path and offset as structured data", "[unit]") {
  SyslogFormatOptions o;
  o.host_name = "sensor-1.example";
  const auto f = formatOnly(
      BatchBuilder().logLine("app-logs", kTs, "/var/log/app.log", 1234, 0, "GET /index.html 200"),
      o);
  CHECK(f.result.outcome == FormatOutcome::kFormatted);
  CHECK(f.text ==
        "<14>1 2024-05-01T12:00:00.123456Z sensor-1.example app-logs - - "
        "[cistern@32473 path=\"/var/log/app.log\" offset=\"1234\"] GET /index.html 200");
}

TEST_CASE("SD-PARAM values escape quote, backslash and bracket; bad UTF-8 is replaced", "[unit]") {
  SyslogFormatOptions o;
  o.host_name = "h";
  const auto f = formatOnly(
      BatchBuilder().logLine("in", kTs, "/logs/a\"b]c\\d/\xC3\xA9\xFF.log", 0, 0, "line"), o);
  CHECK(f.text ==
        "<14>1 2024-05-01T12:00:00.123456Z h in - - "
        "[cistern@32473 path=\"/logs/a\\\"b\\]c\\\\d/\xC3\xA9\xEF\xBF\xBD.log\" offset=\"0\"] "
        "line");
}

TEST_CASE("hostile header fields cannot break the header", "[unit]") {
  SECTION("spaces, control bytes and non-ASCII become '_', lengths are capped") {
    SyslogMeta m = rfc3164Meta();
    const std::string long_app(60, 'a');
    m.host = "evil host\n<13>1 injected";
    m.app = long_app;
    m.procid = "1 2";
    m.msgid = "\x01\x7f\xC3\xA9";
    const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, "body"));
    CHECK(f.text == "<34>1 2024-05-01T12:00:00.000000Z evil_host_<13>1_injected " +
                        std::string(48, 'a') + " 1_2 ____ - body");
  }
  SECTION("the agent's host name and the input name are sanitized too") {
    SyslogFormatOptions o;
    o.host_name = "my host";
    const auto f = formatOnly(BatchBuilder().logLine("tail of\tfiles", kTs, "/p", 5, 0, "x"), o);
    CHECK(f.text.find(" my_host tail_of_files - - [cistern@32473 ") != std::string::npos);
  }
  SECTION("empty fields are NILVALUE") {
    SyslogFormatOptions o;
    const auto f = formatOnly(BatchBuilder().logLine("in", kTs, "", 0, 0, ""), o);
    CHECK(f.text ==
          "<14>1 2024-05-01T12:00:00.123456Z - in - - [cistern@32473 path=\"\" offset=\"0\"]");
  }
}

TEST_CASE("messages longer than max_message_bytes are cut", "[unit]") {
  SyslogFormatOptions o;
  o.host_name = "h";
  o.max_message_bytes = 600;
  SECTION("at exactly the limit") {
    const auto f =
        formatOnly(BatchBuilder().logLine("in", kTs, "/p", 0, 0, std::string(1000, 'x')), o);
    CHECK(f.result.truncated);
    CHECK(f.text.size() == 600);
    CHECK(f.text.find("offset=\"0\"] xxx") != std::string::npos);
  }
  SECTION("never inside a UTF-8 character") {
    std::string line;
    for (int i = 0; i < 400; ++i) line += "\xC3\xA9";  // é, two bytes
    const auto f = formatOnly(BatchBuilder().logLine("in", kTs, "/p", 0, 0, line), o);
    CHECK(f.result.truncated);
    CHECK(f.text.size() >= 599);
    CHECK(f.text.size() <= 600);
    const auto last = static_cast<unsigned char>(f.text.back());
    CHECK(last == 0xA9);  // ends after a whole character
  }
  SECTION("a forwarded RFC 5424 message too") {
    SyslogMeta m;
    m.format = SyslogFormat::kRfc5424;
    const std::string msg = "<14>1 - h a - - - " + std::string(700, 'm');
    m.message_offset = 18;
    const auto f = formatOnly(BatchBuilder().syslog("in", kTs, m, msg), o);
    CHECK(f.result.truncated);
    CHECK(f.text == msg.substr(0, 600));
  }
  SECTION("a long path is shortened so the structured data stays closed") {
    o.max_message_bytes = 10;  // raised to kMinMessageBytes
    const auto f =
        formatOnly(BatchBuilder().logLine("in", kTs, std::string(2000, '"'), 7, 0, "line"), o);
    CHECK(f.text.size() <= kMinMessageBytes);
    const auto sd_end = f.text.find(R"(" offset="7"])");
    REQUIRE(sd_end != std::string::npos);
    // Only whole escapes: an even number of characters, each an escaped quote.
    const auto value_start = f.text.find("path=\"") + 6;
    CHECK((sd_end - value_start) % 2 == 0);
  }
  SECTION("not at the limit: nothing is cut") {
    const auto f = formatOnly(BatchBuilder().logLine("in", kTs, "/p", 0, 0, "short"), o);
    CHECK_FALSE(f.result.truncated);
  }
}

TEST_CASE("packets are skipped; corrupt metadata is reported", "[unit]") {
  SECTION("packet") {
    const auto f = formatOnly(BatchBuilder().packet("lan", kTs, 1, 60, std::string(60, '\0')));
    CHECK(f.result.outcome == FormatOutcome::kSkipped);
    CHECK(f.text.empty());
  }
  SECTION("test records") {
    const auto f = formatOnly(BatchBuilder().raw(RecordKind::kTest, "t", kTs, {}, "x"));
    CHECK(f.result.outcome == FormatOutcome::kSkipped);
  }
  SECTION("syslog metadata of an unknown version") {
    const std::byte meta[] = {std::byte{9}, std::byte{0}};
    const auto f = formatOnly(BatchBuilder().raw(RecordKind::kSyslog, "in", kTs, meta, "x"));
    CHECK(f.result.outcome == FormatOutcome::kCorrupt);
    CHECK(f.result.error.find("version") != std::string::npos);
    CHECK(f.text.empty());
  }
  SECTION("log line metadata cut short") {
    const std::byte meta[] = {std::byte{1}, std::byte{0}, std::byte{1}};
    const auto f = formatOnly(BatchBuilder().raw(RecordKind::kLogLine, "in", kTs, meta, "x"));
    CHECK(f.result.outcome == FormatOutcome::kCorrupt);
    CHECK_FALSE(f.result.error.empty());
  }
}

TEST_CASE("octet counting frames a message as LEN SP MSG", "[unit]") {
  std::string out;
  appendOctetCounted(out, "<14>1 - - - - - - hi");
  CHECK(out == "20 <14>1 - - - - - - hi");
  appendOctetCounted(out, "");
  CHECK(out == "20 <14>1 - - - - - - hi0 ");
  std::string big(100000, 'z');
  std::string framed;
  appendOctetCounted(framed, big);
  CHECK(framed.substr(0, 7) == "100000 ");
  CHECK(framed.size() == 100007);
}

}  // namespace
}  // namespace cistern::transport
