// The ring's single writer thread: group commit, eviction, acknowledgements, MAP_FULL recovery.
//
// Every write transaction is computed on a copy of the committed state (TxnState) and published
// only after mdb_txn_commit succeeds, so an aborted attempt (MDB_MAP_FULL, an I/O error) leaves
// nothing half-applied and can simply be retried.
#include <fcntl.h>
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "cistern/core/units.h"
#include "lmdb_ring_impl.h"

namespace cistern::buffer {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kBlockedRetry{250};
constexpr milliseconds kIoRetryMin{50};
constexpr milliseconds kIoRetryMax{2000};
constexpr std::size_t kPoolMax = 8;
constexpr std::uint64_t kReaderCheckEvery = 256;
// How often write-behind hands newly copied pages to the disk: LMDB copies 0.5-1 MB into the
// page cache in that time here; much shorter periods cost CPU for no gain (measured).
constexpr std::chrono::microseconds kWriteBehindPeriod{200};
// Smaller transactions (acknowledgements, a few small frames) are not worth waking a thread for.
constexpr std::uint64_t kWriteBehindMinBytes = 512U << 10U;
// How many commits' worth (commit_max_bytes each) of the newest frames stay in the page cache.
constexpr std::uint64_t kRecentPageCommits = 8;

bool isFull(const Status& s) { return !s && s.error().code == ErrorCode::kFull; }

Status putOrFail(MDB_txn* txn, MDB_dbi dbi, MDB_val& k, MDB_val& v, unsigned flags,
                 const char* what) {
  const int rc = mdb_put(txn, dbi, &k, &v, flags);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, what));
  return ok();
}

Status delOrFail(MDB_txn* txn, MDB_dbi dbi, FrameId id, const char* what) {
  lmdb::FrameKey key(id);
  MDB_val k = key.val();
  const int rc = mdb_del(txn, dbi, &k, nullptr);
  if (rc != 0 && rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, what));
  return ok();
}

bool allDone(const TxnState& st, FrameId id) {
  bool any = false;
  for (const auto& c : st.consumers) {
    if (!c.alive) continue;
    any = true;
    if (!c.rec.done.contains(id)) return false;
  }
  return any;
}

}  // namespace

// Write-behind. mdb_txn_commit copies the transaction's dirty pages into the page cache with
// writev and only then calls fdatasync, so the disk idles during the copy and the CPU during the
// flush: the two add up. While a commit runs, this thread asks the kernel every
// kWriteBehindPeriod to start writing back whatever is dirty (sync_file_range with
// SYNC_FILE_RANGE_WRITE, which starts I/O and waits for nothing), so the first pages are on their
// way to the disk while LMDB still copies the last ones, and the fdatasync finds little left.
//
// This changes when pages reach the disk, never what reaches it or the order LMDB relies on. The
// kernel may write any dirty page back at any moment anyway (background writeback, memory
// pressure), so LMDB's power-loss safety cannot and does not depend on pages staying in memory:
// it rests on (1) the meta page of a transaction being written only after fdatasync returned for
// its data pages, and (2) pages of the two newest snapshots never being overwritten. Both are
// untouched: the meta page of transaction N is written after its fdatasync returns, so no
// write-behind can send it to the disk before the data it points to, and writeback only
// writes what LMDB already wrote into the page cache. With sync: none nothing syncs and the ring
// keeps no such thread.
WriteBehind::WriteBehind(int fd) : fd_(fd) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cistern-wbehind");
    run();
  });
}

WriteBehind::~WriteBehind() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void WriteBehind::begin() {
  {
    std::lock_guard lk(mu_);
    active_ = true;
  }
  cv_.notify_one();
}

// Not notified: the thread sees it at its next period and goes back to sleep.
void WriteBehind::end() {
  std::lock_guard lk(mu_);
  active_ = false;
}

void WriteBehind::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return active_ || quit_; });
    // The first period lets LMDB write something; then every period hands over what it wrote.
    while (!cv_.wait_for(lk, kWriteBehindPeriod, [this] { return !active_ || quit_; })) {
      lk.unlock();
      // A hint only: an error here (EIO, a filesystem without support) is LMDB's fdatasync's
      // to report, so it is ignored.
      (void)::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
      lk.lock();
    }
    if (quit_) return;
  }
}

