// The ring's small durable records: the meta record, the per-frame index entry and the consumer
// record, each with a version so the format can evolve. Serialized little-endian.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ack_set.h"
#include "cistern/buffer/types.h"
#include "cistern/core/result.h"

namespace cistern::buffer {

// The meta database's only key.
inline constexpr std::string_view kMetaKey = "ring";

// Stored under kMetaKey in the meta database; rewritten by every commit.
struct RingMeta {
  FrameId next_frame = 1;
  std::uint64_t frames = 0;
  std::uint64_t records = 0;
  std::uint64_t used_bytes = 0;
  std::uint64_t appended_frames = 0;
  std::uint64_t appended_records = 0;
  std::uint64_t deleted_frames = 0;
  std::uint64_t evicted_frames = 0;
  std::uint64_t evicted_records = 0;
  std::uint64_t commits = 0;
  std::uint64_t created_ns = 0;
  std::uint64_t max_size = 0;  // as configured by the last writer (for read-only tools)

  [[nodiscard]] std::vector<std::byte> serialize() const;
  static Result<RingMeta> deserialize(std::span<const std::byte> in);
};

// Value of the index database: what eviction and inspect need without touching the frame.
struct IndexEntry {
  std::uint32_t record_count = 0;
  std::uint32_t stored_bytes = 0;
  std::uint64_t first_ts = 0;
  std::uint64_t last_ts = 0;

  static constexpr std::size_t kSize = 24;
  void serialize(std::byte* out) const;
  static Result<IndexEntry> deserialize(std::span<const std::byte> in);
};

// Value of the consumers database, keyed by the consumer's name.
struct ConsumerRecord {
  AckSet done;  // acknowledged, evicted or corrupt, for this consumer
  std::uint64_t acked_frames = 0;
  std::uint64_t acked_records = 0;
  std::uint64_t evicted_frames = 0;
  std::uint64_t evicted_records = 0;
  std::uint64_t corrupt_frames = 0;
  std::uint64_t corrupt_records = 0;
  // Frames still in the ring that are done for this consumer (so pending = ring - done_in_ring).
  std::uint64_t done_in_ring_frames = 0;
  std::uint64_t done_in_ring_records = 0;
  // RingMeta::appended_records and ::records when the consumer was created: a consumer is due
  // every record present then and every record appended since.
  std::uint64_t baseline_appended_records = 0;
  std::uint64_t baseline_ring_records = 0;
  std::uint64_t created_ns = 0;

  [[nodiscard]] std::uint64_t assignedRecords(const RingMeta& meta) const {
    return meta.appended_records - baseline_appended_records + baseline_ring_records;
  }
  [[nodiscard]] std::vector<std::byte> serialize() const;
  static Result<ConsumerRecord> deserialize(std::span<const std::byte> in);
};

}  // namespace cistern::buffer
