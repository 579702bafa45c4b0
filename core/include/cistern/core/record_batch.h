// RecordBatch: records an input collects for one RecordSink::appendBatch, encoded at once in the
// ring's record layout (record.h) into one arena: capture libraries reuse their buffers as soon
// as a callback returns, so the bytes must be copied anyway, and copying them straight into their
// final encoding lets the ring move a whole batch into its frames with one memcpy per frame
// instead of validating and encoding record by record under its lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/core/record.h"

namespace cistern {

class RecordBatch {
 public:
  // Every record added is of `kind` and named `input`.
  RecordBatch(RecordKind kind, std::string input);

  // Encodes a record with a copy of `meta` and `payload`. Returns false, adding nothing, when
  // the record cannot be stored (validateRecord() fails: the input name is not 1..255 bytes,
  // the metadata is over 65535 bytes or the record over kMaxRecordBytes); the caller counts it.
  [[nodiscard]] bool add(std::uint64_t timestamp_ns, std::span<const std::byte> meta,
                         std::span<const std::byte> payload);

  [[nodiscard]] std::size_t size() const { return count_; }
  [[nodiscard]] bool empty() const { return count_ == 0; }
  // Encoded bytes held (record headers, input names, metadata and payloads).
  [[nodiscard]] std::size_t bytes() const { return size_; }
  [[nodiscard]] std::uint64_t payloadBytes() const { return payload_bytes_; }
  [[nodiscard]] RecordKind kind() const { return kind_; }
  [[nodiscard]] const std::string& input() const { return input_; }

  // The records, encoded back to back exactly as a frame body holds them.
  [[nodiscard]] std::span<const std::byte> encoded() const { return {arena_.get(), size_}; }

  // The records as views into the batch, for sinks that take records one by one; valid until
  // the next add() or clear().
  std::span<const RecordInput> records();

  // Empties the batch, keeping its capacity.
  void clear();

 private:
  RecordKind kind_;
  std::string input_;
  bool input_ok_;
  // Grown by hand: std::vector would zero-fill bytes that are written at once, which showed as
  // a tenth of a capture thread's time with small packets.
  std::unique_ptr<std::byte[]> arena_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::vector<RecordInput> inputs_;
  std::size_t count_ = 0;
  std::uint64_t payload_bytes_ = 0;
};

}  // namespace cistern
