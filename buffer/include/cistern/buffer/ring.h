// LmdbRing: the durable, bounded ring buffer every record passes through.
//
// Producers (capture threads, the loop thread) append records; one writer thread packs them into
// frames and commits them to LMDB in group commits. Consumers (outputs) each have a persistent
// cursor: they read frames, and acknowledge the ones their receiver confirmed. A frame is deleted
// once every consumer acknowledged it; when the ring is full, the oldest frames are evicted (or
// the writer blocks) and every consumer that had not acknowledged them counts the records lost.
//
// Threads: append(), flush() and waitCommitted() from any thread. Each Consumer is used by one
// thread at a time; different consumers may be used concurrently. stats() from any thread.
// The commit listener runs on the writer thread and must not block.
//
// See docs/architecture.md for the on-disk format and the accounting rules.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cistern/buffer/options.h"
#include "cistern/buffer/types.h"
#include "cistern/buffer/verify.h"
#include "cistern/core/frames.h"
#include "cistern/core/record.h"
#include "cistern/core/result.h"
#include "cistern/core/sink.h"

namespace cistern::buffer {

class LmdbRing;

using cistern::StateWrite;
using cistern::Ticket;
using cistern::Wait;

// What one group commit made durable (in the sync mode's sense), passed to the commit listener.
struct CommitInfo {
  FrameId first_frame = 0;  // 0 when the commit carried no frames (only acks or state)
  FrameId last_frame = 0;   // inclusive
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;              // stored bytes of the new frames
  Ticket ticket = 0;                    // every append with a ticket <= this one is committed
  std::uint64_t evicted_frames = 0;     // evicted to make room in this commit
  std::chrono::nanoseconds duration{};  // from transaction begin to commit returning (fsync incl.)
  std::chrono::nanoseconds sync_duration{};  // inside mdb_txn_commit: flushing pages and fsync
};

using cistern::Direction;
using cistern::FrameCursor;
using cistern::FrameView;
using cistern::ReadBatch;
using cistern::ReadLimits;

// Per-consumer accounting. For every consumer, at every commit:
//   assigned_records = acked_records + evicted_records + corrupt_records + pending_records
struct ConsumerStats {
  std::string name;
  FrameId ack_floor = 0;               // every frame below it is done (acked, evicted or corrupt)
  std::size_t ack_ranges = 0;          // out-of-order acknowledged ranges above the floor
  std::uint64_t assigned_records = 0;  // records in frames this consumer was due to deliver
  std::uint64_t acked_frames = 0;
  std::uint64_t acked_records = 0;
  // Dropped unsent: evicted before this consumer's acknowledgement committed. A frame it had
  // read and was still sending counts here too; its later ack is ignored.
  std::uint64_t evicted_frames = 0;
  std::uint64_t evicted_records = 0;
  std::uint64_t corrupt_frames = 0;  // failed their checksum when this consumer read them
  std::uint64_t corrupt_records = 0;
  std::uint64_t pending_frames = 0;  // in the ring and not done for this consumer
  std::uint64_t pending_records = 0;
};

struct RingStats {
  // Contents now.
  std::uint64_t frames = 0;
  std::uint64_t records = 0;
  std::uint64_t used_bytes = 0;  // page-accounted bytes of the frames, bounded by max_size
  FrameId oldest_frame = 0;      // 0 when empty
  FrameId newest_frame = 0;
  std::uint64_t oldest_ts = 0;  // first timestamp of the oldest frame (ns since the epoch)
  std::uint64_t newest_ts = 0;  // last timestamp of the newest frame
  FrameId next_frame = 0;
  // Limits and files.
  std::uint64_t max_size = 0;
  // What the writer keeps frames under: max_size, or less when an explicit map_size is too small
  // for max_size plus LMDB's own needs (read-only opens report max_size).
  std::uint64_t effective_max_size = 0;
  std::uint64_t map_size = 0;
  std::uint64_t file_bytes = 0;  // size of data.mdb on disk
  // Totals since the buffer was created (persisted).
  std::uint64_t appended_frames = 0;
  std::uint64_t appended_records = 0;
  std::uint64_t deleted_frames = 0;  // acknowledged by every consumer, then deleted
  std::uint64_t evicted_frames = 0;  // removed to make room (or after MDB_MAP_FULL)
  std::uint64_t evicted_records = 0;
  std::uint64_t commits = 0;
  // Records refused before reaching the ring (since this process opened it).
  std::uint64_t refused_queue_full = 0;   // append(Wait::kNo) found the ingest queue full
  std::uint64_t refused_invalid = 0;      // failed validateRecord()
  std::uint64_t dropped_map_full = 0;     // did not fit even in an empty map; error logged
  std::uint64_t dropped_at_close = 0;     // still queued when close() gave up (block policy)
  std::uint64_t corrupt_frames_seen = 0;  // checksum failures met by readers (this process)
  std::uint64_t map_full_events = 0;      // MDB_MAP_FULL met and handled (this process)
  std::uint64_t stale_readers_cleared = 0;
  // The ingest queue now.
  std::uint64_t queued_bytes = 0;
  bool writer_blocked = false;  // block policy: waiting for acknowledgements to make room
};

// A named consumer's cursor (an output's position in the ring). Obtained from
// LmdbRing::consumer(); owned by the ring. The FrameCursor functions are documented in
// cistern/core/frames.h; the notes here add what is particular to the ring.
class Consumer final : public FrameCursor {
 public:
  [[nodiscard]] const std::string& name() const override;

