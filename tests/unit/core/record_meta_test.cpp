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

TEST_CASE("a record batch encodes copies of what it is given", "[unit]") {
  RecordBatch batch(RecordKind::kPacket, "in");
  std::vector<std::byte> meta{std::byte{1}, std::byte{2}};
  std::string payload = "abc";
  REQUIRE(batch.add(7, meta, std::as_bytes(std::span<const char>(payload.data(), payload.size()))));
  meta[0] = std::byte{9};  // the caller's buffers may be reused at once
  payload[0] = 'z';
  REQUIRE(batch.add(8, {}, {}));
  CHECK(batch.size() == 2);
  CHECK(batch.payloadBytes() == 3);
  // Two headers, the input name twice, the metadata and the payload.
  CHECK(batch.bytes() == 2 * kRecordHeaderBytes + std::size_t{2 * 2 + 2 + 3});

  SECTION("the encoded bytes are records as a frame body holds them") {
    RecordReader reader(batch.encoded());
    const RecordView* first = reader.next();
    REQUIRE(first != nullptr);
    CHECK(first->timestamp_ns == 7);
    CHECK(first->input == "in");
    CHECK(first->meta[0] == std::byte{1});
    const RecordView* second = reader.next();
    REQUIRE(second != nullptr);
    CHECK(second->timestamp_ns == 8);
    CHECK(reader.next() == nullptr);
    CHECK_FALSE(reader.failed());
  }
  SECTION("records() hands out views of them") {
    const auto records = batch.records();
    REQUIRE(records.size() == 2);
    CHECK(records[0].kind == RecordKind::kPacket);
    CHECK(records[0].timestamp_ns == 7);
    CHECK(records[0].input == "in");
    CHECK(records[0].meta[0] == std::byte{1});
    CHECK(std::string(reinterpret_cast<const char*>(records[0].payload.data()),
                      records[0].payload.size()) == "abc");
    CHECK(records[1].meta.empty());
    CHECK(records[1].payload.empty());
  }
  SECTION("clear() empties it") {
    batch.clear();
    CHECK(batch.empty());
    CHECK(batch.bytes() == 0);
    CHECK(batch.records().empty());
  }
}

TEST_CASE("a record batch refuses what a record cannot hold", "[unit]") {
  SECTION("an input name out of bounds") {
    RecordBatch unnamed(RecordKind::kPacket, "");
    CHECK_FALSE(unnamed.add(1, {}, {}));
    RecordBatch long_name(RecordKind::kPacket, std::string(kMaxInputNameBytes + 1, 'x'));
    CHECK_FALSE(long_name.add(1, {}, {}));
    CHECK(unnamed.empty());
    CHECK(long_name.empty());
  }
  SECTION("metadata over 65535 bytes") {
    RecordBatch batch(RecordKind::kPacket, "in");
    const std::vector<std::byte> meta(kMaxRecordMetaBytes + 1);
    CHECK_FALSE(batch.add(1, meta, {}));
    CHECK(batch.empty());
    CHECK(batch.bytes() == 0);
  }
}
