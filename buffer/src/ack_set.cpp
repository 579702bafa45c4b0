#include "ack_set.h"

#include <algorithm>

#include "cistern/core/bytes.h"

namespace cistern::buffer {

std::size_t AckSet::lowerRange(FrameId id) const noexcept {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), id,
                             [](FrameId v, const Range& r) { return v < r.second; });
  return static_cast<std::size_t>(it - ranges_.begin());
}

bool AckSet::contains(FrameId id) const noexcept {
  if (id < floor_) return true;
  const std::size_t i = lowerRange(id);
  return i < ranges_.size() && ranges_[i].first <= id;
}

bool AckSet::insert(FrameId id) {
  if (contains(id)) return false;
  if (id == floor_) {
    ++floor_;
    if (!ranges_.empty() && ranges_.front().first == floor_) {
      floor_ = ranges_.front().second;
      ranges_.erase(ranges_.begin());
    }
    return true;
  }
  const std::size_t i = lowerRange(id);
  // Neighbours: ranges_[i-1] ends at or before id; ranges_[i] (if any) starts after id.
  const bool joins_prev = i > 0 && ranges_[i - 1].second == id;
  const bool joins_next = i < ranges_.size() && ranges_[i].first == id + 1;
  if (joins_prev && joins_next) {
    ranges_[i - 1].second = ranges_[i].second;
    ranges_.erase(ranges_.begin() + static_cast<std::ptrdiff_t>(i));
  } else if (joins_prev) {
    ranges_[i - 1].second = id + 1;
  } else if (joins_next) {
    ranges_[i].first = id;
  } else {
    ranges_.insert(ranges_.begin() + static_cast<std::ptrdiff_t>(i), Range{id, id + 1});
  }
  return true;
}

void AckSet::raiseFloor(FrameId floor) {
  if (floor <= floor_) return;
  floor_ = floor;
  std::size_t drop = 0;
  while (drop < ranges_.size() && ranges_[drop].first <= floor_) {
    floor_ = std::max(floor_, ranges_[drop].second);
    ++drop;
  }
  ranges_.erase(ranges_.begin(), ranges_.begin() + static_cast<std::ptrdiff_t>(drop));
}

FrameId AckSet::nextMissing(FrameId id) const noexcept {
  if (id < floor_) id = floor_;
  const std::size_t i = lowerRange(id);
  if (i < ranges_.size() && ranges_[i].first <= id) return ranges_[i].second;
  return id;
}

bool AckSet::prevMissing(FrameId id, FrameId& out) const noexcept {
  if (id < floor_) return false;
  const std::size_t i = lowerRange(id);
  if (i < ranges_.size() && ranges_[i].first <= id) {
    // id lies in ranges_[i]; the id just below that range is missing unless it is below floor.
    if (ranges_[i].first == 0 || ranges_[i].first - 1 < floor_) return false;
    out = ranges_[i].first - 1;
    return true;
  }
  out = id;
  return true;
}

void AckSet::serialize(std::vector<std::byte>& out) const {
  const std::size_t at = out.size();
  out.resize(at + 16 + ranges_.size() * 16);
  std::byte* p = out.data() + at;
  bytes::storeLe<std::uint64_t>(p, ranges_.size());
  bytes::storeLe<std::uint64_t>(p + 8, floor_);
  p += 16;
  for (const auto& [first, last] : ranges_) {
    bytes::storeLe<std::uint64_t>(p, first);
    bytes::storeLe<std::uint64_t>(p + 8, last);
    p += 16;
  }
}

Result<AckSet> AckSet::deserialize(std::span<const std::byte>& in) {
  if (in.size() < 16) return fail(ErrorCode::kCorrupt, "ack set: truncated header");
  const auto count = bytes::loadLe<std::uint64_t>(in.data());
  AckSet set(bytes::loadLe<std::uint64_t>(in.data() + 8));
  in = in.subspan(16);
  if (count > in.size() / 16) return fail(ErrorCode::kCorrupt, "ack set: range count too large");
  set.ranges_.reserve(count);
  FrameId prev_end = set.floor_;
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto first = bytes::loadLe<FrameId>(in.data());
    const auto last = bytes::loadLe<FrameId>(in.data() + 8);
    in = in.subspan(16);
    // Ranges must be non-empty, sorted, disjoint and separated by a gap (else they would merge).
    if (first >= last || first <= prev_end) {
      return fail(ErrorCode::kCorrupt, "ack set: ranges not sorted and disjoint");
    }
    set.ranges_.emplace_back(first, last);
    prev_end = last;
  }
  return set;
}

}  // namespace cistern::buffer
