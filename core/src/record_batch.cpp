#include "cistern/core/record_batch.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace cistern {

RecordBatch::RecordBatch(RecordKind kind, std::string input)
    : kind_(kind),
      input_(std::move(input)),
      input_ok_(!input_.empty() && input_.size() <= kMaxInputNameBytes) {}

bool RecordBatch::add(std::uint64_t timestamp_ns, std::span<const std::byte> meta,
                      std::span<const std::byte> payload) {
  const std::size_t size = kRecordHeaderBytes + input_.size() + meta.size() + payload.size();
  if (!input_ok_ || meta.size() > kMaxRecordMetaBytes || size > kMaxRecordBytes) [[unlikely]] {
    return false;
  }
  if (capacity_ - size_ < size) {
    const std::size_t grown = std::max(2 * capacity_, size_ + size);
    auto bigger = std::make_unique_for_overwrite<std::byte[]>(grown);
    if (size_ > 0) std::memcpy(bigger.get(), arena_.get(), size_);
    arena_ = std::move(bigger);
    capacity_ = grown;
  }
  RecordInput r;
  r.kind = kind_;
  r.timestamp_ns = timestamp_ns;
  r.input = input_;
  r.meta = meta;
  r.payload = payload;
  encodeRecord(r, arena_.get() + size_);
  size_ += size;
  ++count_;
  payload_bytes_ += payload.size();
  return true;
}

std::span<const RecordInput> RecordBatch::records() {
  inputs_.clear();
  inputs_.reserve(count_);
  RecordReader reader(encoded());
  while (const RecordView* v = reader.next()) {
    RecordInput& r = inputs_.emplace_back();
    r.kind = v->kind;
    r.timestamp_ns = v->timestamp_ns;
    r.input = v->input;
    r.meta = v->meta;
    r.payload = v->payload;
  }
  return inputs_;
}

void RecordBatch::clear() {
  size_ = 0;
  inputs_.clear();
  count_ = 0;
  payload_bytes_ = 0;
}

}  // namespace cistern