// Page-cache recycling. On a virtual machine whose host takes back the guest's free memory (a
// balloon with free page reporting, as on the VMs the figures in docs/performance.md come from),
// the first write into a page-cache page the guest has not used lately costs a fault on the host:
// dd into a fresh file ran at 0.9 GB/s there, and at 4.8 GB/s into pages freed a moment before.
// A growing ring writes only such pages, and LMDB's writev copying into them was two thirds of
// the writer's time. So once a commit is durable, the pages of the frames committed
// kRecentPageCommits commits' worth of bytes earlier are dropped from the page cache
// (POSIX_FADV_DONTNEED), and the next commits' pages come from memory just freed: the same
// test with 4 MiB writes and an fdatasync each spent 0.5 s instead of 2.4-3.6 s in write().
//
// Only clean pages are dropped (the kernel leaves dirty, mapped or locked ones alone), and a
// commit's frames are clean once its fdatasync returned, so no data is at stake: a reader that
// wants a dropped frame reads it from the disk. The newest frames stay cached for readers that
// follow the writer closely (the live lane). On machines without such a balloon this costs a
// system call per commit and changes little.
void LmdbRing::Impl::recyclePages(FrameId first, FrameId last) {
  constexpr std::uint64_t kPage = 4096;
  const std::byte* base = map_addr.load();
  const std::uint64_t size = map_size.load();
  if (base == nullptr || first == 0 || last < first) return;
  {
    auto txn = beginRead();
    if (!txn) return;
    MDB_cursor* raw = nullptr;
    if (mdb_cursor_open(txn->get(), dbi_frames, &raw) != 0) return;
    lmdb::Cursor cur(raw);
    lmdb::FrameKey key(first);
    MDB_val k = key.val();
    MDB_val v;
    for (int rc = mdb_cursor_get(raw, &k, &v, MDB_SET_RANGE); rc == 0 && lmdb::frameIdOf(k) <= last;
         rc = mdb_cursor_get(raw, &k, &v, MDB_NEXT)) {
      const auto* p = static_cast<const std::byte*>(v.mv_data);
      if (p < base || p + v.mv_size > base + size) continue;
      const auto at = static_cast<std::uint64_t>(p - base);
      const FileRange r{at & ~(kPage - 1), (at + v.mv_size + kPage - 1) & ~(kPage - 1)};
      if (!recent_pages.empty() && recent_pages.back().end == r.begin) {
        recent_pages.back().end = r.end;  // a growing file: one range per commit
      } else {
        recent_pages.push_back(r);
      }
      recent_bytes += r.end - r.begin;
    }
  }
  // The lookups mapped each frame's first page, and mapped pages are not dropped.
  releaseMap();
  const std::uint64_t keep = kRecentPageCommits * opt.commit_max_bytes;
  while (recent_bytes > keep && !recent_pages.empty()) {
    const FileRange r = recent_pages.front();
    recent_pages.pop_front();
    recent_bytes -= r.end - r.begin;
    // Advice only: an error leaves the pages cached, which costs speed, not data.
    (void)::posix_fadvise(write_behind->fd(), static_cast<off_t>(r.begin),
                          static_cast<off_t>(r.end - r.begin), POSIX_FADV_DONTNEED);
  }
}

// Copies the committed state into `st`, which a write transaction then changes.
void LmdbRing::Impl::beginTxnState(TxnState& st) {
  st = TxnState{};
  st.meta = meta;
  std::lock_guard lk(consumers_mu);
  for (const auto& c : consumers) {
    st.consumers.push_back(TxnConsumer{c->name, c->durable, !c->removed, false, false});
  }
}

// Writes the meta record and every consumer record the transaction changed.
Status LmdbRing::Impl::writeBookkeeping(MDB_txn* txn, TxnState& st) {
  ++st.meta.commits;
  st.meta.max_size = opt.max_size;
  const auto bytes = st.meta.serialize();
  MDB_val k = lmdb::val(kMetaKey.data(), kMetaKey.size());
  MDB_val v = lmdb::val(bytes.data(), bytes.size());
  if (auto s = putOrFail(txn, dbi_meta, k, v, 0, "storing the meta record"); !s) return s;
  for (const auto& c : st.consumers) {
    if (!c.alive || !c.dirty) continue;
    const auto rec = c.rec.serialize();
    MDB_val ck = lmdb::val(c.name.data(), c.name.size());
    MDB_val cv = lmdb::val(rec.data(), rec.size());
    if (auto s = putOrFail(txn, dbi_consumers, ck, cv, 0, "storing a consumer"); !s) return s;
  }
  return ok();
}

// "pid 123 at txn 45 (latest 52)" for each open read transaction: a reader that holds an old
// snapshot pins every page freed since, which is what fills a map that eviction cannot empty.
std::string LmdbRing::Impl::describeReaders() const {
  std::string table;
  mdb_reader_list(
      env,
      [](const char* msg, void* ctx) -> int {
        static_cast<std::string*>(ctx)->append(msg);
        return 0;
      },
      &table);
  MDB_envinfo info{};
  mdb_env_info(env, &info);
  std::string out;
  std::size_t pos = table.find('\n');  // skip the header line
  while (pos != std::string::npos && pos + 1 < table.size()) {
    const std::size_t end = table.find('\n', pos + 1);
    unsigned long long pid = 0;
    unsigned long long txn = 0;
    const std::string line = table.substr(pos + 1, end - pos - 1);
    if (std::sscanf(line.c_str(), "%llu %*s %llu", &pid, &txn) == 2) {
      if (!out.empty()) out += ", ";
      out += fmt::format("pid {} at txn {}", pid, txn);
    }
    pos = end;
  }
  return out.empty() ? "none" : fmt::format("{} (latest txn {})", out, info.me_last_txnid);
}

std::uint64_t LmdbRing::Impl::effectiveMaxSize() const {
  const std::uint64_t map = map_size.load();
  const std::uint64_t headroom = mapHeadroom(map, opt.commit_max_bytes);
  return std::min(opt.max_size, map > 2 * headroom ? map - headroom : map / 2);
}