  // Errors: kIo from LMDB, kClosed after close().
  Result<std::size_t> readNext(ReadBatch& out, const ReadLimits& limits = {}) override;
  Result<std::size_t> readAt(FrameId from, Direction direction, ReadBatch& out,
                             const ReadLimits& limits = {}) override;

  // Acknowledgements become durable with the next group commit. Any thread.
  void ack(FrameId id);
  void ack(std::span<const FrameId> ids) override;

  void rewind() override;

  [[nodiscard]] FrameId oldestUnacked() const override;
  [[nodiscard]] FrameId newestFrame() const override;
  [[nodiscard]] ConsumerStats stats() const;

 private:
  friend class LmdbRing;
  Consumer(LmdbRing& ring, std::size_t index) : ring_(ring), index_(index) {}
  LmdbRing& ring_;
  std::size_t index_;
  FrameId next_read_ = 0;  // 0 = start at the oldest unacknowledged frame
};

class LmdbRing final : public RecordSink {
 public:
  // Opens (creating if needed) the ring in options.dir. Read-only mode starts no writer thread;
  // use it for inspect, verify and export, also while an agent has the ring open.
  // Errors: kIo (directory, LMDB open, disk full), kCorrupt (meta records unreadable),
  // kInvalidArgument (options out of range), kNotFound (read-only and no ring there).
  static Result<std::unique_ptr<LmdbRing>> open(const RingOptions& options);

  ~LmdbRing() override;
  LmdbRing(const LmdbRing&) = delete;
  LmdbRing& operator=(const LmdbRing&) = delete;

  // --- producers ---

  // Queues records (and state writes committed with them). Returns the call's ticket.
  // When `state` is not empty, the records and the state commit in one transaction, so after a
  // crash either both or neither are present; records of appends without state may be split
  // across group commits (each record is committed whole, exactly once).
  // Errors: kFull (Wait::kNo and the ingest queue is full; nothing was queued and the records
  // are counted in refused_queue_full), kInvalidArgument (a record failed validateRecord(); the
  // valid records before it were queued and the rest counted in refused_invalid), kClosed.
  Result<Ticket> append(std::span<const RecordInput> records,
                        std::span<const StateWrite> state = {}, Wait wait = Wait::kNo) override;

  // The same for a batch of records encoded already (RecordBatch::add validated them): they are
  // copied into frames in runs instead of one by one. Errors: kFull, kClosed.
  Result<Ticket> appendBatch(RecordBatch& batch, std::span<const StateWrite> state = {},
                             Wait wait = Wait::kNo) override;

  // Waits until the commit holding `ticket` is done. kTimeout, or kClosed if the ring closed
  // before (records then were committed or counted in dropped_at_close).
  Status waitCommitted(Ticket ticket, std::chrono::milliseconds timeout) override;

  // Commits everything appended so far without waiting for the group-commit window, then waits.
  Status flush(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Called on the writer thread after every commit, before waitCommitted()/flush() callers
  // waiting for that commit wake up. Set before the first append; must not block.
  void setCommitListener(std::function<void(const CommitInfo&)> listener);

  // --- consumers ---

  // The named consumer, created (persistently) when new, starting at the oldest frame present.
  // Names are 1..255 bytes. Errors: kInvalidArgument (bad name), kIo, kClosed; in read-only
  // mode kNotFound when the consumer does not exist.
  Result<Consumer*> consumer(std::string_view name);
  // Deletes a consumer and its cursor; frames every remaining consumer is done with are deleted.
  Status removeConsumer(std::string_view name);
  [[nodiscard]] std::vector<std::string> consumerNames() const;
  [[nodiscard]] std::vector<ConsumerStats> consumerStats() const;

  // Fills `out` with the frames present from `from` (inclusive) in id order, whatever the
  // consumers acknowledged, without moving any cursor (export, inspection). Frames failing their
  // checksum are skipped and counted in corrupt_frames_seen. `next`, when not null, receives the
  // id to continue from. Returns the number of frames; 0 at the end. Errors: kIo, kClosed.
  Result<std::size_t> scan(FrameId from, ReadBatch& out, const ReadLimits& limits = {},
                           FrameId* next = nullptr) const;

  // --- state store ---

  // The value last committed for `key`, or nullopt.
  Result<std::optional<std::string>> readState(std::string_view key) const;
  // Every committed key/value pair whose key starts with `prefix`.
  Result<std::vector<StateWrite>> readStatePrefix(std::string_view prefix) const override;

  // --- observation ---

  [[nodiscard]] RingStats stats() const;

  // Checks every frame (header, checksum, records, index entry) and the ring's invariants (ids
  // strictly increasing and below the next id, totals in the meta record, every consumer's
  // accounting). Frames are read in short transactions, so it may run beside a writer; the
  // invariants are checked on one consistent snapshot of the index. Errors: kIo from LMDB.
  [[nodiscard]] Result<VerifyReport> verify() const;
  [[nodiscard]] const RingOptions& options() const;
  [[nodiscard]] FrameId newestFrame() const;

  // Commits what is queued (block policy: waits up to `timeout` for room, then drops and counts
  // the rest), stops the writer and closes LMDB. Consumers are invalid afterwards. Idempotent.
  Status close(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  struct Impl;

 private:
  friend class Consumer;
  explicit LmdbRing(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cistern::buffer
