#include "cistern/core/record_batch.h"

#include <cstring>

namespace cistern {

void RecordBatch::add(std::uint64_t timestamp_ns, std::span<const std::byte> meta,
                      std::span<const std::byte> payload) {
  const std::size_t at = arena_.size();
  arena_.resize(at + meta.size() + payload.size());
  if (!meta.empty()) std::memcpy(arena_.data() + at, meta.data(), meta.size());
  if (!payload.empty()) {
    std::memcpy(arena_.data() + at + meta.size(), payload.data(), payload.size());
  }
  entries_.push_back({timestamp_ns, at, meta.size(), payload.size()});
  payload_bytes_ += payload.size();
}

std::span<const RecordInput> RecordBatch::records(std::string_view input) {
  inputs_.clear();
  for (const Entry& e : entries_) {
    const std::byte* base = arena_.data() + e.at;
    inputs_.push_back(RecordInput{kind_, e.timestamp_ns, input,
                                  std::span<const std::byte>(base, e.meta_len),
                                  std::span<const std::byte>(base + e.meta_len, e.payload_len)});
  }
  return inputs_;
}

void RecordBatch::clear() {
  arena_.clear();
  entries_.clear();
  inputs_.clear();
  payload_bytes_ = 0;
}

}  // namespace cistern
