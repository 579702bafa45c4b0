// The metadata each record kind carries, and its encoding in RecordInput::meta.
//
// Producers (capture) encode; consumers (export, outputs) decode. Every layout starts with a
// version byte so that it can grow; decoders accept only the versions they know and check every
// length against the bytes present (the meta comes from disk and is untrusted).
//
// Packet (RecordKind::kPacket), 9 bytes:
//   u8 version (1) | u32 link_type (a LINKTYPE_* value) | u32 original length
//   The payload is the captured bytes (captured length = payload size).
//
// Log line (RecordKind::kLogLine):
//   u8 version (1) | u8 flags (LogLineFlags) | u64 offset of the line's first byte in the file
//   | u16 path length | path
//   The payload is the line without its terminator.
//
// Syslog (RecordKind::kSyslog):
//   u8 version (1) | u8 format (SyslogFormat) | u8 facility | u8 severity (255: none)
//   | i64 timestamp from the message, ns since the epoch (0: none) | u32 message offset
//   | then five u16-length-prefixed strings: host, app, procid, msgid, peer
//   The payload is the whole message as received (framing removed); the MSG part starts at
//   `message offset` in it. A message that did not parse has format kRaw, offset 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/core/result.h"

namespace cistern {

struct PacketMeta {
  std::uint32_t link_type = 0;
  std::uint32_t original_length = 0;
};

enum LogLineFlags : std::uint8_t {
  kLogLineTruncated = 1U << 0U,  // the line was longer than max_line_bytes; the rest was dropped
  kLogLineSplit = 1U << 1U,      // continues in the next record (split mode)
  kLogLineNoNewline = 1U << 2U,  // the file ended without a terminator (flushed at close/rotate)
};

struct LogLineMeta {
  std::uint8_t flags = 0;
  std::uint64_t offset = 0;
  std::string_view path;
};

enum class SyslogFormat : std::uint8_t { kRaw = 0, kRfc3164 = 1, kRfc5424 = 2 };

// "raw", "rfc3164", "rfc5424".
const char* syslogFormatName(SyslogFormat format) noexcept;

inline constexpr std::uint8_t kNoSeverity = 255;

struct SyslogMeta {
  SyslogFormat format = SyslogFormat::kRaw;
  std::uint8_t facility = 0;            // 0..23
  std::uint8_t severity = kNoSeverity;  // 0..7, kNoSeverity when the message had no PRI
  std::int64_t timestamp_ns = 0;        // 0 when the message carried none (or "-")
  std::uint32_t message_offset = 0;
  std::string_view host;
  std::string_view app;
  std::string_view procid;
  std::string_view msgid;
  std::string_view peer;  // "udp://192.0.2.1:5514", "tls://[::1]:6514"
};

// Append the encoding to `out` (cleared first). Strings longer than 65535 bytes are cut.
void encodePacketMeta(const PacketMeta& meta, std::vector<std::byte>& out);
void encodeLogLineMeta(const LogLineMeta& meta, std::vector<std::byte>& out);
void encodeSyslogMeta(const SyslogMeta& meta, std::vector<std::byte>& out);

// Decode; views point into `meta`. kCorrupt names what is wrong (unknown version, short field).
Result<PacketMeta> decodePacketMeta(std::span<const std::byte> meta);
Result<LogLineMeta> decodeLogLineMeta(std::span<const std::byte> meta);
Result<SyslogMeta> decodeSyslogMeta(std::span<const std::byte> meta);

}  // namespace cistern
