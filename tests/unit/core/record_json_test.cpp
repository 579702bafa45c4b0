#include <cstddef>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cistern/core/bytes.h"
#include "cistern/core/pcapng.h"
#include "cistern/core/record_json.h"
#include "cistern/core/record_meta.h"

using namespace cistern;

namespace {

std::span<const std::byte> bytesOf(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("timestamps are RFC 3339 UTC with nanoseconds", "[unit]") {
  CHECK(formatTimestamp(0) == "-");
  CHECK(formatTimestamp(1'700'000'000'123'456'789LL) == "2023-11-14T22:13:20.123456789Z");
  CHECK(formatTimestamp(-1) == "1969-12-31T23:59:59.999999999Z");
}

TEST_CASE("a syslog record becomes one JSON object with its parsed fields", "[unit]") {
  const std::string raw =
      "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - BOM'su root' failed";
  SyslogMeta meta;
  meta.format = SyslogFormat::kRfc5424;
  meta.facility = 4;
  meta.severity = 2;
  meta.timestamp_ns = 1'065'910'455'003'000'000LL;
  meta.host = "mymachine";
  meta.app = "su";
  meta.msgid = "ID47";
  meta.peer = "udp://127.0.0.1:5514";
  meta.message_offset = static_cast<std::uint32_t>(raw.find("BOM"));
  std::vector<std::byte> m;
  encodeSyslogMeta(meta, m);
  RecordView r{RecordKind::kSyslog, 5, "sys", m, bytesOf(raw)};
  const auto j = nlohmann::json::parse(recordToJson(r));
  CHECK(j["kind"] == "syslog");
  CHECK(j["input"] == "sys");
  CHECK(j["format"] == "rfc5424");
  CHECK(j["severity"] == 2);
  CHECK(j["facility"] == 4);
  CHECK(j["timestamp"] == "2003-10-11T22:14:15.003000000Z");
  CHECK(j["host"] == "mymachine");
  CHECK(j["message"] == "BOM'su root' failed");
  CHECK(j["raw"] == raw);
}

TEST_CASE("log lines with invalid UTF-8 and bad metadata still give valid JSON", "[unit]") {
  const std::string line = "bad \xff\xfe bytes";
  std::vector<std::byte> m;
  encodeLogLineMeta({.flags = kLogLineSplit, .offset = 10, .path = "/x.log"}, m);
  RecordView r{RecordKind::kLogLine, 1, "app", m, bytesOf(line)};
  const auto j = nlohmann::json::parse(recordToJson(r));
  CHECK(j["path"] == "/x.log");
  CHECK(j["split"] == true);
  CHECK(j["message"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos);
  const std::vector<std::byte> broken{std::byte{1}, std::byte{2}};
  RecordView b{RecordKind::kLogLine, 1, "app", broken, bytesOf("x")};
  const auto jb = nlohmann::json::parse(recordToJson(b));
  CHECK(jb.contains("meta_error"));
  CHECK(jb["raw"] == "x");
}

TEST_CASE("packets are base64 in JSON", "[unit]") {
  std::vector<std::byte> m;
  encodePacketMeta({.link_type = 1, .original_length = 9}, m);
  RecordView r{RecordKind::kPacket, 1, "tap", m, bytesOf("abcd")};
  const auto j = nlohmann::json::parse(recordToJson(r));
  CHECK(j["data_base64"] == "YWJjZA==");
  CHECK(j["captured_length"] == 4);
  CHECK(j["original_length"] == 9);
}

TEST_CASE("pcapng blocks are well formed and interfaces are described once", "[unit]") {
  PcapngEncoder enc;
  std::vector<std::byte> out;
  enc.begin(out, "cistern test");
  const std::size_t shb = out.size();
  CHECK(shb % 4 == 0);
  CHECK(bytes::loadLe<std::uint32_t>(out.data()) == 0x0A0D0D0A);
  CHECK(bytes::loadLe<std::uint32_t>(out.data() + 4) == shb);
  CHECK(bytes::loadLe<std::uint32_t>(out.data() + shb - 4) == shb);
  enc.packet(out, "a", 1, 5'000'000'001ULL, bytesOf("12345"), 60);
  enc.packet(out, "a", 1, 6, bytesOf("1"), 1);
  enc.packet(out, "b", 1, 7, bytesOf("1"), 1);
  CHECK(enc.interfaces() == 2);
  // Walk the blocks: every length is a multiple of 4 and repeated at the block's end.
  std::size_t at = 0;
  std::vector<std::uint32_t> types;
  while (at < out.size()) {
    const auto type = bytes::loadLe<std::uint32_t>(out.data() + at);
    const auto len = bytes::loadLe<std::uint32_t>(out.data() + at + 4);
    REQUIRE(len % 4 == 0);
    REQUIRE(at + len <= out.size());
    CHECK(bytes::loadLe<std::uint32_t>(out.data() + at + len - 4) == len);
    types.push_back(type);
    if (type == 6 && types.size() == 3) {
      CHECK(bytes::loadLe<std::uint32_t>(out.data() + at + 12) == 1);            // ts high
      CHECK(bytes::loadLe<std::uint32_t>(out.data() + at + 16) == 705'032'705);  // ts low
      CHECK(bytes::loadLe<std::uint32_t>(out.data() + at + 20) == 5);            // captured
      CHECK(bytes::loadLe<std::uint32_t>(out.data() + at + 24) == 60);           // original
    }
    at += len;
  }
  CHECK(types == std::vector<std::uint32_t>{0x0A0D0D0A, 1, 6, 6, 1, 6});
}
