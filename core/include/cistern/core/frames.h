// Frames as outputs read them: the seam between the ring buffer and the transport module.
//
// A frame is a group of records committed together in the buffer, identified by a frame id.
// Outputs read frames through a FrameCursor (their own persistent position in the buffer), send
// the records, and acknowledge frames once the receiver confirmed them. buffer::Consumer
// implements FrameCursor; transport sees nothing of the buffer beyond this header, and its tests
// use an in-memory fake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cistern/core/result.h"

namespace cistern {

// Frame ids are strictly increasing across restarts and never reused; 0 is never a valid id.
using FrameId = std::uint64_t;

// One frame as returned by a read: its records, decoded, in the ReadBatch's storage.
struct FrameView {
  FrameId id = 0;
  std::uint32_t record_count = 0;
  std::uint64_t first_ts = 0;  // ns since the epoch
  std::uint64_t last_ts = 0;
  std::uint32_t stored_bytes = 0;   // size in the buffer (header + possibly compressed body)
  std::span<const std::byte> body;  // records; iterate with cistern::RecordReader
};

// Holds the frames of one read. Reuse one batch per reader to keep allocations flat. Moving a
// batch keeps its frames' bodies valid (they point into heap storage that moves with it).
class ReadBatch {
 public:
  [[nodiscard]] const std::vector<FrameView>& frames() const { return frames_; }
  [[nodiscard]] bool empty() const { return frames_.empty(); }
  [[nodiscard]] std::size_t size() const { return frames_.size(); }
  // Records in all frames of the batch.
  [[nodiscard]] std::uint64_t records() const;
  // Decoded body bytes of all frames.
  [[nodiscard]] std::size_t bodyBytes() const { return storage_.size(); }
  // Frames skipped by this read because they failed their checksum (already counted and
  // reported by the cursor; never handed out).
  [[nodiscard]] std::uint64_t corruptSkipped() const { return corrupt_skipped_; }
  void clear();

  // --- for FrameCursor implementations filling the batch ---

  // Storage that frame bodies are appended to; a frame's body is [offset, offset + length).
  std::vector<std::byte>& storage() { return storage_; }
  // Adds a frame whose body was appended to storage() at `offset`; view.body is ignored.
  void addFrame(const FrameView& view, std::size_t offset, std::size_t length);
  void addCorruptSkipped() { ++corrupt_skipped_; }
  // Points every frame's body into storage(); call after the last addFrame().
  void seal();

 private:
  std::vector<FrameView> frames_;
  std::vector<std::pair<std::size_t, std::size_t>> spans_;  // body offset and length in storage_
  std::vector<std::byte> storage_;
  std::uint64_t corrupt_skipped_ = 0;
};

struct ReadLimits {
  std::size_t max_frames = 64;
  std::size_t max_bytes = 4U << 20U;  // decoded body bytes; at least one frame is returned
  // Forward reads stop before this frame id (0: no bound), so a reader can keep to a range.
  FrameId end = 0;
};

enum class Direction { kForward, kBackward };

// One output's persistent cursor in the buffer. Used by one thread at a time.
class FrameCursor {
 public:
  virtual ~FrameCursor() = default;

  // The cursor's (the output's) name.
  [[nodiscard]] virtual const std::string& name() const = 0;

  // Fills `out` (cleared first) with the frames after the last one this cursor returned, in id
  // order, skipping frames already done. Starts at the oldest unacknowledged frame after open
  // and after rewind(). Returns the number of frames; 0 when caught up. Errors: kIo, kClosed.
  virtual Result<std::size_t> readNext(ReadBatch& out, const ReadLimits& limits) = 0;

  // Fills `out` with frames from `from` (inclusive) in `direction`, skipping done frames, without
  // moving readNext()'s position. kBackward from newestFrame() reads the newest first.
  virtual Result<std::size_t> readAt(FrameId from, Direction direction, ReadBatch& out,
                                     const ReadLimits& limits) = 0;

  // Marks frames acknowledged (the receiver confirmed them). Readers skip them at once; they
  // become durable with the buffer's next commit (a crash before it hands them out again).
  // Unknown, already done or evicted ids are ignored. Never blocks on the buffer's writer.
  virtual void ack(std::span<const FrameId> ids) = 0;

  // Forgets readNext()'s position: the next call starts at the oldest unacknowledged frame.
  virtual void rewind() = 0;

  // The oldest frame id not done for this cursor (newestFrame() + 1 when caught up).
  [[nodiscard]] virtual FrameId oldestUnacked() const = 0;
  // The newest frame committed in the buffer (0 when it never held one).
  [[nodiscard]] virtual FrameId newestFrame() const = 0;
};

}  // namespace cistern
