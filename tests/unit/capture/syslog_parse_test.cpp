// Syslog parsing (RFC 5424, RFC 3164) and stream framing (RFC 6587): pure functions, no I/O.
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "syslog_parse.h"

using cistern::SyslogFormat;
using cistern::capture::ParsedSyslog;
using cistern::capture::parseSyslog;
using cistern::capture::StreamFramer;
using cistern::capture::trimMessage;

namespace {

constexpr std::int64_t kSec = 1'000'000'000;

// 2003-12-01T00:00:00Z: the RFC examples' year, so RFC 3164 samples resolve to 2003.
constexpr std::int64_t kNow2003 = 1070236800 * kSec;
// 2024-06-15T00:00:00Z
constexpr std::int64_t kNow2024 = 1718409600 * kSec;

std::string_view msgOf(std::string_view m, const ParsedSyslog& p) {
  return m.substr(p.message_offset);
}

bool inside(std::string_view whole, std::string_view part) {
  if (part.empty()) return true;
  const std::less_equal<> le;
  return le(whole.data(), part.data()) &&
         le(part.data() + part.size(), whole.data() + whole.size());
}

// What must hold for any input: views inside the message, offsets and codes in range.
void checkInvariants(std::string_view m, const ParsedSyslog& p) {
  REQUIRE(p.message_offset <= m.size());
  REQUIRE(inside(m, p.host));
  REQUIRE(inside(m, p.app));
  REQUIRE(inside(m, p.procid));
  REQUIRE(inside(m, p.msgid));
  REQUIRE(inside(m, p.structured_data));
  REQUIRE(p.facility <= 23);
  REQUIRE((p.severity <= 7 || p.severity == cistern::kNoSeverity));
  if (p.format == SyslogFormat::kRaw) {
    REQUIRE(p.message_offset == 0);
    REQUIRE(p.host.empty());
    REQUIRE(p.app.empty());
    REQUIRE(p.timestamp_ns == 0);
  } else {
    REQUIRE(p.severity <= 7);
  }
}

// Parses a heap copy of exactly m.size() bytes, so that AddressSanitizer flags any read past it,
// and checks the invariants; returns the result for `m` itself, whose views outlive the copy.
ParsedSyslog parseExact(std::string_view m, std::int64_t now) {
  auto copy = std::make_unique<char[]>(m.size() + (m.empty() ? 1 : 0));
  if (!m.empty()) std::memcpy(copy.get(), m.data(), m.size());
  const std::string_view view(copy.get(), m.size());
  checkInvariants(view, parseSyslog(view, now));
  ParsedSyslog p = parseSyslog(m, now);
  checkInvariants(m, p);
  return p;
}

struct Framed {
  std::string message;
  bool truncated = false;
  bool operator==(const Framed&) const = default;
};

// Feeds `input` in chunks of `chunk` bytes; returns the frames and whether an error ended it.
std::vector<Framed> frameAll(std::string_view input, std::size_t max, std::size_t chunk,
                             bool* error = nullptr, bool* mid_frame = nullptr) {
  StreamFramer framer(max);
  std::vector<Framed> out;
  bool failed = false;
  for (std::size_t pos = 0; pos < input.size() && !failed; pos += chunk) {
    framer.compact();
    framer.append(input.substr(pos, chunk));
    StreamFramer::Frame f;
    for (;;) {
      const auto r = framer.next(f);
      if (r == StreamFramer::Next::kNeedMore) break;
      if (r == StreamFramer::Next::kError) {
        failed = true;
        break;
      }
      out.push_back({std::string(framer.message(f)), f.truncated});
    }
  }
  if (error != nullptr) *error = failed;
  if (mid_frame != nullptr) *mid_frame = framer.midFrame();
  return out;
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<Framed> {
  static std::string convert(const Framed& f) {
    return "{\"" + f.message + "\"" + (f.truncated ? ", truncated}" : "}");
  }
};
}  // namespace Catch

TEST_CASE("RFC 5424 examples from section 6.5 parse", "[unit]") {
  SECTION("example 1: no structured data, BOM before MSG") {
    const std::string m =
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "\xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.facility == 4);
    CHECK(p.severity == 2);
    CHECK(p.timestamp_ns == 1065910455 * kSec + 3'000'000);
    CHECK(p.host == "mymachine.example.com");
    CHECK(p.app == "su");
    CHECK(p.procid.empty());
    CHECK(p.msgid == "ID47");
    CHECK(p.structured_data.empty());
    CHECK(msgOf(m, p) == "'su root' failed for lonvick on /dev/pts/8");
  }
  SECTION("example 2: offset -07:00 and microseconds") {
    const std::string m =
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make "
        "the do-nuts.";
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.facility == 20);
    CHECK(p.severity == 5);
    CHECK(p.timestamp_ns == 1061727255 * kSec + 3'000);
    CHECK(p.host == "192.0.2.1");
    CHECK(p.app == "myproc");
    CHECK(p.procid == "8710");
    CHECK(p.msgid.empty());
    CHECK(msgOf(m, p) == "%% It's time to make the do-nuts.");
  }
  SECTION("example 3: structured data and a message") {
    const std::string sd =
        R"([exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"])";
    const std::string m = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " +
                          sd + " \xEF\xBB\xBF" + "An application event log entry...";
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.app == "evntslog");
    CHECK(p.structured_data == sd);
    CHECK(msgOf(m, p) == "An application event log entry...");
  }
  SECTION("example 4: two SD elements and no MSG") {
    const std::string sd = R"([exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"])"
                           R"([examplePriority@32473 class="high"])";
    const std::string m =
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " + sd;
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.structured_data == sd);
    CHECK(p.message_offset == m.size());
  }
}

