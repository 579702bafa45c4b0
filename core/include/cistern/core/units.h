// Sizes and durations with units, as written in config files and printed by the CLI.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern {

// Parses a byte size: a non-negative number (decimals allowed) with an optional unit, no space or
// one space between: B, kB or KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
// 1024). A bare number is bytes. Units are case-sensitive except the final B/b. Errors (kConfig):
// empty text, unknown unit, negative values, overflow of 64 bits.
Result<std::uint64_t> parseSize(std::string_view text);

// Parses a duration: a non-negative number (decimals allowed) followed by ns, us, ms, s, m or h.
// A unit is required, so "250" is an error that asks for one.
Result<std::chrono::nanoseconds> parseDuration(std::string_view text);

// "512B", "1.5KiB", "10GiB": binary units, at most two decimals, trailing zeros removed.
std::string formatSize(std::uint64_t bytes);

// "250ms", "1.5s", "2m", "90us": the largest unit that keeps the value >= 1.
std::string formatDuration(std::chrono::nanoseconds d);

}  // namespace cistern