// A producer that cannot wait (live capture, syslog over UDP) loses what the ingest queue refuses.
// Each commit pays a fixed cost, its fdatasync above all, so larger transactions let the writer
// store more bytes per second: 16 MiB commits instead of 4 MiB lost a half to a fifth as many
// 1514-byte frames at 500,000 frames/s (bench/live_capture.sh). While such refusals are recent,
// a transaction may therefore carry up to kOverloadCommits times commit_max_bytes, within the
// map's slack. The cost, as much more memory for the transaction's dirty pages, is paid only
// while data is being lost; producers that wait (file inputs, the buffer benchmark) never
// trigger it.
constexpr std::uint64_t kOverloadCommits = 4;
constexpr std::chrono::seconds kOverloadHold{1};

std::uint64_t LmdbRing::Impl::commitBudget(SteadyTime now) const {
  const SteadyTime::rep refused = last_refusal.load();
  if (refused == 0 || now - SteadyTime(SteadyTime::duration(refused)) > kOverloadHold) {
    return opt.commit_max_bytes;
  }
  const std::uint64_t slack = std::max(opt.commit_max_bytes, map_size.load() / 16);
  return std::min(kOverloadCommits * opt.commit_max_bytes, slack);
}

std::uint64_t LmdbRing::Impl::workBytes(std::size_t frames) const {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < frames && i < work.size(); ++i) n += work[i].body.bytes.size();
  return n;
}

// Decides under `mu` whether the writer commits now; otherwise sets `wake` to when to look again.
bool LmdbRing::Impl::commitReady(SteadyTime now, SteadyTime& wake) const {
  const bool queued = !sealed.empty() || !open_frame.empty();
  const bool inbox = !acks.empty() || !corrupt.empty();
  if (!ops.empty()) return true;
  if (closing) {
    if (queued || inbox) return true;
    if (work.empty()) return false;
    if (close_deadline && now >= *close_deadline) return true;
  }
  if (!queued && !inbox && work.empty()) return false;
  if (blocked) {
    // Only acknowledgements or removals make room; retry now and then all the same.
    if (inbox || now >= last_attempt + kBlockedRetry) return true;
    wake = std::min(wake, last_attempt + kBlockedRetry);
    return false;
  }
  if (!work.empty()) return true;  // the rest of a batch larger than one transaction
  if (flush_requested > flush_done) return true;
  if (opt.sync == SyncMode::kAlways && (queued || inbox)) return true;
  std::uint64_t pending = 0;
  for (const auto& f : sealed) pending += f.body.bytes.size();
  if (pending >= opt.commit_max_bytes / 4) return true;
  if (oldest_pending) {
    const SteadyTime due = *oldest_pending + opt.commit_interval;
    if (now >= due) return true;
    wake = std::min(wake, due);
  }
  return false;
}

void LmdbRing::Impl::writerLoop() {
  std::unique_lock lk(mu);
  for (;;) {
    const SteadyTime now = steady_clock::now();
    SteadyTime wake = now + std::chrono::seconds(1);
    if (!commitReady(now, wake)) {
      const bool idle = sealed.empty() && open_frame.empty() && acks.empty() && corrupt.empty() &&
                        ops.empty() && work.empty();
      if (idle && flush_requested > flush_done) {
        // Nothing to commit: everything appended and acknowledged before the flush is durable.
        flush_done = flush_requested;
        commit_cv.notify_all();
        continue;
      }
      if (closing && idle) break;
      writer_cv.wait_until(lk, wake);
      continue;
    }
    // Finished below, outside the lock, like frames of a ring with a codec.
    if (!open_frame.empty()) sealOpenFrame(false);
    while (!sealed.empty()) {
      work.push_back(std::move(sealed.front()));
      sealed.pop_front();
    }
    oldest_pending.reset();
    taken_ticket = next_ticket;
    flush_taking = flush_requested;
    last_attempt = now;
    std::vector<AckOp> my_acks;
    std::vector<AckOp> my_corrupt;
    std::vector<ConsumerOp*> my_ops;
    my_acks.swap(acks);
    my_corrupt.swap(corrupt);
    my_ops.swap(ops);
    const bool drop_now = closing && close_deadline && steady_clock::now() >= *close_deadline;
    lk.unlock();
    if (drop_now && blocked) {
      // Closing with the ring full under the block policy: what is left cannot be stored.
      std::uint64_t records = 0;
      for (auto& f : work) {
        records += f.body.record_count;
        f.body = FrameBody{};
      }
      dropped_at_close += records;
      if (records > 0) {
        log->error("buffer closing while full (block policy): dropped records={}", records);
      }
    }
    commitOnce(my_acks, my_corrupt, my_ops);
    lk.lock();
  }
  writer_done = true;
  lk.unlock();
  commit_cv.notify_all();
  space_cv.notify_all();
}

bool LmdbRing::Impl::appendBoundary(std::size_t k) const {
  return k == 0 || k >= work.size() || !work[k].joined;
}

std::size_t LmdbRing::Impl::boundaryAtLeast(std::size_t k) const {
  while (!appendBoundary(k)) ++k;
  return std::min(k, work.size());
}

std::size_t LmdbRing::Impl::boundaryAtMost(std::size_t k) const {
  while (k > 0 && !appendBoundary(k)) --k;
  return k;
}

