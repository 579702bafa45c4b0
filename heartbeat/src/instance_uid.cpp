#include "cistern/heartbeat/instance_uid.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "cistern/platform/files.h"

namespace cistern::heartbeat {
namespace {

std::optional<InstanceUid> parseUuid(const std::string& text) {
  InstanceUid uid{};
  std::size_t nibble = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '-') {
      if (i != 8 && i != 13 && i != 18 && i != 23) return std::nullopt;
      continue;
    }
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    if (v < 0 || nibble >= 32) return std::nullopt;
    auto& byte = uid[nibble / 2];
    byte = static_cast<std::uint8_t>(nibble % 2 == 0 ? v << 4 : byte | v);
    ++nibble;
  }
  if (nibble != 32 || text.size() != 36) return std::nullopt;
  return uid;
}

}  // namespace

InstanceUid newUuidV7() {
  InstanceUid uid{};
  const auto ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  for (std::size_t i = 0; i < 6; ++i) uid[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  std::random_device rd;
  for (std::size_t i = 6; i < 16; ++i) uid[i] = static_cast<std::uint8_t>(rd());
  uid[6] = static_cast<std::uint8_t>((uid[6] & 0x0FU) | 0x70U);  // version 7
  uid[8] = static_cast<std::uint8_t>((uid[8] & 0x3FU) | 0x80U);  // variant 10
  return uid;
}

std::string formatUuid(const InstanceUid& uid) {
  std::string out;
  for (std::size_t i = 0; i < uid.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += fmt::format("{:02x}", uid[i]);
  }
  return out;
}

Status saveInstanceUid(const std::filesystem::path& file, const InstanceUid& uid) {
  if (auto written = platform::writeFileAtomically(file, formatUuid(uid) + "\n"); !written) {
    return fail(ErrorCode::kIo, "the instance UID: " + written.error().message);
  }
  return ok();
}

Result<InstanceUid> loadOrCreateInstanceUid(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    std::ifstream in(file);
    std::string text;
    if (!in || !std::getline(in, text)) {
      return fail(ErrorCode::kIo, fmt::format("reading the instance UID from {}: {}", file.string(),
                                              std::strerror(errno)));
    }
    auto uid = parseUuid(text);
    if (!uid) {
      return fail(ErrorCode::kCorrupt,
                  fmt::format("{} does not hold an instance UID (a UUID such as "
                              "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b); remove it to make a new one",
                              file.string()));
    }
    return *uid;
  }
  const InstanceUid uid = newUuidV7();
  if (auto saved = saveInstanceUid(file, uid); !saved) return tl::make_unexpected(saved.error());
  return uid;
}

}  // namespace cistern::heartbeat
