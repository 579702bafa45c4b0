#include "cistern/core/record_meta.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "cistern/core/bytes.h"

namespace cistern {
namespace {

constexpr std::uint8_t kVersion = 1;

template <typename T>
void put(std::vector<std::byte>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  bytes::storeLe<T>(out.data() + at, v);
}

void putString(std::vector<std::byte>& out, std::string_view s) {
  const std::size_t n = std::min<std::size_t>(s.size(), std::numeric_limits<std::uint16_t>::max());
  put<std::uint16_t>(out, static_cast<std::uint16_t>(n));
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + n);
}

// Bounds-checked reads over untrusted bytes; the first failure sticks.
class Reader {
 public:
  Reader(std::span<const std::byte> in, const char* what) : in_(in), what_(what) {}

  template <typename T>
  T get() {
    if (!take(sizeof(T))) return T{};
    return bytes::loadLe<T>(in_.data() + at_ - sizeof(T));
  }
  std::string_view string() {
    const auto n = get<std::uint16_t>();
    if (!take(n)) return {};
    return {reinterpret_cast<const char*>(in_.data() + at_ - n), n};
  }
  Status version() {
    const auto v = get<std::uint8_t>();
    if (failed_) return status();
    if (v != kVersion) {
      return fail(ErrorCode::kCorrupt, fmt::format("{} metadata has unknown version {}", what_, v));
    }
    return ok();
  }
  Status status() const {
    if (!failed_) return ok();
    return fail(ErrorCode::kCorrupt,
                fmt::format("{} metadata is truncated ({} bytes)", what_, in_.size()));
  }

 private:
  bool take(std::size_t n) {
    if (failed_ || in_.size() - at_ < n) {
      failed_ = true;
      return false;
    }
    at_ += n;
    return true;
  }
  std::span<const std::byte> in_;
  const char* what_;
  std::size_t at_ = 0;
  bool failed_ = false;
};

}  // namespace

const char* syslogFormatName(SyslogFormat format) noexcept {
  switch (format) {
    case SyslogFormat::kRaw:
      return "raw";
    case SyslogFormat::kRfc3164:
      return "rfc3164";
    case SyslogFormat::kRfc5424:
      return "rfc5424";
  }
  return "unknown";
}

void encodePacketMeta(const PacketMeta& meta, std::vector<std::byte>& out) {
  out.clear();
  put<std::uint8_t>(out, kVersion);
  put<std::uint32_t>(out, meta.link_type);
  put<std::uint32_t>(out, meta.original_length);
}

void encodeLogLineMeta(const LogLineMeta& meta, std::vector<std::byte>& out) {
  out.clear();
  put<std::uint8_t>(out, kVersion);
  put<std::uint8_t>(out, meta.flags);
  put<std::uint64_t>(out, meta.offset);
  putString(out, meta.path);
}

void encodeSyslogMeta(const SyslogMeta& meta, std::vector<std::byte>& out) {
  out.clear();
  put<std::uint8_t>(out, kVersion);
  put<std::uint8_t>(out, static_cast<std::uint8_t>(meta.format));
  put<std::uint8_t>(out, meta.facility);
  put<std::uint8_t>(out, meta.severity);
  put<std::int64_t>(out, meta.timestamp_ns);
  put<std::uint32_t>(out, meta.message_offset);
  for (std::string_view s : {meta.host, meta.app, meta.procid, meta.msgid, meta.peer}) {
    putString(out, s);
  }
}

Result<PacketMeta> decodePacketMeta(std::span<const std::byte> meta) {
  Reader r(meta, "packet");
  if (auto v = r.version(); !v) return tl::unexpected(v.error());
  PacketMeta m;
  m.link_type = r.get<std::uint32_t>();
  m.original_length = r.get<std::uint32_t>();
  if (auto s = r.status(); !s) return tl::unexpected(s.error());
  return m;
}

Result<LogLineMeta> decodeLogLineMeta(std::span<const std::byte> meta) {
  Reader r(meta, "log line");
  if (auto v = r.version(); !v) return tl::unexpected(v.error());
  LogLineMeta m;
  m.flags = r.get<std::uint8_t>();
  m.offset = r.get<std::uint64_t>();
  m.path = r.string();
  if (auto s = r.status(); !s) return tl::unexpected(s.error());
  return m;
}

Result<SyslogMeta> decodeSyslogMeta(std::span<const std::byte> meta) {
  Reader r(meta, "syslog");
  if (auto v = r.version(); !v) return tl::unexpected(v.error());
  SyslogMeta m;
  const auto format = r.get<std::uint8_t>();
  if (format > static_cast<std::uint8_t>(SyslogFormat::kRfc5424)) {
    return fail(ErrorCode::kCorrupt, fmt::format("syslog metadata has unknown format {}", format));
  }
  m.format = static_cast<SyslogFormat>(format);
  m.facility = r.get<std::uint8_t>();
  m.severity = r.get<std::uint8_t>();
  m.timestamp_ns = r.get<std::int64_t>();
  m.message_offset = r.get<std::uint32_t>();
  m.host = r.string();
  m.app = r.string();
  m.procid = r.string();
  m.msgid = r.string();
  m.peer = r.string();
  if (auto s = r.status(); !s) return tl::unexpected(s.error());
  return m;
}

}  // namespace cistern