TEST_CASE("RFC 5424 edge cases", "[unit]") {
  SECTION("every field NILVALUE") {
    const std::string m = "<13>1 - - - - - - hello";
    const auto p = parseExact(m, kNow2024);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.timestamp_ns == 0);
    CHECK(p.host.empty());
    CHECK(p.app.empty());
    CHECK(msgOf(m, p) == "hello");
  }
  SECTION("escaped quote, backslash and bracket inside a PARAM-VALUE") {
    const std::string sd = R"([a@1 x="q\"]z" y="b\\" z="c\]"])";
    const std::string m = "<13>1 - h a p m " + sd + " msg [not sd]";
    const auto p = parseExact(m, kNow2024);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.structured_data == sd);
    CHECK(msgOf(m, p) == "msg [not sd]");
  }
  SECTION("nanosecond fraction, lower-case t and z, positive offset, leap second") {
    auto p = parseExact("<13>1 2003-10-11t22:14:15.123456789z h a p m -", kNow2024);
    CHECK(p.timestamp_ns == 1065910455 * kSec + 123'456'789);
    p = parseExact("<13>1 2003-10-12T00:14:15+02:00 h a p m -", kNow2024);
    CHECK(p.timestamp_ns == 1065910455 * kSec);
    p = parseExact("<13>1 2016-12-31T23:59:60Z h a p m -", kNow2024);
    CHECK(p.timestamp_ns == 1483228800 * kSec);
    p = parseExact("<13>1 1969-12-31T23:59:59Z h a p m -", kNow2024);
    CHECK(p.timestamp_ns == -1 * kSec);
  }
  SECTION("PRI bounds") {
    auto p = parseExact("<0>1 - - - - - -", kNow2024);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.facility == 0);
    CHECK(p.severity == 0);
    p = parseExact("<191>1 - - - - - -", kNow2024);
    CHECK(p.facility == 23);
    CHECK(p.severity == 7);
    for (const char* bad : {"<192>1 - - - - - -", "<>1 - - - - - -", "<1000>1 - - - - - -",
                            "<-1>1 - - - - - -", "13>1 - - - - - -", "<13"}) {
      INFO(bad);
      p = parseExact(bad, kNow2024);
      CHECK(p.format == SyslogFormat::kRaw);
      CHECK(p.severity == cistern::kNoSeverity);
    }
  }
  SECTION("malformed headers are raw but keep a valid PRI") {
    for (const char* bad :
         {"<13>2 - - - - - - unknown version", "<13>1 2003-02-30T00:00:00Z h a p m - no such day",
          "<13>1 2003-10-11T22:14:15.1234567890Z h a p m - ten fraction digits",
          "<13>1 2003-10-11T22:14:15.Z h a p m - empty fraction",
          "<13>1 2003-10-11T22:14:15 h a p m - no offset",
          "<13>1 2003-10-11T24:00:00Z h a p m - hour 24",
          "<13>1 2003-10-11T22:14:15+24:00 h a p m - offset hour 24", "<13>1 - h a p m",
          "<13>1 - h a p m x not sd", "<13>1 - h a p m [unterminated",
          "<13>1 - h a p m [id x=\"v] msg", "<13>1 - h a p m [id x=v] msg",
          "<13>1 - h a p m [id]msg without space", "<13>1  - h a p m - double space",
          "<13>1 - h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa p m - app of 49",
          "<13>1 9999-12-31T23:59:59Z h a p m - beyond int64 nanoseconds"}) {
      INFO(bad);
      const auto p = parseExact(bad, kNow2024);
      CHECK(p.format == SyslogFormat::kRaw);
      CHECK(p.facility == 1);
      CHECK(p.severity == 5);
    }
  }
  SECTION("RFC length limits are accepted at the limit") {
    const std::string m = "<13>1 - " + std::string(255, 'h') + " " + std::string(48, 'a') + " " +
                          std::string(128, 'p') + " " + std::string(32, 'm') + " - x";
    const auto p = parseExact(m, kNow2024);
    CHECK(p.format == SyslogFormat::kRfc5424);
    CHECK(p.host.size() == 255);
    CHECK(p.msgid.size() == 32);
  }
}

