// RecordBatch: records an input collects for one RecordSink::append, with their metadata and
// payloads copied into one arena (capture libraries reuse their buffers as soon as a callback
// returns). The RecordInputs are built only when appending, once the arena stops growing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "cistern/core/record.h"

namespace cistern {

class RecordBatch {
 public:
  explicit RecordBatch(RecordKind kind) : kind_(kind) {}

  // Copies `meta` and `payload` into the batch.
  void add(std::uint64_t timestamp_ns, std::span<const std::byte> meta,
           std::span<const std::byte> payload);

  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  [[nodiscard]] bool empty() const { return entries_.empty(); }
  // Metadata and payload bytes held.
  [[nodiscard]] std::size_t bytes() const { return arena_.size(); }
  [[nodiscard]] std::uint64_t payloadBytes() const { return payload_bytes_; }

  // The records, named `input`; views into the batch, valid until the next add() or clear().
  std::span<const RecordInput> records(std::string_view input);

  // Empties the batch, keeping its capacity.
  void clear();

 private:
  struct Entry {
    std::uint64_t timestamp_ns;
    std::size_t at;
    std::size_t meta_len;
    std::size_t payload_len;
  };
  RecordKind kind_;
  std::vector<std::byte> arena_;
  std::vector<Entry> entries_;
  std::vector<RecordInput> inputs_;
  std::uint64_t payload_bytes_ = 0;
};

}  // namespace cistern
