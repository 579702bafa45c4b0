// Syslog message parsing (RFC 5424 and RFC 3164) and stream framing (RFC 6587), as pure functions
// so they can be tested and fuzzed without sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/core/record_meta.h"

namespace cistern::capture {

// What parseSyslog() found. Every view points into the parsed message; empty when absent or
// NILVALUE ("-").
struct ParsedSyslog {
  SyslogFormat format = SyslogFormat::kRaw;
  std::uint8_t facility = 0;            // 0..23
  std::uint8_t severity = kNoSeverity;  // 0..7, kNoSeverity without a valid PRI
  std::int64_t timestamp_ns = 0;        // UTC, ns since the epoch; 0 when absent
  std::size_t message_offset = 0;       // where MSG starts (after a UTF-8 BOM); 0 for kRaw
  std::string_view host;
  std::string_view app;              // RFC 5424 APP-NAME, RFC 3164 TAG
  std::string_view procid;           // RFC 5424 PROCID, RFC 3164 "[PID]"
  std::string_view msgid;            // RFC 5424 only
  std::string_view structured_data;  // RFC 5424 only: the SD-ELEMENTs as received
};

// Parses one syslog message (framing already removed). Never fails and never reads outside
// `msg`: what matches neither grammar is kRaw with offset 0 and no fields, except that a valid
// PRI still yields facility and severity.
//
// RFC 5424 (version 1): "<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]". The timestamp is RFC
// 3339 with up to 9 fractional digits and Z or an offset, converted to UTC; field lengths are
// the RFC's (255, 48, 128, 32); SD-PARAM values may hold escaped '"', '\' and ']'.
//
// RFC 3164: "<PRI>Mmm dd hh:mm:ss [HOST] [TAG[PID]:] MSG". The timestamp has no year and no zone:
// it is read as UTC in the year of `now_ns`, or the year before when that would put it more than
// a day after `now_ns`. An RFC 3339 timestamp in its place (rsyslog's high-precision format) is
// accepted. HOST is omitted when the first word is already a tag ("su:" or "cron[12]:"); a
// word that is not followed by a tag is HOST, and MSG starts after it.
ParsedSyslog parseSyslog(std::string_view msg, std::int64_t now_ns) noexcept;

// Removes trailing LF, CR and NUL bytes: the terminators senders add that are not part of the
// message.
std::string_view trimMessage(std::string_view msg) noexcept;

// StreamFramer splits a TCP or TLS byte stream into messages (RFC 6587), detecting the framing
// per message: a frame that starts with a digit is octet-counted ("LEN SP MSG", LEN without
// leading zeros, at most 10 digits), any other is terminated by LF.
//
// A message longer than max_message_bytes is cut: its first max_message_bytes bytes are returned
// (truncated = true) and the rest of its frame is skipped as it arrives. An octet count that is
// not followed by a space, has a leading zero or more than 10 digits is a framing error: the
// stream cannot be resynchronised, so the caller closes the connection.
//
// Not thread-safe; one per connection.
class StreamFramer {
 public:
  struct Frame {
    std::size_t offset = 0;  // into the framer's buffer; see message()
    std::size_t size = 0;    // may be 0 (an empty line)
    bool truncated = false;
  };
  enum class Next {
    kFrame,     // `out` holds the next message
    kNeedMore,  // no complete frame is buffered
    kError,     // framing error (see error()); every later call returns kError too
  };

  explicit StreamFramer(std::size_t max_message_bytes) noexcept;

  // Adds bytes received from the stream. Frames returned earlier stay valid.
  void append(std::string_view bytes);
  // Forgets consumed bytes, bounding the buffer; frames returned earlier become invalid.
  void compact();
  // The next message, consumed from the buffer.
  Next next(Frame& out);
  // The bytes of a frame returned by next(), valid until compact().
  [[nodiscard]] std::string_view message(const Frame& frame) const noexcept;
  // True when bytes of a frame whose message has not been returned are buffered: at the end of
  // the stream, that frame is incomplete. (A cut message's skipped tail does not count.)
  [[nodiscard]] bool midFrame() const noexcept;
  // What the framing error was, after next() returned kError.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  enum class Mode { kFrameStart, kSkipOctets, kDiscardLine };

  Next fail(std::string message);

  std::size_t max_;
  std::string buf_;
  std::size_t pos_ = 0;      // first unconsumed byte
  std::size_t scanned_ = 0;  // [pos_, scanned_) holds no LF (LF framing; avoids rescans)
  Mode mode_ = Mode::kFrameStart;
  std::uint64_t skip_ = 0;  // octets still to skip in kSkipOctets
  std::string error_;
};

}  // namespace cistern::capture
