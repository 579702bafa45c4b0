#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "ack_set.h"

using cistern::buffer::AckSet;
using cistern::buffer::FrameId;

TEST_CASE("in-order inserts only move the floor", "[unit]") {
  AckSet s(5);
  CHECK(s.contains(4));
  CHECK_FALSE(s.contains(5));
  for (FrameId id = 5; id < 100; ++id) CHECK(s.insert(id));
  CHECK(s.floor() == 100);
  CHECK(s.ranges().empty());
  CHECK_FALSE(s.insert(50));
}

TEST_CASE("out-of-order inserts form ranges that merge as gaps fill", "[unit]") {
  AckSet s(1);
  s.insert(3);
  s.insert(5);
  s.insert(6);
  REQUIRE(s.ranges().size() == 2);
  CHECK(s.nextMissing(1) == 1);
  CHECK(s.nextMissing(3) == 4);
  CHECK(s.nextMissing(5) == 7);
  FrameId prev = 0;
  REQUIRE(s.prevMissing(6, prev));
  CHECK(prev == 4);
  s.insert(4);
  CHECK(s.ranges().size() == 1);
  s.insert(2);
  CHECK(s.floor() == 1);
  s.insert(1);
  CHECK(s.floor() == 7);
  CHECK(s.ranges().empty());
  CHECK_FALSE(s.prevMissing(6, prev));
}

TEST_CASE("raising the floor swallows ranges below and touching it", "[unit]") {
  AckSet s(1);
  s.insert(10);
  s.insert(20);
  s.insert(21);
  s.raiseFloor(15);
  CHECK(s.floor() == 15);
  CHECK(s.ranges().size() == 1);
  s.raiseFloor(20);
  CHECK(s.floor() == 22);
  CHECK(s.ranges().empty());
}

TEST_CASE("the ack set matches a plain set under random operations", "[unit]") {
  std::mt19937_64 rng(GENERATE(1U, 2U, 3U, 4U));
  AckSet s(1);
  std::set<FrameId> model;
  FrameId floor = 1;
  for (int i = 0; i < 5000; ++i) {
    if (rng() % 50 == 0) {
      floor += rng() % 20;
      s.raiseFloor(floor);
    } else {
      const FrameId id = 1 + rng() % 400;
      s.insert(id);
      model.insert(id);
    }
    const FrameId probe = 1 + rng() % 420;
    const bool expected = probe < floor || model.count(probe) > 0;
    REQUIRE(s.contains(probe) == expected);
  }
  std::vector<std::byte> buf;
  s.serialize(buf);
  std::span<const std::byte> in(buf);
  auto back = AckSet::deserialize(in);
  REQUIRE(back);
  CHECK(*back == s);
  CHECK(in.empty());
}

TEST_CASE("a damaged serialized ack set is rejected", "[unit]") {
  AckSet s(1);
  s.insert(5);
  s.insert(9);
  std::vector<std::byte> buf;
  s.serialize(buf);
  SECTION("truncated") {
    buf.resize(buf.size() - 1);
    std::span<const std::byte> in(buf);
    CHECK_FALSE(AckSet::deserialize(in));
  }
  SECTION("huge count") {
    buf[7] = std::byte{0x7f};
    std::span<const std::byte> in(buf);
    CHECK_FALSE(AckSet::deserialize(in));
  }
  SECTION("unsorted ranges") {
    std::swap_ranges(buf.begin() + 16, buf.begin() + 32, buf.begin() + 32);
    std::span<const std::byte> in(buf);
    CHECK_FALSE(AckSet::deserialize(in));
  }
}
