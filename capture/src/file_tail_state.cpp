#include "file_tail_state.h"

#include <algorithm>
#include <charconv>
#include <system_error>

#include <fmt/format.h>

namespace cistern::capture::tail {
namespace {

constexpr std::uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;

// Parses one unsigned field followed by a single space; advances `s` past both.
bool takeField(std::string_view& s, std::uint64_t& v, int base = 10) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v, base);
  if (ec != std::errc() || p == s.data() || p == end || *p != ' ') return false;
  s.remove_prefix(static_cast<std::size_t>(p - s.data()) + 1);
  return true;
}

bool takeWhole(std::string_view s, std::uint64_t& v) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && p == end && !s.empty();
}

}  // namespace

std::uint64_t fnv1a64(std::string_view data) noexcept {
  std::uint64_t h = kFnvOffset;
  for (const char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

Fingerprint takeFingerprint(std::string_view prefix, std::uint64_t fingerprint_bytes) {
  const std::size_t n = std::min<std::uint64_t>(prefix.size(), fingerprint_bytes);
  return Fingerprint{n, fnv1a64(prefix.substr(0, n))};
}

std::optional<Fingerprint> matchFingerprint(std::string_view prefix, const Fingerprint& fp,
                                            std::uint64_t fingerprint_bytes) {
  // Only the bytes hashed then can be compared: a provisional fingerprint of a file that has
  // grown since still identifies it.
  if (prefix.size() < fp.length) return std::nullopt;
  if (fnv1a64(prefix.substr(0, fp.length)) != fp.hash) return std::nullopt;
  return takeFingerprint(prefix, fingerprint_bytes);
}

std::string stateKeyPrefix(std::string_view input) { return fmt::format("tail/{}/", input); }

std::string stateKey(std::string_view input, const FileIdentity& id) {
  return fmt::format("tail/{}/{}:{}", input, id.dev, id.ino);
}

std::optional<FileIdentity> parseStateKeySuffix(std::string_view suffix) {
  const std::size_t colon = suffix.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  FileIdentity id;
  if (!takeWhole(suffix.substr(0, colon), id.dev) || !takeWhole(suffix.substr(colon + 1), id.ino)) {
    return std::nullopt;
  }
  return id;
}

std::string encodeState(const SavedFile& file) {
  return fmt::format("1 {} {} {} {:x} {} {} {}", file.id.dev, file.id.ino, file.fp.length,
                     file.fp.hash, file.offset, file.discarding ? 1 : 0, file.path);
}

std::optional<SavedFile> decodeState(std::string_view value) {
  SavedFile f;
  std::uint64_t version = 0;
  std::uint64_t discarding = 0;
  if (!takeField(value, version) || version != 1 || !takeField(value, f.id.dev) ||
      !takeField(value, f.id.ino) || !takeField(value, f.fp.length) ||
      !takeField(value, f.fp.hash, 16) || !takeField(value, f.offset) ||
      !takeField(value, discarding) || discarding > 1) {
    return std::nullopt;
  }
  // A fingerprint longer than the offset is fine (taken over bytes not yet read), but one longer
  // than any configurable fingerprint_bytes is not something this code wrote.
  if (f.fp.length > (1ULL << 32U)) return std::nullopt;
  f.discarding = discarding == 1;
  f.path = std::string(value);
  return f;
}

}  // namespace cistern::capture::tail
