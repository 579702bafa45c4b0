#include <cstddef>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/core/record_batch.h"
#include "cistern/core/record_meta.h"

using namespace cistern;

TEST_CASE("packet metadata round-trips", "[unit]") {
  std::vector<std::byte> buf;
  encodePacketMeta({.link_type = 1, .original_length = 1514}, buf);
  CHECK(buf.size() == 9);
  auto m = decodePacketMeta(buf);
  REQUIRE(m);
  CHECK(m->link_type == 1);
  CHECK(m->original_length == 1514);
}

TEST_CASE("log line metadata round-trips", "[unit]") {
  std::vector<std::byte> buf;
  encodeLogLineMeta({.flags = kLogLineTruncated, .offset = 1ULL << 40U, .path = "/var/log/x.log"},
                    buf);
  auto m = decodeLogLineMeta(buf);
  REQUIRE(m);
  CHECK(m->flags == kLogLineTruncated);
  CHECK(m->offset == 1ULL << 40U);
  CHECK(m->path == "/var/log/x.log");
}

TEST_CASE("syslog metadata round-trips", "[unit]") {
  std::vector<std::byte> buf;
  SyslogMeta in;
  in.format = SyslogFormat::kRfc5424;
  in.facility = 23;
  in.severity = 7;
  in.timestamp_ns = -5;
  in.message_offset = 42;
  in.host = "h";
  in.app = "app";
  in.procid = "";
  in.msgid = "ID47";
  in.peer = "tcp://127.0.0.1:5";
  encodeSyslogMeta(in, buf);
  auto m = decodeSyslogMeta(buf);
  REQUIRE(m);
  CHECK(m->format == SyslogFormat::kRfc5424);
  CHECK(m->facility == 23);
  CHECK(m->severity == 7);
  CHECK(m->timestamp_ns == -5);
  CHECK(m->message_offset == 42);
  CHECK(m->host == "h");
  CHECK(m->app == "app");
  CHECK(m->procid.empty());
  CHECK(m->msgid == "ID47");
  CHECK(m->peer == "tcp://127.0.0.1:5");
}

TEST_CASE("damaged metadata is an error, never a crash", "[unit]") {
  std::vector<std::byte> buf;
  SyslogMeta in;
  in.host = "host";
  encodeSyslogMeta(in, buf);
  // Every truncation fails cleanly.
  for (std::size_t n = 0; n < buf.size(); ++n) {
    CHECK_FALSE(decodeSyslogMeta(std::span<const std::byte>(buf.data(), n)));
  }
  buf[0] = std::byte{9};
  auto bad = decodeSyslogMeta(buf);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::kCorrupt);
  std::vector<std::byte> pkt;
  encodePacketMeta({}, pkt);
  CHECK_FALSE(decodePacketMeta(std::span<const std::byte>(pkt.data(), 5)));
  CHECK_FALSE(decodeLogLineMeta(pkt));
}

TEST_CASE("a record batch copies what it is given and hands out views of the copies", "[unit]") {
  RecordBatch batch(RecordKind::kPacket);
  std::vector<std::byte> meta{std::byte{1}, std::byte{2}};
  std::string payload = "abc";
  batch.add(7, meta, std::as_bytes(std::span<const char>(payload.data(), payload.size())));
  meta[0] = std::byte{9};  // the caller's buffers may be reused at once
  payload[0] = 'z';
  batch.add(8, {}, {});
  CHECK(batch.size() == 2);
  CHECK(batch.payloadBytes() == 3);
  CHECK(batch.bytes() == 5);
  const auto records = batch.records("in");
  REQUIRE(records.size() == 2);
  CHECK(records[0].kind == RecordKind::kPacket);
  CHECK(records[0].timestamp_ns == 7);
  CHECK(records[0].input == "in");
  CHECK(records[0].meta[0] == std::byte{1});
  CHECK(std::string(reinterpret_cast<const char*>(records[0].payload.data()),
                    records[0].payload.size()) == "abc");
  CHECK(records[1].meta.empty());
  CHECK(records[1].payload.empty());
  batch.clear();
  CHECK(batch.empty());
  CHECK(batch.records("in").empty());
}
