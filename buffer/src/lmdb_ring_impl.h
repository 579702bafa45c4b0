// LmdbRing::Impl: the state shared by the ring's producers, its writer thread and its readers.
//
// Locks, never nested except in the order listed:
//   consumers_mu   the consumer table (its vector; entries are never freed before close)
//   ConsumerLive::mu  one consumer's reader-facing ack set and committed record
//   mu             the ingest queue, pending acks and consumer operations, tickets
//   stats_mu       the published RingStats snapshot
// txn_gate is a shared_mutex held shared by every read transaction and exclusively while the
// writer resizes the map (LMDB forbids mdb_env_set_mapsize with transactions open).
#pragma once

#include <lmdb.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "ack_set.h"
#include "cistern/buffer/ring.h"
#include "frame_codec.h"
#include "lmdb_util.h"
#include "records.h"

namespace cistern::buffer {

using SteadyTime = std::chrono::steady_clock::time_point;

// A read transaction together with the shared hold on txn_gate that keeps the map from being
// resized under it. The transaction is aborted before the gate is released.
struct ReadTxn {
  std::shared_lock<std::shared_mutex> gate;
  lmdb::Txn txn;
  [[nodiscard]] MDB_txn* get() const { return txn.get(); }
};

// One consumer as the readers see it.
struct ConsumerLive {
  std::string name;
  mutable std::mutex mu;
  AckSet done;             // committed done set plus acknowledgements not yet committed
  ConsumerRecord durable;  // as of the last commit (for stats)
  bool removed = false;
  std::unique_ptr<Consumer> handle;
};

// Records queued for one frame, and the state writes that must commit with them.
struct PendingFrame {
  FrameBody body;
  std::vector<StateWrite> state;
  Ticket first_ticket = 0;
  Ticket last_ticket = 0;
  std::uint64_t queued_bytes = 0;
  // Continues an append that writes state: commits in the same transaction as the frame before.
  bool joined = false;
  [[nodiscard]] bool empty() const { return body.record_count == 0 && state.empty(); }
};

struct ConsumerOp {
  enum class Kind { kCreate, kRemove };
  Kind kind = Kind::kCreate;
  std::string name;
  bool done = false;
  Status result;
  std::size_t index = 0;
};

struct AckOp {
  std::size_t consumer = 0;
  FrameId id = 0;
};

// A consumer's record inside a write transaction, plus whether it must be rewritten.
struct TxnConsumer {
  std::string name;
  ConsumerRecord rec;
  bool alive = true;
  bool dirty = false;
  bool created = false;
};

// Everything a write transaction changes, applied to the shared state only after it commits.
struct TxnState {
  RingMeta meta;
  std::vector<TxnConsumer> consumers;  // by consumer index
  std::size_t frames_committed = 0;    // from the front of the writer's work queue
  std::size_t frames_dropped = 0;      // too large for the ring (counted, never stored)
  std::uint64_t records_dropped = 0;
  FrameId first_frame = 0;
  FrameId last_frame = 0;
  std::uint64_t new_records = 0;
  std::uint64_t new_bytes = 0;
  std::uint64_t evicted_frames = 0;
  bool blocked = false;  // block policy: the next frame did not fit
  std::chrono::nanoseconds sync_duration{};
  IndexEntry oldest;
  IndexEntry newest;
  FrameId oldest_id = 0;
  FrameId newest_id = 0;
};

// Writes a transaction's pages back while LMDB is still copying the rest of them into the page
// cache, so that the disk works during the copy instead of only in the fdatasync after it. A
// thread of its own, active only while the writer is inside mdb_txn_commit; writer.cpp says why
// this keeps LMDB's ordering.
class WriteBehind {
 public:
  // `fd` is LMDB's data file; it must stay open until the destructor returns.
  explicit WriteBehind(int fd);
  ~WriteBehind();
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Around mdb_txn_commit, on the writer thread.
  void begin();
  void end();
  [[nodiscard]] int fd() const { return fd_; }

 private:
  void run();
  int fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool active_ = false;
  bool quit_ = false;
  std::thread thread_;
};

struct LmdbRing::Impl {
  explicit Impl(RingOptions o);
  ~Impl();

  // --- setup (open.cpp) ---
  Status openEnv();
  // Takes the exclusive lock on the ring's writer.lock (see lmdb_ring.cpp).
  Status lockWriter();
  void unlockWriter();
  Status loadState();
  void startWriter();

