// The persistent instance UID: a UUIDv7 made once, kept in a file, read back the same; a damaged
// file is reported, not replaced.
#include <chrono>
#include <fstream>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "cistern/heartbeat/instance_uid.h"
#include "temp_dir.h"

namespace cistern::heartbeat {
namespace {

TEST_CASE("a new UID is a UUIDv7 with the current time", "[unit]") {
  const auto before =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  const InstanceUid uid = newUuidV7();
  std::uint64_t ms = 0;
  for (std::size_t i = 0; i < 6; ++i) ms = (ms << 8U) | uid[i];
  CHECK(ms >= before);
  CHECK(ms < before + 60000);
  CHECK((uid[6] >> 4U) == 7);        // version
  CHECK((uid[8] & 0xC0U) == 0x80U);  // RFC 9562 variant
  std::set<InstanceUid> many;
  for (int i = 0; i < 100; ++i) many.insert(newUuidV7());
  CHECK(many.size() == 100);
}

TEST_CASE("the UID is written once and read back", "[unit]") {
  testing::TempDir dir("cistern-uid");
  const auto file = dir / "state" / "instance_uid";
  auto made = loadOrCreateInstanceUid(file);
  REQUIRE(made);
  std::ifstream in(file);
  std::string text;
  std::getline(in, text);
  CHECK(text == formatUuid(*made));
  CHECK(text.size() == 36);
  auto again = loadOrCreateInstanceUid(file);
  REQUIRE(again);
  CHECK(*again == *made);
}

TEST_CASE("a file that holds no UUID is reported and left alone", "[unit]") {
  testing::TempDir dir("cistern-uid");
  const auto file = dir / "instance_uid";
  std::ofstream(file) << "not-a-uuid\n";
  auto loaded = loadOrCreateInstanceUid(file);
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == ErrorCode::kCorrupt);
  CHECK_THAT(loaded.error().message, Catch::Contains(file.string()));
  std::ifstream in(file);
  std::string text;
  std::getline(in, text);
  CHECK(text == "not-a-uuid");

  // Upper-case hex is a UUID too.
  std::ofstream(file) << "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B\n";
  auto upper = loadOrCreateInstanceUid(file);
  REQUIRE(upper);
  CHECK(formatUuid(*upper) == "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
}

}  // namespace
}  // namespace cistern::heartbeat
