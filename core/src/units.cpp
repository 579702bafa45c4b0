#include "cistern/core/units.h"

#include <array>
#include <cmath>
#include <cstdlib>
#include <ranges>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace cistern {
namespace {

struct Unit {
  std::string_view name;
  long double factor;
};

constexpr long double kKi = 1024.0L;
constexpr std::array<Unit, 10> kSizeUnits{{
    {"B", 1.0L},
    {"kB", 1e3L},
    {"KB", 1e3L},
    {"MB", 1e6L},
    {"GB", 1e9L},
    {"TB", 1e12L},
    {"KiB", kKi},
    {"MiB", kKi* kKi},
    {"GiB", kKi* kKi* kKi},
    {"TiB", kKi* kKi* kKi* kKi},
}};

constexpr std::array<Unit, 6> kDurationUnits{{
    {"ns", 1.0L},
    {"us", 1e3L},
    {"ms", 1e6L},
    {"s", 1e9L},
    {"m", 60e9L},
    {"h", 3600e9L},
}};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits "1.5 GiB" into its number and unit; fails on anything but digits and one dot.
Result<std::pair<long double, std::string_view>> splitNumber(std::string_view text,
                                                             std::string_view what) {
  const std::string_view s = trim(text);
  if (s.empty()) return fail(ErrorCode::kConfig, fmt::format("empty {}", what));
  std::size_t i = 0;
  bool dot = false;
  bool digits = false;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '.' && !dot))) {
    if (s[i] == '.') {
      dot = true;
    } else {
      digits = true;
    }
    ++i;
  }
  if (!digits) {
    return fail(ErrorCode::kConfig,
                fmt::format("'{}' is not a {}: it must start with a non-negative number", s, what));
  }
  const std::string number(s.substr(0, i));
  const long double value = std::strtold(number.c_str(), nullptr);
  return std::make_pair(value, trim(s.substr(i)));
}

template <std::size_t N>
std::string unitList(const std::array<Unit, N>& units) {
  std::string out;
  for (const auto& u : units) {
    if (!out.empty()) out += ", ";
    out += u.name;
  }
  return out;
}

}  // namespace

Result<std::uint64_t> parseSize(std::string_view text) {
  auto split = splitNumber(text, "size");
  if (!split) return tl::unexpected(split.error());
  auto [value, unit] = *split;
  long double factor = 1.0L;
  if (!unit.empty()) {
    std::string normalized(unit);
    if (normalized.back() == 'b') normalized.back() = 'B';
    bool found = false;
    for (const auto& u : kSizeUnits) {
      if (u.name == normalized) {
        factor = u.factor;
        found = true;
        break;
      }
    }
    if (!found) {
      return fail(ErrorCode::kConfig, fmt::format("'{}' has unknown size unit '{}' (use one of {})",
                                                  trim(text), unit, unitList(kSizeUnits)));
    }
  }
  const long double bytes = std::floor(value * factor);
  if (bytes >= 18446744073709551615.0L) {
    return fail(ErrorCode::kConfig, fmt::format("size '{}' is too large", trim(text)));
  }
  return static_cast<std::uint64_t>(bytes);
}

Result<std::chrono::nanoseconds> parseDuration(std::string_view text) {
  auto split = splitNumber(text, "duration");
  if (!split) return tl::unexpected(split.error());
  auto [value, unit] = *split;
  if (unit.empty()) {
    return fail(ErrorCode::kConfig,
                fmt::format("duration '{}' needs a unit such as 250ms or 5s (one of {})",
                            trim(text), unitList(kDurationUnits)));
  }
  for (const auto& u : kDurationUnits) {
    if (u.name == unit) {
      const long double ns = std::floor(value * u.factor);
      if (ns >= 9.2e18L) {
        return fail(ErrorCode::kConfig, fmt::format("duration '{}' is too large", trim(text)));
      }
      return std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
    }
  }
  return fail(ErrorCode::kConfig, fmt::format("'{}' has unknown duration unit '{}' (use one of {})",
                                              trim(text), unit, unitList(kDurationUnits)));
}

namespace {

std::string formatScaled(long double value, std::string_view unit) {
  std::string s = fmt::format("{:.2f}", static_cast<double>(value));
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s + std::string(unit);
}

}  // namespace

std::string formatSize(std::uint64_t bytes) {
  static constexpr std::array<std::string_view, 5> kNames{"B", "KiB", "MiB", "GiB", "TiB"};
  auto value = static_cast<long double>(bytes);
  std::size_t i = 0;
  while (value >= kKi && i + 1 < kNames.size()) {
    value /= kKi;
    ++i;
  }
  return formatScaled(value, kNames[i]);
}

std::string formatDuration(std::chrono::nanoseconds d) {
  const auto ns = static_cast<long double>(d.count());
  // Largest unit first.
  for (std::size_t i = kDurationUnits.size(); i-- > 0;) {
    const Unit& u = kDurationUnits[i];
    if (ns >= u.factor) return formatScaled(ns / u.factor, u.name);
  }
  return "0s";
}

}  // namespace cistern