void LmdbRing::Impl::finishFrames() {
  for (PendingFrame& f : work) {
    if (f.body.record_count == 0 || f.body.finished) continue;
    if (auto s = encoder->finish(f.body); !s) {
      dropped_map_full += f.body.record_count;
      log->error("buffer frame of {} records dropped: {}", f.body.record_count, s.error().message);
      f.body = FrameBody{};
    }
  }
}

void LmdbRing::Impl::commitOnce(std::vector<AckOp>& my_acks, std::vector<AckOp>& my_corrupt,
                                std::vector<ConsumerOp*>& my_ops) {
  // Compression and checksums of the frames producers did not finish need no transaction: done
  // before taking one, and once however often the transaction is retried.
  finishFrames();
  // One transaction carries about commit_max_bytes of frames and never ends inside an append
  // that writes state: such an append's records and state commit together. The writer loop
  // commits what is left right after.
  const std::uint64_t budget = commitBudget(steady_clock::now());
  std::size_t frame_limit = 0;
  for (std::uint64_t bytes = 0; frame_limit < work.size(); ++frame_limit) {
    bytes += work[frame_limit].body.bytes.size();
    if (frame_limit > 0 && bytes > budget) break;
  }
  frame_limit = boundaryAtLeast(frame_limit);
  // MDB_MAP_FULL recovery, cheapest first, each step with its own budget. A full map while the
  // ring is below max_size means fragmentation or pages pinned by a reader, so evicting unread
  // frames comes only after a smaller transaction, a short wait and a larger map did not help.
  int waits = 0;
  int grows = 0;
  int evictions = 0;
  bool held_for_room = false;  // block policy after MAP_FULL: frames wait for acknowledgements
  milliseconds io_backoff = kIoRetryMin;
  for (;;) {
    TxnState st;
    const auto t0 = steady_clock::now();
    const Status s = attemptCommit(my_acks, my_corrupt, my_ops, frame_limit, st);
    if (s) {
      if (held_for_room) st.blocked = true;
      publish(st, my_ops, steady_clock::now() - t0);
      return;
    }
    if (isFull(s)) {
      const std::uint64_t events = ++map_full_events;
      if (events <= 10 || events % 1000 == 0) {
        log->warn("buffer map full, recovering: {} (event {}, used={}, map_size={}, readers: {})",
                  s.error().message, events, formatSize(meta.used_bytes),
                  formatSize(map_size.load()), describeReaders());
      }
      const std::size_t half = std::max(boundaryAtMost(frame_limit / 2), boundaryAtLeast(1));
      if (half < frame_limit) {
        frame_limit = half;  // a smaller transaction needs fewer fresh pages
        continue;
      }
      if (waits < 2) {
        // Readers are short: once the oldest one ends, the pages it pinned become reusable.
        std::this_thread::sleep_for(milliseconds(5 << (2 * waits)));
        ++waits;
        continue;
      }
      if (grows < 8 && growMap()) {
        ++grows;
        continue;
      }
      if (opt.when_full == FullPolicy::kDropOldest && meta.frames > 0 && evictions < 8) {
        // Pages freed by a transaction are reusable only by later ones: evict in a transaction
        // of its own, then retry.
        const std::uint64_t target = std::max<std::uint64_t>(
            workBytes(frame_limit) + opt.commit_max_bytes, opt.max_size / 16);
        ++evictions;
        if (evictTxn(target)) continue;
      }
      if (opt.when_full == FullPolicy::kBlock && meta.frames > 0 && frame_limit > 0) {
        frame_limit = 0;  // commit acknowledgements only; frames wait for room
        held_for_room = true;
        continue;
      }
      auto victim = std::find_if(work.begin(), work.end(),
                                 [](const PendingFrame& f) { return f.body.record_count > 0; });
      if (frame_limit > 0 && victim != work.end()) {
        // Not even an empty ring in the largest map can take the oldest pending frame: drop its
        // records, counted (the state written with them still commits).
        PendingFrame& f = *victim;
        dropped_map_full += f.body.record_count;
        log->error(
            "buffer map full with nothing left to evict: dropped a frame of {} records "
            "({}); raise buffer.map_size",
            f.body.record_count, formatSize(f.body.bytes.size()));
        f.body = FrameBody{};
        continue;
      }
    }
    // An I/O error or a MAP_FULL the ladder did not resolve: keep everything, retry with
    // backoff, and give the ladder its budgets again.
    log->error("buffer commit failed, retrying in {}: {}", formatDuration(io_backoff),
               s.error().message);
    waits = grows = evictions = 0;
    {
      std::unique_lock lk(mu);
      if (closing && close_deadline && steady_clock::now() >= *close_deadline) {
        std::uint64_t records = 0;
        for (const auto& f : work) records += f.body.record_count;
        dropped_at_close += records;
        work.clear();
        for (ConsumerOp* op : my_ops) {
          op->result = tl::unexpected(s.error());
          op->done = true;
        }
        lk.unlock();
        commit_cv.notify_all();
        return;
      }
      writer_cv.wait_for(lk, io_backoff);
    }
    io_backoff = std::min(io_backoff * 2, kIoRetryMax);
  }
}