  // --- writer (writer.cpp) ---
  void writerLoop();
  bool commitReady(SteadyTime now, SteadyTime& wake) const;  // under mu
  // Compresses (with a codec) and checksums the frames in `work` that producers left unfinished.
  void finishFrames();
  void commitOnce(std::vector<AckOp>& acks, std::vector<AckOp>& corrupt,
                  std::vector<ConsumerOp*>& ops);
  Status attemptCommit(const std::vector<AckOp>& acks, const std::vector<AckOp>& corrupt,
                       const std::vector<ConsumerOp*>& ops, std::size_t frame_limit, TxnState& st);
  bool evictTxn(std::uint64_t bytes);
  // Whether a transaction may end after the first `k` frames of `work`: not inside an append
  // that writes state (its records and state commit together).
  [[nodiscard]] bool appendBoundary(std::size_t k) const;
  [[nodiscard]] std::size_t boundaryAtLeast(std::size_t k) const;
  [[nodiscard]] std::size_t boundaryAtMost(std::size_t k) const;
  Status writeBookkeeping(MDB_txn* txn, TxnState& st);
  void beginTxnState(TxnState& st);
  bool growMap();
  void evictOldest(MDB_txn* txn, TxnState& st, const IndexEntry& entry, FrameId id,
                   lmdb::Cursor& index_cursor, Status& status);
  Status deleteFrame(MDB_txn* txn, TxnState& st, FrameId id, const IndexEntry& entry);
  Status dropFrameValue(MDB_txn* txn, FrameId id, const char* what);
  Status deleteDoneByAll(MDB_txn* txn, TxnState& st);
  void publish(TxnState& st, std::vector<ConsumerOp*>& ops, std::chrono::nanoseconds took);
  // Notes where the frames just committed lie in the file and drops older ones from the page
  // cache (writer.cpp says why). Writer thread, sync batch or always.
  void recyclePages(FrameId first, FrameId last);
  [[nodiscard]] std::uint64_t accountedBytes(std::uint64_t stored) const;
  // The bound the writer keeps frames under: max_size, or less when the map is too small to hold
  // max_size plus the room LMDB needs besides the frames (see mapHeadroom).
  [[nodiscard]] std::uint64_t effectiveMaxSize() const;
  [[nodiscard]] std::string describeReaders() const;
  // Body bytes of the first `frames` frames of the work queue.
  [[nodiscard]] std::uint64_t workBytes(std::size_t frames) const;
  // How many frame bytes the next transaction may carry: commit_max_bytes, more while producers
  // that cannot wait are being refused (writer.cpp says why).
  [[nodiscard]] std::uint64_t commitBudget(SteadyTime now) const;

  // --- readers (read.cpp) ---
  // `consumer` kNoConsumer: a scan of every frame present (LmdbRing::scan).
  static constexpr std::size_t kNoConsumer = static_cast<std::size_t>(-1);
  Result<std::size_t> read(std::size_t consumer, FrameId from, Direction dir, ReadBatch& out,
                           const ReadLimits& limits, FrameId* next_pos);
  Result<ReadTxn> beginRead() const;
  void reportCorrupt(std::size_t consumer, FrameId id, const Error& why);
  // Drops a range of the map from this process's resident set (see read.cpp). Ranges outside
  // the map (a value dirty in the current write transaction lives on the heap) are ignored.
  void releaseRange(const void* p, std::size_t n) const;
  // Copies a stored frame (value `v`, in the map) out of the data file with one preadv: its
  // header into `header`, its stored body appended to `storage`. False, `storage` as it was, when
  // the value is not in the map or the read fails: read it through the map then.
  bool readStored(const MDB_val& v, std::span<std::byte, kFrameHeaderBytes> header,
                  std::vector<std::byte>& storage) const;
  // Whether [p, p + n) is inside the map (n > 0, the map located).
  bool inMap(const void* p, std::size_t n) const;
  // Releases the whole map; the writer calls it after every commit.
  void releaseMap() const;
  // Counts the folios a frame value just touched (read or deleted) maps, `last_folio` being
  // the caller's previous one, and releases the whole map once 8 MiB of them have been mapped
  // since it was last released (see read.cpp).
  void mapped(const void* p, std::size_t n, std::uintptr_t& last_folio) const;
  // Reads the map's size and address after open or a resize. LMDB reports the address only
  // for MDB_FIXEDMAP, so it is found in /proc/self/maps (releaseRange is a no-op without it).
  void locateMap() const;
  Result<RingStats> readStats() const;  // read-only mode: from the file
  // The meta record as of `txn`: nullopt for a new ring, kCorrupt when it does not parse.
  Result<std::optional<RingMeta>> readMeta(MDB_txn* txn) const;
  // The meta record's totals into `s` (the fields both stats paths share).
  void copyTotals(const RingMeta& m, RingStats& s) const;

  ConsumerLive& live(std::size_t index) const;
  Result<std::size_t> findOrCreateConsumer(std::string_view name);

  RingOptions opt;
  LmdbRing* owner = nullptr;
  std::shared_ptr<spdlog::logger> log;
  MDB_env* env = nullptr;
  int writer_lock_fd = -1;  // held (flock) while a writable ring is open
  int data_fd = -1;         // data.mdb opened read-only for reading frames (read.cpp)
  MDB_dbi dbi_frames = 0;
  MDB_dbi dbi_index = 0;
  MDB_dbi dbi_consumers = 0;
  MDB_dbi dbi_meta = 0;
  MDB_dbi dbi_state = 0;
  std::size_t page_size = 4096;
  std::size_t node_max = 2038;
  // Written under an exclusive txn_gate (or before the writer starts), read under a shared one
  // or on the writer thread.
  mutable std::atomic<std::uint64_t> map_size{0};
  mutable std::atomic<const std::byte*> map_addr{nullptr};
  // Folio bytes reads and deletes have mapped since the map was last released (read.cpp).
  mutable std::atomic<std::uint64_t> mapped_since_release{0};
  std::uintptr_t last_deleted_folio = 0;  // writer thread
  std::uint64_t map_size_limit = 0;
  mutable std::shared_mutex txn_gate;