TEST_CASE("RFC 3164 samples parse", "[unit]") {
  SECTION("RFC 3164 5.4 example 1") {
    const std::string m = "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick";
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc3164);
    CHECK(p.facility == 4);
    CHECK(p.severity == 2);
    CHECK(p.timestamp_ns == 1065910455 * kSec);
    CHECK(p.host == "mymachine");
    CHECK(p.app == "su");
    CHECK(p.procid.empty());
    CHECK(msgOf(m, p) == "'su root' failed for lonvick");
  }
  SECTION("RFC 3164 5.4 example 2: space-padded day, no tag") {
    const std::string m = "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!";
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc3164);
    CHECK(p.timestamp_ns == 1044466338 * kSec);
    CHECK(p.host == "10.0.0.99");
    CHECK(p.app.empty());
    CHECK(msgOf(m, p) == "Use the BFG!");
  }
  SECTION("tag with pid") {
    const std::string m = "<30>Feb 5 17:32:18 host cron[123]: job done";
    const auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc3164);
    CHECK(p.timestamp_ns == 1044466338 * kSec);
    CHECK(p.host == "host");
    CHECK(p.app == "cron");
    CHECK(p.procid == "123");
    CHECK(msgOf(m, p) == "job done");
  }
  SECTION("no host: the first word is a tag") {
    std::string m = "<38>Feb  5 17:32:18 sshd[99]: Accepted publickey";
    auto p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc3164);
    CHECK(p.host.empty());
    CHECK(p.app == "sshd");
    CHECK(p.procid == "99");
    CHECK(msgOf(m, p) == "Accepted publickey");
    m = "<6>Feb  5 17:32:18 kernel: oops";
    p = parseExact(m, kNow2003);
    CHECK(p.host.empty());
    CHECK(p.app == "kernel");
    CHECK(msgOf(m, p) == "oops");
  }
  SECTION("rsyslog's RFC 3339 timestamp in place of the BSD one") {
    const std::string m = "<30>2024-03-01T10:20:30.123456+01:00 web01 nginx[7]: GET /";
    const auto p = parseExact(m, kNow2024);
    CHECK(p.format == SyslogFormat::kRfc3164);
    CHECK(p.timestamp_ns == 1709284830 * kSec + 123'456'000);
    CHECK(p.host == "web01");
    CHECK(p.app == "nginx");
    CHECK(p.procid == "7");
    CHECK(msgOf(m, p) == "GET /");
  }
  SECTION("IPv6 host, timestamp only, host only") {
    auto p = parseExact("<13>Feb  5 17:32:18 fe80::1 app: x", kNow2003);
    CHECK(p.host == "fe80::1");
    CHECK(p.app == "app");
    std::string m = "<13>Feb  5 17:32:18";
    p = parseExact(m, kNow2003);
    CHECK(p.format == SyslogFormat::kRfc3164);
    CHECK(p.message_offset == m.size());
    m = "<13>Feb  5 17:32:18 host";
    p = parseExact(m, kNow2003);
    CHECK(p.host == "host");
    CHECK(p.message_offset == m.size());
  }
  SECTION("the RFC's non-conforming example stays raw") {
    const auto p = parseExact(
        "<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All "
        "Folks!",
        kNow2003);
    CHECK(p.format == SyslogFormat::kRaw);
    CHECK(p.severity == 0);
  }
  SECTION("malformed BSD timestamps are raw") {
    for (const char* bad :
         {"<13>Foo  5 17:32:18 h x", "<13>Feb 5 17:32 h x", "<13>Feb 30 17:32:18 h x",
          "<13>Feb  5 25:00:00 h x", "<13>Feb  5 17:32:18x h", "<13>feb  5 17:32:18 h x",
          "<13>Feb 123 17:32:18 h x", "<13>hello world", "<13>"}) {
      INFO(bad);
      const auto p = parseExact(bad, kNow2003);
      CHECK(p.format == SyslogFormat::kRaw);
      CHECK(p.severity == 5);
    }
  }
}

