// RecordSink: where inputs hand the records they capture.
//
// Capture and transport may not include buffer (docs/architecture.md), so the seam between an
// input and the ring buffer is this interface in core. buffer::LmdbRing implements it; tests use
// an in-memory fake. An input sees nothing of the buffer beyond these calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/core/record.h"
#include "cistern/core/record_batch.h"
#include "cistern/core/result.h"

namespace cistern {

// A key/value pair committed in the same transaction as the records appended with it (a file
// tail's read offset, for example), so a crash neither loses nor repeats those records.
struct StateWrite {
  std::string key;    // 1..511 bytes
  std::string value;  // may be empty
};

enum class Wait {
  kNo,   // refuse with kFull when the sink has no room now (capture threads, UDP)
  kYes,  // block until there is room or the sink closes (inputs that can wait: files)
};

// Identifies one append() call; tickets increase by one per call.
using Ticket = std::uint64_t;

class RecordSink {
 public:
  virtual ~RecordSink() = default;

  // Queues records, and state writes committed atomically with them. Any thread.
  // Errors: kFull (Wait::kNo and no room; nothing was queued), kInvalidArgument (a record failed
  // validateRecord(); the valid ones before it were queued), kClosed.
  virtual Result<Ticket> append(std::span<const RecordInput> records,
                                std::span<const StateWrite> state = {}, Wait wait = Wait::kNo) = 0;

  // The same for a batch an input collected, whose records are already encoded: the ring copies
  // them into its frames without validating and encoding them one by one. Same errors, except
  // that a batch holds only valid records. The default hands batch.records() to append().
  virtual Result<Ticket> appendBatch(RecordBatch& batch, std::span<const StateWrite> state = {},
                                     Wait wait = Wait::kNo) {
    return append(batch.records(), state, wait);
  }

  // Waits until the append that returned `ticket` is durable (committed). kTimeout or kClosed.
  virtual Status waitCommitted(Ticket ticket, std::chrono::milliseconds timeout) = 0;

  // Every committed state pair whose key starts with `prefix`. Errors: kIo, kClosed.
  virtual Result<std::vector<StateWrite>> readStatePrefix(std::string_view prefix) const = 0;
};

}  // namespace cistern