  mutable std::mutex consumers_mu;
  std::vector<std::unique_ptr<ConsumerLive>> consumers;

  // Ingest queue and writer inbox, under mu.
  mutable std::mutex mu;
  std::condition_variable writer_cv;
  std::condition_variable space_cv;
  std::condition_variable commit_cv;
  PendingFrame open_frame;
  std::deque<PendingFrame> sealed;
  std::uint64_t queued_bytes = 0;
  std::optional<SteadyTime> oldest_pending;
  Ticket next_ticket = 0;
  Ticket committed_ticket = 0;
  // The id the next sealed frame gets: ids are given in queue order, so the writer stores frames
  // in id order (MDB_APPEND). Starts at the committed next id; ids of frames that are never
  // stored (dropped, or lost with the process) are simply not used.
  FrameId next_seal_id = 1;
  // flush(): a request counter, and the request covered by the commit in progress / last done.
  std::uint64_t flush_requested = 0;
  std::uint64_t flush_taking = 0;
  std::uint64_t flush_done = 0;
  Ticket taken_ticket = 0;  // every ticket up to this one has been moved to `work`
  SteadyTime last_attempt{};
  std::vector<AckOp> acks;
  std::vector<AckOp> corrupt;
  std::vector<ConsumerOp*> ops;
  bool closing = false;
  bool writer_done = false;
  bool blocked = false;
  std::optional<SteadyTime> close_deadline;
  std::function<void(const CommitInfo&)> listener;
  std::vector<ByteBuffer> pool;  // frame buffers to reuse
  // Seals the open frame: queues it for the writer with the next id. Producers also finish it
  // (header, checksum) when the ring has no codec. Under mu.
  void sealOpenFrame(bool finish);

  // One append's progress while it places records, under mu.
  struct Placing {
    Ticket ticket = 0;
    bool stateful = false;  // frames after the first are joined to the one before
    bool wrote = false;     // some record of this append is placed already
  };
  // Takes `need` bytes of the ingest queue for an append of `records` records, waiting with
  // Wait::kYes; returns the append's ticket. kFull (counted in refused_queue_full) or kClosed.
  Result<Ticket> admit(std::unique_lock<std::mutex>& lk, std::uint64_t need, std::size_t records,
                       Wait wait);
  // Whether `size` more bytes of records would not fit the open frame once `pending` bytes of
  // `pending_count` records not yet placed are in it (a frame takes at least one record).
  [[nodiscard]] bool overflows(std::size_t pending, std::uint32_t pending_count,
                               std::size_t size) const;
  // Seals the open frame so that the append's next record starts a new one.
  void sealForNext(const Placing& p);
  // Adds `size` bytes for `count` records with timestamps within [min_ts, max_ts] to the open
  // frame and returns where the caller writes them.
  std::byte* placeRecords(std::size_t size, std::uint32_t count, std::uint64_t min_ts,
                          std::uint64_t max_ts, Placing& p);
  // Queues `state` with the append's last frame, accounts `need` bytes and wakes the writer.
  // Unlocks `lk`.
  void finishAppend(std::unique_lock<std::mutex>& lk, std::span<const StateWrite> state,
                    std::uint64_t need, const Placing& p);

  // Writer thread only.
  RingMeta meta;
  std::deque<PendingFrame> work;  // taken from the queue, not yet committed
  std::unique_ptr<FrameEncoder> encoder;
  std::unique_ptr<WriteBehind> write_behind;  // null with sync: none
  struct FileRange {
    std::uint64_t begin;
    std::uint64_t end;
  };
  std::deque<FileRange> recent_pages;  // of the newest committed frames, oldest first
  std::uint64_t recent_bytes = 0;
  std::thread writer;
  std::uint64_t commits_since_reader_check = 0;

  // Published after each commit.
  mutable std::mutex stats_mu;
  RingStats snapshot;
  std::atomic<std::uint64_t> refused_queue_full{0};
  // When an append that could not wait was last refused for a full ingest queue (steady clock
  // ticks; 0: never).
  std::atomic<SteadyTime::rep> last_refusal{0};
  std::atomic<std::uint64_t> refused_invalid{0};
  std::atomic<std::uint64_t> dropped_map_full{0};
  std::atomic<std::uint64_t> dropped_at_close{0};
  std::atomic<std::uint64_t> corrupt_frames_seen{0};
  std::atomic<std::uint64_t> map_full_events{0};
  std::atomic<std::uint64_t> stale_readers_cleared{0};
  bool closed = false;
};

}  // namespace cistern::buffer
