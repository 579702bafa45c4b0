#include "cistern/core/record.h"

#include <cstring>

#include <fmt/format.h>

#include "cistern/core/bytes.h"

namespace cistern {

const char* recordKindName(RecordKind kind) noexcept {
  switch (kind) {
    case RecordKind::kPacket:
      return "packet";
    case RecordKind::kLogLine:
      return "log";
    case RecordKind::kSyslog:
      return "syslog";
    case RecordKind::kTest:
      return "test";
  }
  return "unknown";
}

Status validateRecord(const RecordInput& r) {
  // One test for the common case: the ring checks every record on its producers' threads.
  const std::size_t size = encodedRecordSize(r);
  if (!r.input.empty() && r.input.size() <= kMaxInputNameBytes &&
      r.meta.size() <= kMaxRecordMetaBytes && size <= kMaxRecordBytes) [[likely]] {
    return ok();
  }
  if (r.input.empty() || r.input.size() > kMaxInputNameBytes) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("record input name must be 1..{} bytes, got {}", kMaxInputNameBytes,
                            r.input.size()));
  }
  if (r.meta.size() > kMaxRecordMetaBytes) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("record metadata must be at most {} bytes, got {}", kMaxRecordMetaBytes,
                            r.meta.size()));
  }
  return fail(
      ErrorCode::kInvalidArgument,
      fmt::format("record of {} bytes exceeds the limit of {} bytes", size, kMaxRecordBytes));
}

void encodeRecord(const RecordInput& r, std::byte* out) noexcept {
  const auto length = static_cast<std::uint32_t>(encodedRecordSize(r) - 4);
  bytes::storeLe<std::uint32_t>(out, length);
  out[4] = static_cast<std::byte>(r.kind);
  out[5] = static_cast<std::byte>(r.input.size());
  bytes::storeLe<std::uint16_t>(out + 6, static_cast<std::uint16_t>(r.meta.size()));
  bytes::storeLe<std::uint64_t>(out + 8, r.timestamp_ns);
  std::byte* p = out + kRecordHeaderBytes;
  std::memcpy(p, r.input.data(), r.input.size());
  p += r.input.size();
  if (!r.meta.empty()) std::memcpy(p, r.meta.data(), r.meta.size());
  p += r.meta.size();
  if (!r.payload.empty()) std::memcpy(p, r.payload.data(), r.payload.size());
}

const RecordView* RecordReader::next() noexcept {
  if (!error_.empty() || offset_ >= body_.size()) return nullptr;
  const std::size_t remaining = body_.size() - offset_;
  if (remaining < kRecordHeaderBytes) {
    error_ =
        fmt::format("truncated record header at offset {} ({} bytes left)", offset_, remaining);
    return nullptr;
  }
  const std::byte* p = body_.data() + offset_;
  const auto length = static_cast<std::size_t>(bytes::loadLe<std::uint32_t>(p));
  const auto input_len = std::to_integer<std::size_t>(p[5]);
  const auto meta_len = static_cast<std::size_t>(bytes::loadLe<std::uint16_t>(p + 6));
  if (length + 4 > remaining || length < kRecordHeaderBytes - 4 + input_len + meta_len ||
      input_len == 0) {
    error_ = fmt::format(
        "record at offset {} has inconsistent lengths (length {}, input {}, "
        "meta {}, {} bytes left)",
        offset_, length, input_len, meta_len, remaining);
    return nullptr;
  }
  current_.kind = static_cast<RecordKind>(p[4]);
  current_.timestamp_ns = bytes::loadLe<std::uint64_t>(p + 8);
  const std::byte* q = p + kRecordHeaderBytes;
  current_.input = std::string_view(reinterpret_cast<const char*>(q), input_len);
  q += input_len;
  current_.meta = std::span<const std::byte>(q, meta_len);
  q += meta_len;
  current_.payload =
      std::span<const std::byte>(q, length + 4 - kRecordHeaderBytes - input_len - meta_len);
  offset_ += length + 4;
  return &current_;
}

}  // namespace cistern
