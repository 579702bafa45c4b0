#include "batch_split.h"

#include <cstdint>
#include <span>

#include "cistern/core/record.h"

namespace cistern::transport {
namespace {

void addFrame(ReadBatch& out, const FrameView& view, std::span<const std::byte> body) {
  auto& storage = out.storage();
  const std::size_t offset = storage.size();
  storage.insert(storage.end(), body.begin(), body.end());
  out.addFrame(view, offset, body.size());
}

}  // namespace

std::optional<std::pair<ReadBatch, ReadBatch>> splitBatch(const ReadBatch& batch) {
  const auto& frames = batch.frames();
  std::pair<ReadBatch, ReadBatch> halves;
  if (frames.size() >= 2) {
    // The cut after frame `cut - 1` whose first half is closest to half the bytes, at least one
    // frame on each side.
    std::size_t total = 0;
    for (const auto& f : frames) total += f.body.size();
    std::size_t cut = 1;
    std::size_t before = frames[0].body.size();
    while (cut + 1 < frames.size() && before + frames[cut].body.size() <= total / 2) {
      before += frames[cut].body.size();
      ++cut;
    }
    for (std::size_t i = 0; i < frames.size(); ++i) {
      addFrame(i < cut ? halves.first : halves.second, frames[i], frames[i].body);
    }
  } else {
    if (frames.empty() || frames[0].record_count < 2) return std::nullopt;
    const FrameView& f = frames[0];
    const std::uint32_t first_count = f.record_count / 2;
    RecordReader reader(f.body);
    std::uint64_t first_last_ts = f.first_ts;
    for (std::uint32_t i = 0; i < first_count; ++i) {
      const RecordView* r = reader.next();
      if (r == nullptr) return std::nullopt;
      first_last_ts = r->timestamp_ns;
    }
    const std::size_t mid = reader.offset();
    const RecordView* next = reader.next();
    if (next == nullptr) return std::nullopt;
    FrameView a = f;
    a.record_count = first_count;
    a.last_ts = first_last_ts;
    FrameView b = f;
    b.record_count = f.record_count - first_count;
    b.first_ts = next->timestamp_ns;
    addFrame(halves.first, a, f.body.subspan(0, mid));
    addFrame(halves.second, b, f.body.subspan(mid));
  }
  halves.first.seal();
  halves.second.seal();
  return halves;
}

}  // namespace cistern::transport
