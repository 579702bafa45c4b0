// AckSet: which frame ids one consumer is done with (acknowledged, evicted or skipped as corrupt).
//
// Stored as a floor (every id below it is done) plus sorted, disjoint half-open ranges above it,
// so out-of-order acknowledgements cost one range each and merge as the gaps fill in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cistern/buffer/types.h"
#include "cistern/core/result.h"

namespace cistern::buffer {

class AckSet {
 public:
  using Range = std::pair<FrameId, FrameId>;  // [first, last)

  AckSet() = default;
  explicit AckSet(FrameId floor) : floor_(floor) {}

  [[nodiscard]] FrameId floor() const noexcept { return floor_; }
  [[nodiscard]] const std::vector<Range>& ranges() const noexcept { return ranges_; }
  [[nodiscard]] bool contains(FrameId id) const noexcept;
  // Adds `id`; returns false when it was already present.
  bool insert(FrameId id);
  // Marks every id below `floor` done.
  void raiseFloor(FrameId floor);
  // The smallest id >= `id` that is not done.
  [[nodiscard]] FrameId nextMissing(FrameId id) const noexcept;
  // The largest id <= `id` that is not done, or nullopt-like `false` when every id up to `id` is.
  [[nodiscard]] bool prevMissing(FrameId id, FrameId& out) const noexcept;

  // Appends the serialized form (count, floor, ranges; little-endian u64s) to `out`.
  void serialize(std::vector<std::byte>& out) const;
  // Parses what serialize() wrote from the front of `in`, advancing it; kCorrupt on bad input.
  static Result<AckSet> deserialize(std::span<const std::byte>& in);

  friend bool operator==(const AckSet&, const AckSet&) = default;

 private:
  // Index of the first range whose end is > id.
  [[nodiscard]] std::size_t lowerRange(FrameId id) const noexcept;

  FrameId floor_ = 0;
  std::vector<Range> ranges_;
};

}  // namespace cistern::buffer
