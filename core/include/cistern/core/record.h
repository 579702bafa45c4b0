// The record: one captured packet or log line, as stored in the ring buffer and read by outputs.
//
// Every module that produces or consumes records uses this encoding, so it lives in core rather
// than in buffer (capture and transport may not include buffer; see docs/architecture.md).
//
// Encoding, little-endian, records packed back to back inside a frame body:
//
//   offset  size  field
//        0     4  length      bytes that follow this field (12 + input + meta + payload)
//        4     1  kind        RecordKind
//        5     1  input_len   length of the input name (1..255)
//        6     2  meta_len    length of the kind-specific metadata (0..65535)
//        8     8  timestamp   capture time, nanoseconds since the Unix epoch
//       16     .  input name, then metadata, then payload
//
// The metadata layout belongs to the producer of each kind (capture defines packet metadata:
// link type, original length); the buffer never interprets metadata or payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern {

enum class RecordKind : std::uint8_t {
  kPacket = 1,   // payload: captured bytes of one packet
  kLogLine = 2,  // payload: one line of a tailed file, without its line terminator
  kSyslog = 3,   // payload: one syslog message as received
  kTest = 200,   // produced only by tests and benchmarks
};

// Returns a stable lower-case name ("packet", "log", "syslog", "test"), or "unknown".
const char* recordKindName(RecordKind kind) noexcept;

inline constexpr std::size_t kRecordHeaderBytes = 16;
inline constexpr std::size_t kMaxInputNameBytes = 255;
inline constexpr std::size_t kMaxRecordMetaBytes = 65535;
// A single record larger than this is refused at append: it would not fit a sane frame.
inline constexpr std::size_t kMaxRecordBytes = 64U << 20U;

// A record as read from a frame body: views into the body, valid while the body is.
struct RecordView {
  RecordKind kind = RecordKind::kTest;
  std::uint64_t timestamp_ns = 0;
  std::string_view input;
  std::span<const std::byte> meta;
  std::span<const std::byte> payload;
};

// A record handed to the buffer by a producer; views owned by the caller for the call's duration.
struct RecordInput {
  RecordKind kind = RecordKind::kTest;
  std::uint64_t timestamp_ns = 0;
  std::string_view input;
  std::span<const std::byte> meta;
  std::span<const std::byte> payload;
};

// Bytes `r` occupies once encoded (header included).
inline std::size_t encodedRecordSize(const RecordInput& r) noexcept {
  return kRecordHeaderBytes + r.input.size() + r.meta.size() + r.payload.size();
}

// Checks the limits above: input name 1..255 bytes, metadata <= 65535, total <= kMaxRecordBytes.
Status validateRecord(const RecordInput& r);

// Writes `r` at `out`, which has room for encodedRecordSize(r) bytes. `r` must be valid.
void encodeRecord(const RecordInput& r, std::byte* out) noexcept;

// Iterates the records packed in a frame body, checking every length against the body's bounds.
//
//   RecordReader reader(body);
//   while (auto rec = reader.next()) { ... }   // next() returns nullptr at the end or on error
//   if (reader.failed()) { ... reader.error() ... }
class RecordReader {
 public:
  explicit RecordReader(std::span<const std::byte> body) noexcept : body_(body) {}

  // The next record, or nullptr when the body is exhausted or malformed. The pointer is valid
  // until the next call.
  const RecordView* next() noexcept;
  [[nodiscard]] bool failed() const noexcept { return !error_.empty(); }
  // What was malformed and at which offset; empty when nothing was.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] std::size_t offset() const noexcept { return offset_; }

 private:
  std::span<const std::byte> body_;
  std::size_t offset_ = 0;
  RecordView current_;
  std::string error_;
};

}  // namespace cistern
