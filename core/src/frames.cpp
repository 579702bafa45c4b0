#include "cistern/core/frames.h"

namespace cistern {

std::uint64_t ReadBatch::records() const {
  std::uint64_t n = 0;
  for (const auto& f : frames_) n += f.record_count;
  return n;
}

void ReadBatch::clear() {
  frames_.clear();
  spans_.clear();
  storage_.clear();
  corrupt_skipped_ = 0;
}

void ReadBatch::addFrame(const FrameView& view, std::size_t offset, std::size_t length) {
  frames_.push_back(view);
  frames_.back().body = {};
  spans_.emplace_back(offset, length);
}

void ReadBatch::seal() {
  for (std::size_t i = 0; i < frames_.size(); ++i) {
    frames_[i].body =
        std::span<const std::byte>(storage_.data() + spans_[i].first, spans_[i].second);
  }
}

}  // namespace cistern
