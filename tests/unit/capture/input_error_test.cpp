#include <string>

#include <catch2/catch.hpp>

#include "input_error.h"

using cistern::ErrorCode;

TEST_CASE("input errors name the input", "[unit]") {
  cistern::Status e =
      cistern::capture::inputError(ErrorCode::kConfig, "tap0", "no such interface 'eth9'");
  CHECK(e.error().code == ErrorCode::kConfig);
  CHECK(e.error().message == "input 'tap0': no such interface 'eth9'");
}

TEST_CASE("input names have 1 to 255 bytes", "[unit]") {
  CHECK(cistern::capture::checkInputName("a"));
  CHECK(cistern::capture::checkInputName(std::string(255, 'x')));
  CHECK_FALSE(cistern::capture::checkInputName(""));
  CHECK_FALSE(cistern::capture::checkInputName(std::string(256, 'x')));
}