Status LmdbRing::Impl::attemptCommit(const std::vector<AckOp>& my_acks,
                                     const std::vector<AckOp>& my_corrupt,
                                     const std::vector<ConsumerOp*>& my_ops,
                                     std::size_t frame_limit, TxnState& st) {
  beginTxnState(st);
  MDB_txn* raw = nullptr;
  int rc = mdb_txn_begin(env, nullptr, 0, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "beginning a write transaction"));
  lmdb::Txn txn(raw);
  MDB_cursor* icur_raw = nullptr;
  rc = mdb_cursor_open(txn.get(), dbi_index, &icur_raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening an index cursor"));
  lmdb::Cursor icur(icur_raw);

  auto firstFrame = [&](FrameId& id, IndexEntry& entry) -> Result<bool> {
    MDB_val k;
    MDB_val v;
    const int r = mdb_cursor_get(icur.get(), &k, &v, MDB_FIRST);
    if (r == MDB_NOTFOUND) return false;
    if (r != 0) return tl::unexpected(lmdb::error(r, "reading the oldest index entry"));
    auto e = IndexEntry::deserialize(lmdb::span(v));
    if (!e) return tl::unexpected(e.error());
    id = lmdb::frameIdOf(k);
    entry = *e;
    return true;
  };
  auto lookup = [&](FrameId id, IndexEntry& entry) -> Result<bool> {
    lmdb::FrameKey key(id);
    MDB_val k = key.val();
    MDB_val v;
    const int r = mdb_get(txn.get(), dbi_index, &k, &v);
    if (r == MDB_NOTFOUND) return false;
    if (r != 0) return tl::unexpected(lmdb::error(r, "reading an index entry"));
    auto e = IndexEntry::deserialize(lmdb::span(v));
    if (!e) return tl::unexpected(e.error());
    entry = *e;
    return true;
  };

  // 1. Consumer creation and removal.
  std::vector<Status> op_results;
  for (ConsumerOp* op : my_ops) {
    auto it = std::find_if(st.consumers.begin(), st.consumers.end(),
                           [&](const TxnConsumer& c) { return c.alive && c.name == op->name; });
    if (op->kind == ConsumerOp::Kind::kCreate) {
      if (it != st.consumers.end()) {
        op->index = static_cast<std::size_t>(it - st.consumers.begin());
        continue;
      }
      FrameId oldest = st.meta.next_frame;
      IndexEntry e;
      auto found = firstFrame(oldest, e);
      if (!found) return tl::unexpected(found.error());
      if (!*found) oldest = st.meta.next_frame;
      TxnConsumer c;
      c.name = op->name;
      c.rec.done = AckSet(oldest);
      c.rec.baseline_appended_records = st.meta.appended_records;
      c.rec.baseline_ring_records = st.meta.records;
      c.rec.created_ns =
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
      c.dirty = true;
      c.created = true;
      op->index = st.consumers.size();
      st.consumers.push_back(std::move(c));
    } else {
      if (it == st.consumers.end()) {
        op->result = fail(ErrorCode::kNotFound, "no consumer named '" + op->name + "'");
        continue;
      }
      it->alive = false;
      MDB_val k = lmdb::val(it->name.data(), it->name.size());
      rc = mdb_del(txn.get(), dbi_consumers, &k, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) {
        return tl::unexpected(lmdb::error(rc, "deleting a consumer"));
      }
      if (auto s = deleteDoneByAll(txn.get(), st); !s) return s;
    }
  }

  // 2. Acknowledgements and corrupt-frame reports.
  auto markDone = [&](const AckOp& a, bool is_corrupt) -> Status {
    if (a.consumer >= st.consumers.size() || !st.consumers[a.consumer].alive) return ok();
    TxnConsumer& c = st.consumers[a.consumer];
    if (c.rec.done.contains(a.id)) return ok();
    IndexEntry e;
    auto found = lookup(a.id, e);
    if (!found) return tl::unexpected(found.error());
    if (!*found) return ok();  // evicted or deleted meanwhile: already done for everyone
    c.rec.done.insert(a.id);
    c.dirty = true;
    if (is_corrupt) {
      ++c.rec.corrupt_frames;
      c.rec.corrupt_records += e.record_count;
    } else {
      ++c.rec.acked_frames;
      c.rec.acked_records += e.record_count;
    }
    ++c.rec.done_in_ring_frames;
    c.rec.done_in_ring_records += e.record_count;
    if (allDone(st, a.id)) return deleteFrame(txn.get(), st, a.id, e);
    return ok();
  };
  for (const AckOp& a : my_acks) {
    if (auto s = markDone(a, false); !s) return s;
  }
  for (const AckOp& a : my_corrupt) {
    if (auto s = markDone(a, true); !s) return s;
  }

  // 3. New frames, evicting the oldest to make room.
  MDB_cursor* fcur_raw = nullptr;
  rc = mdb_cursor_open(txn.get(), dbi_frames, &fcur_raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening a frame cursor"));
  lmdb::Cursor fcur(fcur_raw);
  Status status = ok();
  const std::size_t n = std::min(frame_limit, work.size());
  const std::uint64_t bound = effectiveMaxSize();
  bool drop_group = false;  // block policy: this append can never fit, even in an empty ring
  for (std::size_t i = 0; i < n && status; ++i) {
    PendingFrame& pf = work[i];
    if (opt.when_full == FullPolicy::kBlock && appendBoundary(i)) {
      // A stateful append must fit whole, or none of it is committed. The raw size bounds the
      // stored size (a frame is stored raw when compression does not pay).
      std::uint64_t group = 0;
      for (std::size_t j = i; j < boundaryAtLeast(i + 1); ++j) {
        if (work[j].body.record_count > 0) {
          group += accountedBytes(work[j].body.bytes.size());
        }
      }
      drop_group = false;
      if (st.meta.used_bytes + group > bound) {
        if (st.meta.frames > 0) {
          st.blocked = true;
          break;
        }
        drop_group = true;
      }
    }
    if (drop_group && pf.body.record_count > 0) {
      ++st.frames_dropped;
      st.records_dropped += pf.body.record_count;
      log->error(
          "buffer append of {} records in a frame is larger than the ring's size {} "
          "(block policy): dropped",
          pf.body.record_count, formatSize(bound));
    } else if (pf.body.record_count > 0) {
      const FrameId id = pf.body.id;
      const std::size_t size = pf.body.bytes.size();
      const std::uint64_t need = accountedBytes(size);
      if (need > bound) {
        // Larger than the whole ring: it can never be stored.
        ++st.frames_dropped;
        st.records_dropped += pf.body.record_count;
        log->error("buffer frame of {} records ({}) exceeds the ring's size {}: dropped",
                   pf.body.record_count, formatSize(size), formatSize(bound));
      } else {
        // Under the block policy the group check above made room certain.
        while (status && opt.when_full == FullPolicy::kDropOldest &&
               st.meta.used_bytes + need > bound) {
          FrameId oldest = 0;
          IndexEntry e;
          auto found = firstFrame(oldest, e);
          if (!found) return tl::unexpected(found.error());
          if (!*found) break;
          evictOldest(txn.get(), st, e, oldest, icur, status);
        }
        if (!status) break;
        lmdb::FrameKey key(id);
        MDB_val k = key.val();
        MDB_val v{size, nullptr};
        rc = mdb_cursor_put(fcur.get(), &k, &v, MDB_RESERVE | MDB_APPEND);
        if (rc != 0) return tl::unexpected(lmdb::error(rc, "storing a frame"));
        // The frame was finished before the transaction: this copy is all it costs in it.
        std::memcpy(v.mv_data, pf.body.bytes.data(), size);
        IndexEntry entry{pf.body.record_count, static_cast<std::uint32_t>(size), pf.body.first_ts,
                         pf.body.last_ts};
        std::byte ib[IndexEntry::kSize];
        entry.serialize(ib);
        MDB_val iv = lmdb::val(ib, sizeof ib);
        rc = mdb_cursor_put(icur.get(), &k, &iv, MDB_APPEND);
        if (rc != 0) return tl::unexpected(lmdb::error(rc, "storing an index entry"));
        st.meta.next_frame = id + 1;
        ++st.meta.frames;
        st.meta.records += pf.body.record_count;
        st.meta.used_bytes += need;
        ++st.meta.appended_frames;
        st.meta.appended_records += pf.body.record_count;
        if (st.first_frame == 0) st.first_frame = id;
        st.last_frame = id;
        st.new_records += pf.body.record_count;
        st.new_bytes += size;
      }
    }
    for (const StateWrite& w : pf.state) {
      MDB_val k = lmdb::val(w.key.data(), w.key.size());
      MDB_val v = lmdb::val(w.value.data(), w.value.size());
      if (auto s = putOrFail(txn.get(), dbi_state, k, v, 0, "storing state"); !s) return s;
    }
    ++st.frames_committed;
  }
  if (!status) return status;

  // 4. Floors follow the oldest frame so ack sets stay small; then the bookkeeping records.
  FrameId oldest = st.meta.next_frame;
  IndexEntry oldest_entry;
  auto found = firstFrame(oldest, oldest_entry);
  if (!found) return tl::unexpected(found.error());
  if (*found) {
    st.oldest_id = oldest;
    st.oldest = oldest_entry;
    MDB_val k;
    MDB_val v;
    if (mdb_cursor_get(icur.get(), &k, &v, MDB_LAST) == 0) {
      st.newest_id = lmdb::frameIdOf(k);
      if (auto e = IndexEntry::deserialize(lmdb::span(v))) st.newest = *e;
    }
  } else {
    oldest = st.meta.next_frame;
  }
  for (auto& c : st.consumers) {
    if (c.alive && c.rec.done.floor() < oldest) {
      c.rec.done.raiseFloor(oldest);
      c.dirty = true;
    }
  }
  if (auto s = writeBookkeeping(txn.get(), st); !s) return s;
  icur = lmdb::Cursor();
  fcur = lmdb::Cursor();
  const auto sync_start = steady_clock::now();
  const bool behind = write_behind && st.new_bytes >= kWriteBehindMinBytes;
  if (behind) write_behind->begin();
  rc = txn.commit();
  if (behind) write_behind->end();
  st.sync_duration = steady_clock::now() - sync_start;
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "committing"));
  return ok();
}