TEST_CASE("RFC 3164 timestamps get the year that is not in the future", "[unit]") {
  constexpr std::int64_t new_year = 1704069000 * kSec;  // 2024-01-01T00:30:00Z
  CHECK(parseExact("<13>Dec 31 23:59:00 h x", new_year).timestamp_ns == 1704067140 * kSec);
  // Within a day ahead (a sender's clock a little fast) stays in this year.
  CHECK(parseExact("<13>Jan  1 20:00:00 h x", new_year).timestamp_ns == 1704139200 * kSec);
  // More than a day ahead is last year's.
  CHECK(parseExact("<13>Jun 17 00:00:01 h x", kNow2024).timestamp_ns == 1686960001 * kSec);
  // Feb 29 in a common year: the leap year before.
  constexpr std::int64_t march_2025 = 1740787200 * kSec;
  CHECK(parseExact("<13>Feb 29 12:00:00 h x", march_2025).timestamp_ns == 1709208000 * kSec);
  CHECK(parseExact("<13>Feb 29 12:00:00 h x", 1709208000 * kSec + kSec).timestamp_ns ==
        1709208000 * kSec);
}

TEST_CASE("messages without PRI are raw with no severity", "[unit]") {
  for (const char* m : {"", "hello", "Oct 11 22:14:15 host su: no pri", "1 - - - - - -"}) {
    const auto p = parseExact(m, kNow2024);
    CHECK(p.format == SyslogFormat::kRaw);
    CHECK(p.severity == cistern::kNoSeverity);
    CHECK(p.facility == 0);
  }
}

TEST_CASE("trimMessage removes trailing LF, CR and NUL only", "[unit]") {
  CHECK(trimMessage("a\n") == "a");
  CHECK(trimMessage("a\r\n") == "a");
  CHECK(trimMessage(std::string_view("a\0\0", 3)) == "a");
  CHECK(trimMessage(" a \t") == " a \t");
  CHECK(trimMessage("\n\r").empty());
  CHECK(trimMessage("").empty());
}

