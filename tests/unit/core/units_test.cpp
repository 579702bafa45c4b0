#include <catch2/catch.hpp>

#include "cistern/core/units.h"

using namespace std::chrono_literals;

TEST_CASE("sizes parse with binary and decimal units", "[unit]") {
  CHECK(cistern::parseSize("0").value() == 0);
  CHECK(cistern::parseSize("512").value() == 512);
  CHECK(cistern::parseSize("512B").value() == 512);
  CHECK(cistern::parseSize("1KiB").value() == 1024);
  CHECK(cistern::parseSize("10GiB").value() == 10ULL << 30U);
  CHECK(cistern::parseSize("1.5MiB").value() == 1572864);
  CHECK(cistern::parseSize("2 MB").value() == 2'000'000);
  CHECK(cistern::parseSize("1kb").value() == 1000);
  CHECK(cistern::parseSize("4TiB").value() == 4ULL << 40U);
}

TEST_CASE("bad sizes are errors that say what is wrong", "[unit]") {
  for (const char* bad : {"", "GiB", "-1MiB", "10GB/s", "10 gigabytes", "1..2MiB", "abc"}) {
    INFO(bad);
    auto r = cistern::parseSize(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == cistern::ErrorCode::kConfig);
    CHECK_FALSE(r.error().message.empty());
  }
  CHECK_FALSE(cistern::parseSize("100000000TiB"));
}

TEST_CASE("durations need a unit", "[unit]") {
  CHECK(cistern::parseDuration("250ms").value() == 250ms);
  CHECK(cistern::parseDuration("1.5s").value() == 1500ms);
  CHECK(cistern::parseDuration("2m").value() == 120s);
  CHECK(cistern::parseDuration("1h").value() == 3600s);
  CHECK(cistern::parseDuration("90us").value() == 90us);
  CHECK(cistern::parseDuration("0s").value() == 0s);
  auto bare = cistern::parseDuration("250");
  REQUIRE_FALSE(bare);
  CHECK(bare.error().message.find("needs a unit") != std::string::npos);
  CHECK_FALSE(cistern::parseDuration("5 days"));
  CHECK_FALSE(cistern::parseDuration("-5s"));
}

TEST_CASE("sizes and durations format for humans", "[unit]") {
  CHECK(cistern::formatSize(512) == "512B");
  CHECK(cistern::formatSize(1536) == "1.5KiB");
  CHECK(cistern::formatSize(10ULL << 30U) == "10GiB");
  CHECK(cistern::formatDuration(250ms) == "250ms");
  CHECK(cistern::formatDuration(1500ms) == "1.5s");
  CHECK(cistern::formatDuration(120s) == "2m");
}