void LmdbRing::Impl::evictOldest(MDB_txn* txn, TxnState& st, const IndexEntry& e, FrameId id,
                                 lmdb::Cursor& index_cursor, Status& status) {
  for (auto& c : st.consumers) {
    if (!c.alive) continue;
    if (c.rec.done.contains(id)) {
      --c.rec.done_in_ring_frames;
      c.rec.done_in_ring_records -= e.record_count;
    } else {
      ++c.rec.evicted_frames;
      c.rec.evicted_records += e.record_count;
    }
    c.rec.done.raiseFloor(id + 1);
    c.dirty = true;
  }
  // The index cursor sits on `id` (firstFrame just positioned it).
  int rc = mdb_cursor_del(index_cursor.get(), 0);
  if (rc != 0) {
    status = tl::unexpected(lmdb::error(rc, "evicting an index entry"));
    return;
  }
  if (auto s = dropFrameValue(txn, id, "evicting a frame"); !s) {
    status = s;
    return;
  }
  --st.meta.frames;
  st.meta.records -= e.record_count;
  st.meta.used_bytes -= std::min(st.meta.used_bytes, accountedBytes(e.stored_bytes));
  ++st.meta.evicted_frames;
  st.meta.evicted_records += e.record_count;
  ++st.evicted_frames;
}