TEST_CASE("parseSyslog never reads outside the message", "[unit]") {
  const std::vector<std::string> samples = {
      "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root'",
      "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% do-nuts.",
      R"(<165>1 2003-10-11T22:14:15.003Z h evntslog - ID47 [ex@1 a="3" b="x\"]\\"][p@1 c="h"] m)",
      "<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
      "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
      "<30>2024-03-01T10:20:30.123456+01:00 web01 nginx[7]: GET /",
      "<38>Feb  5 17:32:18 sshd[99]: Accepted",
  };
  std::mt19937 rng(20240615);
  SECTION("every truncation and single-byte change of valid messages") {
    for (const auto& s : samples) {
      for (std::size_t n = 0; n <= s.size(); ++n) parseExact(std::string_view(s).substr(0, n), 0);
      for (std::size_t i = 0; i < s.size(); ++i) {
        for (const char c : {'\0', ' ', '-', '[', ']', '"', '\\', '<', '>', '9', ':', '\xff'}) {
          std::string m = s;
          m[i] = c;
          parseExact(m, kNow2024);
          parseExact(std::string_view(m).substr(0, i + 1), kNow2024);
        }
      }
    }
  }
  SECTION("random bytes, biased towards syslog syntax") {
    const std::string alphabet = "<>0123456789 -:.[]\"\\=TZ+@JanFebOct\xEF\xBB\xBF\n";
    for (int iter = 0; iter < 20000; ++iter) {
      const std::size_t len = rng() % 120;
      std::string m;
      if (rng() % 2 == 0) m = samples[rng() % samples.size()].substr(0, rng() % 40);
      while (m.size() < len) {
        m.push_back(rng() % 4 == 0 ? static_cast<char>(rng() % 256)
                                   : alphabet[rng() % alphabet.size()]);
      }
      // Extreme clocks must not overflow the year arithmetic either.
      const std::int64_t now = iter % 3 == 0   ? INT64_MAX
                               : iter % 3 == 1 ? INT64_MIN
                                               : static_cast<std::int64_t>(rng()) * kSec;
      parseExact(m, now);
    }
  }
}

TEST_CASE("StreamFramer splits octet-counted, LF and mixed streams in any chunking", "[unit]") {
  const std::string stream = "5 hello<13>line one\n11 <13>with\nLF\n\n3 abc<14>last\r\n";
  const std::vector<Framed> want = {
      {"hello", false}, {"<13>line one", false}, {"<13>with\nLF", false}, {"", false},
      {"", false},      {"abc", false},          {"<14>last\r", false}};
  for (std::size_t chunk : {1U, 2U, 3U, 7U, 64U}) {
    INFO("chunk " << chunk);
    bool error = true;
    bool mid = true;
    CHECK(frameAll(stream, 1000, chunk, &error, &mid) == want);
    CHECK_FALSE(error);
    CHECK_FALSE(mid);
  }
}

TEST_CASE("StreamFramer cuts messages longer than the maximum and resynchronises", "[unit]") {
  for (std::size_t chunk : {1U, 4U, 100U}) {
    INFO("chunk " << chunk);
    CHECK(frameAll("20 0123456789abcdefghij3 abc", 4, chunk) ==
          std::vector<Framed>{{"0123", true}, {"abc", false}});
    CHECK(frameAll("abcdefghij\nxy\nwxyz\n", 4, chunk) ==
          std::vector<Framed>{{"abcd", true}, {"xy", false}, {"wxyz", false}});
    CHECK(frameAll("4 wxyz5 vwxyz", 4, chunk) ==
          std::vector<Framed>{{"wxyz", false}, {"vwxy", true}});
  }
  // A cut message's unfinished tail is not a partial frame: the message was already returned.
  bool mid = true;
  CHECK(frameAll("20 0123456789", 4, 100, nullptr, &mid).size() == 1);
  CHECK_FALSE(mid);
  CHECK(frameAll("abcdefgh", 4, 100, nullptr, &mid).size() == 1);
  CHECK_FALSE(mid);
}

TEST_CASE("StreamFramer reports partial frames and framing errors", "[unit]") {
  bool error = false;
  bool mid = false;
  CHECK(frameAll("5 hel", 100, 100, &error, &mid).empty());
  CHECK_FALSE(error);
  CHECK(mid);
  CHECK(frameAll("12", 100, 100, &error, &mid).empty());
  CHECK(mid);
  CHECK(frameAll("<13>no newline", 100, 100, &error, &mid).empty());
  CHECK(mid);

  for (const char* bad : {"12x abc", "0 abc", "05 abcde", "12345678901 x", "3\nabc"}) {
    INFO(bad);
    CHECK(frameAll(bad, 100, 1, &error).empty());
    CHECK(error);
  }
  // Frames before the error are returned; 10 digits are still a valid count.
  CHECK(frameAll("3 abc12x", 100, 100, &error) == std::vector<Framed>{{"abc", false}});
  CHECK(error);
  CHECK(frameAll("9999999999 abc", 3, 100, &error) == std::vector<Framed>{{"abc", true}});
  CHECK_FALSE(error);
}
