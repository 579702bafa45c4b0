#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "cistern/core/bytes.h"
#include "cistern/core/record.h"

using cistern::RecordInput;
using cistern::RecordKind;
using cistern::RecordReader;

namespace {

// The span views `s`, which must outlive it.
std::span<const std::byte> asBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::vector<std::byte> encodeAll(const std::vector<RecordInput>& records) {
  std::vector<std::byte> body;
  for (const auto& r : records) {
    const std::size_t at = body.size();
    body.resize(at + cistern::encodedRecordSize(r));
    cistern::encodeRecord(r, body.data() + at);
  }
  return body;
}

}  // namespace

TEST_CASE("records round-trip through the frame body encoding", "[unit]") {
  const std::string meta("\x01\x00\x00\x00", 4);
  const std::string payload(1500, 'x');
  const std::string hello = "hello world";
  std::vector<RecordInput> in = {
      {RecordKind::kPacket, 1'700'000'000'123'456'789ULL, "eth0", asBytes(meta), asBytes(payload)},
      {RecordKind::kLogLine, 42, "app-log", {}, asBytes(hello)},
      {RecordKind::kSyslog, 0, "s", {}, {}},
  };
  const auto body = encodeAll(in);
  RecordReader reader(body);
  std::size_t n = 0;
  while (const auto* r = reader.next()) {
    REQUIRE(n < in.size());
    CHECK(r->kind == in[n].kind);
    CHECK(r->timestamp_ns == in[n].timestamp_ns);
    CHECK(r->input == in[n].input);
    CHECK(r->meta.size() == in[n].meta.size());
    CHECK(r->payload.size() == in[n].payload.size());
    CHECK(std::equal(r->payload.begin(), r->payload.end(), in[n].payload.begin()));
    ++n;
  }
  CHECK_FALSE(reader.failed());
  CHECK(n == in.size());
}

TEST_CASE("record validation enforces the documented limits", "[unit]") {
  const std::string long_name(256, 'n');
  CHECK_FALSE(cistern::validateRecord({RecordKind::kTest, 0, "", {}, {}}));
  CHECK_FALSE(cistern::validateRecord({RecordKind::kTest, 0, long_name, {}, {}}));
  CHECK(cistern::validateRecord({RecordKind::kTest, 0, long_name.substr(1), {}, {}}));
  const std::vector<std::byte> big_meta(65536);
  CHECK_FALSE(cistern::validateRecord({RecordKind::kTest, 0, "in", big_meta, {}}));
}

TEST_CASE("a damaged body is reported, never read out of bounds", "[unit]") {
  const std::string payload = "0123456789";
  auto body = encodeAll({{RecordKind::kLogLine, 7, "in", {}, asBytes(payload)},
                         {RecordKind::kLogLine, 8, "in", {}, asBytes(payload)}});

  SECTION("truncated in the second record") {
    body.resize(body.size() - 3);
    RecordReader reader(body);
    CHECK(reader.next() != nullptr);
    CHECK(reader.next() == nullptr);
    CHECK(reader.failed());
  }
  SECTION("length field pointing past the end") {
    cistern::bytes::storeLe<std::uint32_t>(body.data(), 1'000'000);
    RecordReader reader(body);
    CHECK(reader.next() == nullptr);
    CHECK(reader.failed());
  }
  SECTION("input length larger than the record") {
    body[5] = std::byte{200};
    RecordReader reader(body);
    CHECK(reader.next() == nullptr);
    CHECK(reader.failed());
  }
  SECTION("zero-length input name") {
    body[5] = std::byte{0};
    RecordReader reader(body);
    CHECK(reader.next() == nullptr);
    CHECK(reader.failed());
  }
}