// Deletes a frame's value and counts its pages as mapped: LMDB reads the first page of an
// overflow value to free it, which maps the surrounding folio into RSS.
Status LmdbRing::Impl::dropFrameValue(MDB_txn* txn, FrameId id, const char* what) {
  MDB_cursor* raw = nullptr;
  int rc = mdb_cursor_open(txn, dbi_frames, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, what));
  lmdb::Cursor cur(raw);
  lmdb::FrameKey key(id);
  MDB_val k = key.val();
  MDB_val v;
  rc = mdb_cursor_get(raw, &k, &v, MDB_SET_KEY);
  if (rc == MDB_NOTFOUND) return ok();
  if (rc != 0) return tl::unexpected(lmdb::error(rc, what));
  const void* where = v.mv_data;
  const std::size_t size = v.mv_size;
  rc = mdb_cursor_del(raw, 0);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, what));
  mapped(where, size, last_deleted_folio);
  return ok();
}

Status LmdbRing::Impl::deleteFrame(MDB_txn* txn, TxnState& st, FrameId id, const IndexEntry& e) {
  for (auto& c : st.consumers) {
    if (!c.alive) continue;
    --c.rec.done_in_ring_frames;
    c.rec.done_in_ring_records -= e.record_count;
    c.dirty = true;
  }
  if (auto s = delOrFail(txn, dbi_index, id, "deleting an index entry"); !s) return s;
  if (auto s = dropFrameValue(txn, id, "deleting a frame"); !s) return s;
  --st.meta.frames;
  st.meta.records -= e.record_count;
  st.meta.used_bytes -= std::min(st.meta.used_bytes, accountedBytes(e.stored_bytes));
  ++st.meta.deleted_frames;
  return ok();
}

