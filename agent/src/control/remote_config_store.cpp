#include "remote_config_store.h"

#include <xxhash.h>

#include <cstdint>
#include <optional>

#include <fmt/format.h>

#include "cistern/platform/files.h"

namespace cistern::agent {
namespace {

// The hash file: "<hex of the server's hash> <xxh3 of the text, 16 hex digits>\n".
std::string checksum(std::string_view text) {
  return fmt::format("{:016x}", XXH3_64bits(text.data(), text.size()));
}

std::optional<std::string> fromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

}  // namespace

std::string toHex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return out;
}

Result<std::optional<StoredRemoteConfig>> RemoteConfigStore::load() const {
  auto hash_line = platform::readSmallFile(hashFile(), 4096);
  if (!hash_line) {
    if (hash_line.error().code == ErrorCode::kNotFound) {
      return std::optional<StoredRemoteConfig>{};
    }
    return tl::make_unexpected(hash_line.error());
  }
  auto text = platform::readSmallFile(textFile(), kMaxBytes);
  if (!text) {
    return fail(ErrorCode::kCorrupt, fmt::format("{} is there but its config is not: {}",
                                                 hashFile().string(), text.error().message));
  }
  std::string_view line = *hash_line;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  const auto space = line.find(' ');
  const auto hash = space == std::string_view::npos ? std::nullopt : fromHex(line.substr(0, space));
  if (!hash || line.substr(space + 1) != checksum(*text)) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("{} and {} do not belong together (a write was interrupted?)",
                            textFile().string(), hashFile().string()));
  }
  return std::optional<StoredRemoteConfig>{StoredRemoteConfig{*hash, std::move(*text)}};
}

Status RemoteConfigStore::save(const StoredRemoteConfig& config) const {
  if (auto written = platform::writeFileAtomically(textFile(), config.text); !written) {
    return written;
  }
  return platform::writeFileAtomically(
      hashFile(), fmt::format("{} {}\n", toHex(config.hash), checksum(config.text)));
}

Status RemoteConfigStore::clear() const {
  std::error_code ec;
  std::filesystem::remove(hashFile(), ec);  // first: without it, the text is ignored
  if (ec) {
    return fail(ErrorCode::kIo, fmt::format("removing {}: {}", hashFile().string(), ec.message()));
  }
  std::filesystem::remove(textFile(), ec);
  return ok();
}

}  // namespace cistern::agent
