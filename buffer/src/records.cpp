#include "records.h"

#include <array>

#include "cistern/core/bytes.h"

namespace cistern::buffer {
namespace {

constexpr std::uint32_t kMetaVersion = 1;
constexpr std::uint32_t kConsumerVersion = 1;

// Reads and writes a sequence of u64 fields after a u32 version; unknown trailing fields from a
// newer minor version are ignored, missing ones are an error.
class Writer {
 public:
  explicit Writer(std::uint32_t version) { u32(version); }
  void u32(std::uint32_t v) {
    const std::size_t at = out_.size();
    out_.resize(at + 4);
    bytes::storeLe<std::uint32_t>(out_.data() + at, v);
  }
  void u64(std::uint64_t v) {
    const std::size_t at = out_.size();
    out_.resize(at + 8);
    bytes::storeLe<std::uint64_t>(out_.data() + at, v);
  }
  std::vector<std::byte>& bytes() { return out_; }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  Reader(std::span<const std::byte> in, const char* what) : in_(in), what_(what) {}
  Status version(std::uint32_t expected) {
    if (in_.size() < 4) return fail(ErrorCode::kCorrupt, std::string(what_) + ": truncated");
    const auto v = bytes::loadLe<std::uint32_t>(in_.data());
    in_ = in_.subspan(4);
    if (v != expected) {
      return fail(ErrorCode::kCorrupt,
                  std::string(what_) + ": unsupported version " + std::to_string(v));
    }
    return ok();
  }
  bool u64(std::uint64_t& v) {
    if (in_.size() < 8) return false;
    v = bytes::loadLe<std::uint64_t>(in_.data());
    in_ = in_.subspan(8);
    return true;
  }
  std::span<const std::byte>& rest() { return in_; }

 private:
  std::span<const std::byte> in_;
  const char* what_;
};

}  // namespace

std::vector<std::byte> RingMeta::serialize() const {
  Writer w(kMetaVersion);
  for (std::uint64_t v :
       {next_frame, frames, records, used_bytes, appended_frames, appended_records, deleted_frames,
        evicted_frames, evicted_records, commits, created_ns, max_size}) {
    w.u64(v);
  }
  return std::move(w.bytes());
}

Result<RingMeta> RingMeta::deserialize(std::span<const std::byte> in) {
  Reader r(in, "ring meta record");
  if (auto st = r.version(kMetaVersion); !st) return tl::unexpected(st.error());
  RingMeta m;
  for (std::uint64_t* f : {&m.next_frame, &m.frames, &m.records, &m.used_bytes, &m.appended_frames,
                           &m.appended_records, &m.deleted_frames, &m.evicted_frames,
                           &m.evicted_records, &m.commits, &m.created_ns, &m.max_size}) {
    if (!r.u64(*f)) return fail(ErrorCode::kCorrupt, "ring meta record: truncated");
  }
  return m;
}

void IndexEntry::serialize(std::byte* out) const {
  bytes::storeLe<std::uint32_t>(out, record_count);
  bytes::storeLe<std::uint32_t>(out + 4, stored_bytes);
  bytes::storeLe<std::uint64_t>(out + 8, first_ts);
  bytes::storeLe<std::uint64_t>(out + 16, last_ts);
}

Result<IndexEntry> IndexEntry::deserialize(std::span<const std::byte> in) {
  if (in.size() != kSize) {
    return fail(ErrorCode::kCorrupt,
                "index entry: " + std::to_string(in.size()) + " bytes, expected 24");
  }
  IndexEntry e;
  e.record_count = bytes::loadLe<std::uint32_t>(in.data());
  e.stored_bytes = bytes::loadLe<std::uint32_t>(in.data() + 4);
  e.first_ts = bytes::loadLe<std::uint64_t>(in.data() + 8);
  e.last_ts = bytes::loadLe<std::uint64_t>(in.data() + 16);
  return e;
}

std::vector<std::byte> ConsumerRecord::serialize() const {
  Writer w(kConsumerVersion);
  for (std::uint64_t v :
       {acked_frames, acked_records, evicted_frames, evicted_records, corrupt_frames,
        corrupt_records, done_in_ring_frames, done_in_ring_records, baseline_appended_records,
        baseline_ring_records, created_ns}) {
    w.u64(v);
  }
  done.serialize(w.bytes());
  return std::move(w.bytes());
}

Result<ConsumerRecord> ConsumerRecord::deserialize(std::span<const std::byte> in) {
  Reader r(in, "consumer record");
  if (auto st = r.version(kConsumerVersion); !st) return tl::unexpected(st.error());
  ConsumerRecord c;
  for (std::uint64_t* f :
       {&c.acked_frames, &c.acked_records, &c.evicted_frames, &c.evicted_records, &c.corrupt_frames,
        &c.corrupt_records, &c.done_in_ring_frames, &c.done_in_ring_records,
        &c.baseline_appended_records, &c.baseline_ring_records, &c.created_ns}) {
    if (!r.u64(*f)) return fail(ErrorCode::kCorrupt, "consumer record: truncated");
  }
  auto done = AckSet::deserialize(r.rest());
  if (!done) return tl::unexpected(done.error());
  c.done = std::move(*done);
  return c;
}

}  // namespace cistern::buffer