// After a consumer is removed, frames every remaining consumer is done with are deleted.
Status LmdbRing::Impl::deleteDoneByAll(MDB_txn* txn, TxnState& st) {
  FrameId upper = UINT64_MAX;
  bool any = false;
  for (const auto& c : st.consumers) {
    if (!c.alive) continue;
    any = true;
    const auto& r = c.rec.done.ranges();
    upper = std::min(upper, r.empty() ? c.rec.done.floor() : r.back().second);
  }
  if (!any) return ok();
  MDB_cursor* raw = nullptr;
  int rc = mdb_cursor_open(txn, dbi_index, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening an index cursor"));
  std::vector<std::pair<FrameId, IndexEntry>> victims;
  {
    lmdb::Cursor cur(raw);
    MDB_val k;
    MDB_val v;
    for (rc = mdb_cursor_get(raw, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(raw, &k, &v, MDB_NEXT)) {
      const FrameId id = lmdb::frameIdOf(k);
      if (id >= upper) break;
      if (!allDone(st, id)) continue;
      auto e = IndexEntry::deserialize(lmdb::span(v));
      if (!e) return tl::unexpected(e.error());
      victims.emplace_back(id, *e);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "scanning index"));
  }
  for (const auto& [id, e] : victims) {
    if (auto s = deleteFrame(txn, st, id, e); !s) return s;
  }
  return ok();
}

bool LmdbRing::Impl::evictTxn(std::uint64_t bytes) {
  // Reuses attemptCommit with no frames: a transaction that only evicts.
  TxnState st;
  beginTxnState(st);
  MDB_txn* raw = nullptr;
  int rc = mdb_txn_begin(env, nullptr, 0, &raw);
  if (rc != 0) return false;
  lmdb::Txn txn(raw);
  MDB_cursor* icur_raw = nullptr;
  if (mdb_cursor_open(txn.get(), dbi_index, &icur_raw) != 0) return false;
  lmdb::Cursor icur(icur_raw);
  const auto t0 = steady_clock::now();
  std::uint64_t freed = 0;
  Status status = ok();
  while (freed < bytes && status) {
    MDB_val k;
    MDB_val v;
    if (mdb_cursor_get(icur.get(), &k, &v, MDB_FIRST) != 0) break;
    auto e = IndexEntry::deserialize(lmdb::span(v));
    if (!e) return false;
    freed += accountedBytes(e->stored_bytes);
    evictOldest(txn.get(), st, *e, lmdb::frameIdOf(k), icur, status);
  }
  if (!status || st.evicted_frames == 0) return false;
  if (!writeBookkeeping(txn.get(), st)) return false;
  icur = lmdb::Cursor();
  if (txn.commit() != 0) return false;
  log->warn("buffer evicted frames={} ({}) to recover from a full map", st.evicted_frames,
            formatSize(freed));
  std::vector<ConsumerOp*> none;
  publish(st, none, steady_clock::now() - t0);
  return true;
}

bool LmdbRing::Impl::growMap() {
  const std::uint64_t current = map_size.load();
  const std::uint64_t next = current + std::max<std::uint64_t>(current / 4, 1ULL << 20U);
  if (next > map_size_limit) return false;
  std::unique_lock gate(txn_gate);
  const int rc = mdb_env_set_mapsize(env, next);
  if (rc != 0) {
    log->error("buffer could not grow the map to {}: {}", formatSize(next), mdb_strerror(rc));
    return false;
  }
  log->warn("buffer map grown from {} to {} after MDB_MAP_FULL", formatSize(map_size.load()),
            formatSize(next));
  locateMap();
  return true;
}

void LmdbRing::Impl::publish(TxnState& st, std::vector<ConsumerOp*>& my_ops,
                             std::chrono::nanoseconds took) {
  meta = st.meta;
  if (write_behind && st.new_records > 0) {
    recyclePages(st.first_frame, st.last_frame);  // releases the map too
  } else {
    // Whatever the commit read through the map (tree and free-list pages, the folios around
    // them) leaves the resident set; readers fault back in what they still use.
    releaseMap();
  }
  {
    std::lock_guard lk(consumers_mu);
    for (std::size_t i = 0; i < st.consumers.size(); ++i) {
      TxnConsumer& tc = st.consumers[i];
      if (i >= consumers.size()) {
        auto c = std::make_unique<ConsumerLive>();
        c->name = tc.name;
        c->done = tc.rec.done;
        c->durable = tc.rec;
        c->handle.reset(new Consumer(*owner, i));
        consumers.push_back(std::move(c));
        continue;
      }
      ConsumerLive& c = *consumers[i];
      std::lock_guard ck(c.mu);
      if (!tc.alive) {
        c.removed = true;
        continue;
      }
      c.durable = std::move(tc.rec);
      c.done.raiseFloor(c.durable.done.floor());
    }
  }
  {
    std::lock_guard lk(stats_mu);
    copyTotals(meta, snapshot);
    snapshot.max_size = opt.max_size;
    snapshot.effective_max_size = effectiveMaxSize();
    if (meta.frames > 0 && st.oldest_id != 0) {
      snapshot.oldest_frame = st.oldest_id;
      snapshot.oldest_ts = st.oldest.first_ts;
      snapshot.newest_frame = st.newest_id;
      snapshot.newest_ts = st.newest.last_ts;
    } else if (meta.frames == 0) {
      snapshot.oldest_frame = snapshot.newest_frame = 0;
      snapshot.oldest_ts = snapshot.newest_ts = 0;
    }
  }
  if (st.records_dropped > 0) dropped_map_full += st.records_dropped;

  CommitInfo info;
  info.first_frame = st.first_frame;
  info.last_frame = st.last_frame;
  info.records = st.new_records;
  info.bytes = st.new_bytes;
  info.evicted_frames = st.evicted_frames;
  info.duration = took;
  info.sync_duration = st.sync_duration;
  std::function<void(const CommitInfo&)> notify;
  Ticket done = 0;
  {
    std::lock_guard lk(mu);
    const std::size_t consumed = std::min(st.frames_committed, work.size());
    for (std::size_t i = 0; i < consumed; ++i) {
      PendingFrame& f = work.front();
      queued_bytes -= std::min(queued_bytes, f.queued_bytes);
      if (pool.size() < kPoolMax && f.body.bytes.capacity() > 0) {
        f.body.bytes.clear();
        pool.push_back(std::move(f.body.bytes));
      }
      work.pop_front();
    }
    done = work.empty() ? taken_ticket : work.front().first_ticket - 1;
    done = std::max(committed_ticket, done);
    notify = listener;
  }
  space_cv.notify_all();
  // The listener sees the commit before anyone waiting for it wakes up.
  info.ticket = done;
  if (notify) notify(info);
  {
    std::lock_guard lk(mu);
    committed_ticket = done;
    blocked = st.blocked;
    flush_done = std::max(flush_done, flush_taking);
    for (ConsumerOp* op : my_ops) op->done = true;
  }
  my_ops.clear();
  commit_cv.notify_all();
  if (++commits_since_reader_check >= kReaderCheckEvery) {
    commits_since_reader_check = 0;
    int dead = 0;
    mdb_reader_check(env, &dead);
    stale_readers_cleared += static_cast<std::uint64_t>(dead);
  }
}

}  // namespace cistern::buffer
