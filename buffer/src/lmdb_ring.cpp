// LmdbRing: opening, the producer API, consumers, the state store and stats.
// The writer thread lives in writer.cpp, reads in read.cpp.
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "cistern/core/bytes.h"
#include "cistern/core/units.h"
#include "lmdb_ring_impl.h"

namespace cistern::buffer {
namespace {

constexpr std::size_t kMaxStateKeyBytes = 511;  // LMDB's default maximum key size

std::shared_ptr<spdlog::logger> bufferLogger() {
  if (auto existing = spdlog::get("buffer")) return existing;
  auto logger = spdlog::stderr_color_mt("buffer");
  return logger;
}

std::uint64_t roundUp(std::uint64_t v, std::uint64_t unit) { return (v + unit - 1) / unit * unit; }

// The map holds max_size of frames, a commit in flight (LMDB reuses freed pages only in a later
// transaction), the trees and the free list; anything beyond is handled by MAP_FULL recovery.
std::uint64_t derivedMapSize(const RingOptions& o) {
  const std::uint64_t slack = std::max<std::uint64_t>(o.max_size / 8, 4 * o.commit_max_bytes);
  const std::uint64_t map = roundUp(o.max_size + slack + (8ULL << 20U), 1ULL << 20U);
  return std::max(map, minimumMapSize(o.max_size, o.commit_max_bytes));
}

Status validateOptions(const RingOptions& o) {
  if (o.dir.empty()) return fail(ErrorCode::kInvalidArgument, "buffer directory is empty");
  if (o.read_only) return ok();
  if (o.max_size < (1ULL << 20U)) {
    return fail(ErrorCode::kInvalidArgument,
                "buffer max_size " + formatSize(o.max_size) + " is below the minimum of 1MiB");
  }
  if (o.frame_max_bytes < 1024 || o.commit_max_bytes < o.frame_max_bytes) {
    return fail(ErrorCode::kInvalidArgument,
                "buffer frame_max_bytes must be >= 1KiB and <= commit_max_bytes");
  }
  if (o.ingest_max_bytes < o.frame_max_bytes) {
    return fail(ErrorCode::kInvalidArgument, "buffer ingest_max_bytes must be >= frame_max_bytes");
  }
  if (o.codec == Codec::kZstd && (o.zstd_level < 1 || o.zstd_level > 19)) {
    return fail(ErrorCode::kInvalidArgument, "buffer compression level must be 1..19");
  }
  return ok();
}

// LMDB allocates a transaction's dirty pages with malloc and frees them when it commits. A
// frame's overflow pages (about 260 KiB) are above glibc's initial mmap threshold (128 KiB), and
// the 4 MiB a commit frees at the top of the writer thread's heap are above its initial trim
// threshold, so glibc gave the memory back to the kernel after every commit and the next
// transaction faulted it in again: 300,000 page faults and a quarter of the writer's CPU time
// for 20 M captured packets. glibc raises both thresholds by itself only once it happens to free
// a large mmapped block (the buffer benchmark's reference write did; the agent may never), so the
// ring sets them: blocks up to a few frames come from the heap, and a heap keeps free space up
// to a few transactions. The settings are process-wide; the ring is the process's large
// allocator, and what they keep is what the next transaction and the ingest queue reuse at once,
// so the peak resident set does not move.
void keepHeapForTransactions(const RingOptions& o) {
#if defined(__GLIBC__)
  static std::mutex mu;
  static std::uint64_t mmap_set = 0;
  static std::uint64_t trim_set = 0;
  constexpr std::uint64_t kMmapMax = 32ULL << 20U;  // glibc refuses more on 64-bit
  const std::uint64_t mmap_threshold =
      std::min(kMmapMax, std::max<std::uint64_t>(4ULL << 20U, 2ULL * o.frame_max_bytes));
  const std::uint64_t trim = std::min<std::uint64_t>(
      INT_MAX, std::max<std::uint64_t>(16ULL << 20U, 4 * o.commit_max_bytes));
  std::lock_guard lk(mu);
  if (mmap_threshold > mmap_set) {
    mmap_set = mmap_threshold;
    mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold));
  }
  if (trim > trim_set) {
    trim_set = trim;
    mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim));
  }
#else
  (void)o;
#endif
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Impl setup

LmdbRing::Impl::Impl(RingOptions o) : opt(std::move(o)), log(bufferLogger()) {}

LmdbRing::Impl::~Impl() {
  write_behind.reset();  // it uses LMDB's file descriptor
  if (env != nullptr) mdb_env_close(env);
  if (data_fd >= 0) ::close(data_fd);
  unlockWriter();
}

// One writer per ring. LMDB serialises write transactions between processes, but the ring keeps
// its next frame id, sizes and queues in memory: a second process writing the same ring (a
// second agent started on the same data directory) would reuse frame ids and break the ring's
// invariants. So a writable ring holds an exclusive flock on `writer.lock` in its directory while
// it is open, and an open that cannot take it fails naming the holder. The kernel drops the lock
// when its holder dies, SIGKILL included, so a crash never leaves the ring locked. Read-only
// opens (the buffer tools) do not take it.
Status LmdbRing::Impl::lockWriter() {
  const auto path = opt.dir / "writer.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return fail(ErrorCode::kIo, "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return fail(ErrorCode::kIo, "cannot lock " + path.string() + ": " + std::strerror(err));
    }
    std::string who = "another process";
    if (n > 0) {
      std::string pid(holder, static_cast<std::size_t>(n));
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      if (!pid.empty()) who += " (pid " + pid + ")";
    }
    return fail(ErrorCode::kIo, "the buffer at " + opt.dir.string() + " is open for writing by " +
                                    who + "; one agent per data directory");
  }
  // The holder's pid, for the message above; a failure to write it only makes that vaguer.
  const std::string pid = std::to_string(::getpid()) + "\n";
  const bool written = ::ftruncate(fd, 0) == 0 &&
                       ::pwrite(fd, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
  if (!written)
    log->debug("could not write the pid into {}: {}", path.string(), std::strerror(errno));
  writer_lock_fd = fd;
  return ok();
}

void LmdbRing::Impl::unlockWriter() {
  if (writer_lock_fd < 0) return;
  ::close(writer_lock_fd);  // releases the flock
  writer_lock_fd = -1;
}

Status LmdbRing::Impl::openEnv() {
  std::error_code ec;
  const auto data_file = opt.dir / "data.mdb";
  if (opt.read_only) {
    if (!std::filesystem::exists(data_file, ec)) {
      return fail(ErrorCode::kNotFound, "no buffer at " + opt.dir.string() + " (no data.mdb)");
    }
  } else {
    std::filesystem::create_directories(opt.dir, ec);
    if (ec) {
      return fail(ErrorCode::kIo,
                  "cannot create buffer directory " + opt.dir.string() + ": " + ec.message());
    }
    if (auto st = lockWriter(); !st) return st;
  }
  unsigned flags = MDB_NOTLS;
  if (opt.read_only) {
    flags |= MDB_RDONLY;
  } else {
    map_size = opt.map_size != 0 ? opt.map_size : derivedMapSize(opt);
    map_size_limit = 2 * map_size;
    if (opt.sync == SyncMode::kBatch) flags |= MDB_NOMETASYNC;
    if (opt.sync == SyncMode::kNone) flags |= MDB_NOSYNC;
  }
  int rc = mdb_env_create(&env);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "mdb_env_create"));
  mdb_env_set_maxdbs(env, 8);
  if (!opt.read_only) {
    rc = mdb_env_set_mapsize(env, map_size);
    if (rc != 0) return tl::unexpected(lmdb::error(rc, "mdb_env_set_mapsize"));
  }
  rc = mdb_env_open(env, opt.dir.c_str(), flags, 0640);
  if (rc != 0) {
    return tl::unexpected(lmdb::error(rc, "opening the buffer at " + opt.dir.string()));
  }
  locateMap();
  // Frames are read with preadv (see read.cpp) through a descriptor of their own, so the
  // readers' sequential reads keep a read-ahead state apart from LMDB's faults on the map (not
  // measured to matter on the benches). Without it, reads go through the map.
  data_fd = ::open((opt.dir / "data.mdb").c_str(), O_RDONLY | O_CLOEXEC);
  if (data_fd >= 0) (void)::posix_fadvise(data_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  MDB_stat st{};
  mdb_env_stat(env, &st);
  page_size = st.ms_psize;
  // Same formula as LMDB's me_nodemax: larger nodes go to overflow pages.
  node_max = (((page_size - 16) / 2) & ~std::size_t{1}) - 2;
  if (!opt.read_only) {
    int dead = 0;
    mdb_reader_check(env, &dead);
    stale_readers_cleared += static_cast<std::uint64_t>(dead);
  }

  MDB_txn* raw = nullptr;
  rc = mdb_txn_begin(env, nullptr, opt.read_only ? MDB_RDONLY : 0U, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "beginning the open transaction"));
  lmdb::Txn txn(raw);
  const unsigned create = opt.read_only ? 0U : MDB_CREATE;
  struct Named {
    const char* name;
    MDB_dbi* dbi;
  };
  for (const Named n :
       {Named{"frames", &dbi_frames}, Named{"index", &dbi_index},
        Named{"consumers", &dbi_consumers}, Named{"meta", &dbi_meta}, Named{"state", &dbi_state}}) {
    rc = mdb_dbi_open(txn.get(), n.name, create, n.dbi);
    if (rc == MDB_NOTFOUND) {
      return fail(ErrorCode::kCorrupt, std::string("buffer at ") + opt.dir.string() + " has no '" +
                                           n.name + "' database");
    }
    if (rc != 0) return tl::unexpected(lmdb::error(rc, std::string("opening database ") + n.name));
  }
  // Database handles outlive their transaction only if it commits (read-only ones too).
  rc = txn.commit();
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "committing the open transaction"));
  return ok();
}

void LmdbRing::Impl::locateMap() const {
  MDB_envinfo info{};
  mdb_env_info(env, &info);
  map_size = info.me_mapsize;
  map_addr = nullptr;
  std::error_code ec;
  const std::string data_file = std::filesystem::weakly_canonical(opt.dir / "data.mdb", ec);
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return;
  char line[4096];
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long long begin = 0;
    unsigned long long end = 0;
    int path_at = 0;
    if (std::sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &begin, &end, &path_at) < 2) continue;
    std::string path(line + path_at);
    while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
    if (path == data_file && end - begin == info.me_mapsize) {
      map_addr = reinterpret_cast<const std::byte*>(static_cast<std::uintptr_t>(begin));
      break;
    }
  }
  std::fclose(maps);
}

Status LmdbRing::Impl::loadState() {
  MDB_txn* raw = nullptr;
  int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "beginning the load transaction"));
  lmdb::Txn txn(raw);
  auto stored = readMeta(txn.get());
  if (!stored) return tl::unexpected(stored.error());
  if (*stored) {
    meta = **stored;
  } else {
    meta = RingMeta{};
    meta.created_ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  }
  // Ids stay strictly increasing even if the meta record lags the frames (it never should).
  lmdb::Cursor cur;
  {
    MDB_cursor* c = nullptr;
    rc = mdb_cursor_open(txn.get(), dbi_index, &c);
    if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening an index cursor"));
    cur = lmdb::Cursor(c);
  }
  MDB_val ik;
  MDB_val iv;
  if (mdb_cursor_get(cur.get(), &ik, &iv, MDB_LAST) == 0) {
    meta.next_frame = std::max(meta.next_frame, lmdb::frameIdOf(ik) + 1);
  }
  next_seal_id = meta.next_frame;

  MDB_cursor* cc = nullptr;
  rc = mdb_cursor_open(txn.get(), dbi_consumers, &cc);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening a consumer cursor"));
  lmdb::Cursor ccur(cc);
  MDB_val ck;
  MDB_val cv;
  for (rc = mdb_cursor_get(cc, &ck, &cv, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cc, &ck, &cv, MDB_NEXT)) {
    const std::string name(static_cast<const char*>(ck.mv_data), ck.mv_size);
    auto rec = ConsumerRecord::deserialize(lmdb::span(cv));
    if (!rec) {
      return fail(ErrorCode::kCorrupt, "consumer '" + name + "': " + rec.error().message);
    }
    auto c = std::make_unique<ConsumerLive>();
    c->name = name;
    c->done = rec->done;
    c->durable = std::move(*rec);
    consumers.push_back(std::move(c));
  }
  if (rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "reading consumers"));
  return ok();
}

void LmdbRing::Impl::sealOpenFrame(bool finish) {
  PendingFrame& f = open_frame;
  if (f.body.record_count > 0) {
    f.body.id = next_seal_id++;
    // With a codec the writer compresses and finishes the frame, outside the lock.
    if (finish && opt.codec == Codec::kNone) finishRawFrame(f.body);
  }
  sealed.push_back(std::move(f));
  f = PendingFrame{};
}

void LmdbRing::Impl::startWriter() {
  encoder = std::make_unique<FrameEncoder>(opt.codec, opt.zstd_level);
  int fd = -1;
  if (opt.sync != SyncMode::kNone && mdb_env_get_fd(env, &fd) == 0 && fd >= 0) {
    write_behind = std::make_unique<WriteBehind>(fd);
  }
  writer = std::thread([this] {
    pthread_setname_np(pthread_self(), "cistern-writer");
    writerLoop();
  });
}

ConsumerLive& LmdbRing::Impl::live(std::size_t index) const {
  std::lock_guard lk(consumers_mu);
  assert(index < consumers.size());  // handles exist only for created consumers
  return *consumers[index];
}

std::uint64_t LmdbRing::Impl::accountedBytes(std::uint64_t stored) const {
  // Index entry: node header, key, 24-byte value and its slot, rounded up.
  constexpr std::uint64_t kIndexCost = 48;
  constexpr std::uint64_t kPageHeader = 16;
  constexpr std::uint64_t kNodeAndKey = 16;
  if (stored + kNodeAndKey > node_max) {
    return roundUp(kPageHeader + stored, page_size) + kNodeAndKey + kIndexCost;
  }
  return stored + kNodeAndKey + 2 + kIndexCost;
}

// ---------------------------------------------------------------------------------------------
// LmdbRing

LmdbRing::LmdbRing(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LmdbRing::~LmdbRing() { (void)close(); }

Result<std::unique_ptr<LmdbRing>> LmdbRing::open(const RingOptions& options) {
  if (auto st = validateOptions(options); !st) return tl::unexpected(st.error());
  auto impl = std::make_unique<Impl>(options);
  if (auto st = impl->openEnv(); !st) return tl::unexpected(st.error());
  if (auto st = impl->loadState(); !st) return tl::unexpected(st.error());
  std::unique_ptr<LmdbRing> ring(new LmdbRing(std::move(impl)));
  Impl& d = *ring->impl_;
  d.owner = ring.get();
  for (std::size_t i = 0; i < d.consumers.size(); ++i) {
    d.consumers[i]->handle.reset(new Consumer(*ring, i));
  }
  if (!options.read_only) {
    keepHeapForTransactions(options);
    auto initial = d.readStats();
    if (!initial) return tl::unexpected(initial.error());
    d.snapshot = *initial;
    d.startWriter();
    if (d.effectiveMaxSize() < options.max_size) {
      d.log->warn(
          "buffer map_size {} holds only {} of frames, below max_size {}: the ring "
          "evicts at that size (raise buffer.map_size or leave it 0)",
          formatSize(d.map_size.load()), formatSize(d.effectiveMaxSize()),
          formatSize(options.max_size));
    }
    d.log->info("buffer opened dir={} frames={} used={} max_size={} map_size={} sync={}",
                options.dir.string(), d.meta.frames, formatSize(d.meta.used_bytes),
                formatSize(options.max_size), formatSize(d.map_size.load()),
                options.sync == SyncMode::kBatch    ? "batch"
                : options.sync == SyncMode::kAlways ? "always"
                                                    : "none");
  }
  return ring;
}

Status LmdbRing::close(std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  if (d.closed) return ok();
  if (!d.opt.read_only && d.writer.joinable()) {
    {
      std::lock_guard lk(d.mu);
      d.closing = true;
      d.close_deadline = std::chrono::steady_clock::now() + timeout;
    }
    d.writer_cv.notify_all();
    d.space_cv.notify_all();
    d.writer.join();
    d.write_behind.reset();
    // The last commits in batch/none mode may have a meta page not yet on disk.
    if (d.opt.sync != SyncMode::kAlways) mdb_env_sync(d.env, 1);
  }
  {
    std::lock_guard lk(d.mu);
    d.closing = true;
    d.writer_done = true;
  }
  d.commit_cv.notify_all();
  d.space_cv.notify_all();
  d.closed = true;
  mdb_env_close(d.env);
  d.env = nullptr;
  if (d.data_fd >= 0) ::close(d.data_fd);
  d.data_fd = -1;
  d.unlockWriter();
  return ok();
}

namespace {

Status checkState(std::span<const StateWrite> state, std::uint64_t& need) {
  for (const auto& s : state) {
    if (s.key.empty() || s.key.size() > kMaxStateKeyBytes) {
      return fail(ErrorCode::kInvalidArgument, "state key must be 1..511 bytes");
    }
    need += s.key.size() + s.value.size();
  }
  return ok();
}

}  // namespace

Result<Ticket> LmdbRing::Impl::admit(std::unique_lock<std::mutex>& lk, std::uint64_t need,
                                     std::size_t records, Wait wait) {
  if (closing) return fail(ErrorCode::kClosed, "buffer is closing");
  // A batch larger than the whole queue is let in when the queue is empty, or it never would be.
  auto has_room = [&] { return queued_bytes + need <= opt.ingest_max_bytes || queued_bytes == 0; };
  if (!has_room()) {
    if (wait == Wait::kNo) {
      refused_queue_full += records;
      last_refusal = std::chrono::steady_clock::now().time_since_epoch().count();
      return fail(ErrorCode::kFull, "buffer ingest queue is full", true);
    }
    space_cv.wait(lk, [&] { return closing || has_room(); });
    if (closing) return fail(ErrorCode::kClosed, "buffer is closing");
  }
  return ++next_ticket;
}

bool LmdbRing::Impl::overflows(std::size_t pending, std::uint32_t pending_count,
                               std::size_t size) const {
  const PendingFrame& f = open_frame;
  return f.body.record_count + pending_count > 0 &&
         f.body.bodyBytes() + pending + size > opt.frame_max_bytes;
}

void LmdbRing::Impl::sealForNext(const Placing& p) {
  sealOpenFrame(true);
  // An append that writes state must commit whole: its frames after the first are joined to
  // the one before.
  open_frame.joined = p.stateful && p.wrote;
}

std::byte* LmdbRing::Impl::placeRecords(std::size_t size, std::uint32_t count, std::uint64_t min_ts,
                                        std::uint64_t max_ts, Placing& p) {
  PendingFrame& f = open_frame;
  if (f.body.bytes.capacity() == 0) {
    if (!pool.empty()) {
      f.body.bytes = std::move(pool.back());
      pool.pop_back();
    }
    f.body.bytes.reserve(kFrameHeaderBytes + std::max<std::size_t>(opt.frame_max_bytes, size));
  }
  f.body.record_count += count;
  f.body.first_ts = std::min(f.body.first_ts, min_ts);
  f.body.last_ts = std::max(f.body.last_ts, max_ts);
  f.queued_bytes += size;
  if (f.first_ticket == 0) f.first_ticket = p.ticket;
  f.last_ticket = p.ticket;
  return f.body.appendRecord(size);
}

void LmdbRing::Impl::finishAppend(std::unique_lock<std::mutex>& lk,
                                  std::span<const StateWrite> state, std::uint64_t need,
                                  const Placing& p) {
  PendingFrame& f = open_frame;
  for (const auto& s : state) {
    f.state.push_back(s);
    f.queued_bytes += s.key.size() + s.value.size();
  }
  if (f.first_ticket == 0) f.first_ticket = p.ticket;
  f.last_ticket = p.ticket;
  // The last frame of an append with state is sealed, so that the next append starts a fresh one.
  if (p.stateful) sealOpenFrame(true);
  queued_bytes += need;
  if (!oldest_pending) oldest_pending = std::chrono::steady_clock::now();
  const bool wake = opt.sync == SyncMode::kAlways || !sealed.empty();
  lk.unlock();
  if (wake) writer_cv.notify_one();
}

Result<Ticket> LmdbRing::append(std::span<const RecordInput> records,
                                std::span<const StateWrite> state, Wait wait) {
  Impl& d = *impl_;
  if (d.opt.read_only) return fail(ErrorCode::kInvalidArgument, "buffer opened read-only");
  std::size_t valid = records.size();
  std::optional<Error> invalid;
  std::uint64_t need = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (auto st = validateRecord(records[i]); !st) {
      valid = i;
      invalid = st.error();
      break;
    }
    need += encodedRecordSize(records[i]);
  }
  if (auto st = checkState(state, need); !st) return tl::unexpected(st.error());
  if (invalid) d.refused_invalid += records.size() - valid;

  std::unique_lock lk(d.mu);
  auto ticket = d.admit(lk, need, valid, wait);
  if (!ticket) return tl::unexpected(ticket.error());
  Impl::Placing p{*ticket, !state.empty(), false};
  for (std::size_t i = 0; i < valid; ++i) {
    const RecordInput& r = records[i];
    const std::size_t size = encodedRecordSize(r);
    if (d.overflows(0, 0, size)) d.sealForNext(p);
    p.wrote = true;
    encodeRecord(r, d.placeRecords(size, 1, r.timestamp_ns, r.timestamp_ns, p));
  }
  d.finishAppend(lk, state, need, p);
  if (invalid) return tl::unexpected(*invalid);
  return *ticket;
}

// The batch's records are encoded and valid already: they are copied into the open frames in
// runs, one memcpy per frame, reading from each record only its length and timestamp.
Result<Ticket> LmdbRing::appendBatch(RecordBatch& batch, std::span<const StateWrite> state,
                                     Wait wait) {
  Impl& d = *impl_;
  if (d.opt.read_only) return fail(ErrorCode::kInvalidArgument, "buffer opened read-only");
  const std::span<const std::byte> src = batch.encoded();
  std::uint64_t need = src.size();
  if (auto st = checkState(state, need); !st) return tl::unexpected(st.error());

  std::unique_lock lk(d.mu);
  auto ticket = d.admit(lk, need, batch.size(), wait);
  if (!ticket) return tl::unexpected(ticket.error());
  Impl::Placing p{*ticket, !state.empty(), false};
  std::size_t run_at = 0;
  std::size_t run_bytes = 0;
  std::uint32_t run_count = 0;
  std::uint64_t run_min = UINT64_MAX;
  std::uint64_t run_max = 0;
  auto placeRun = [&] {
    if (run_count == 0) return;
    std::memcpy(d.placeRecords(run_bytes, run_count, run_min, run_max, p), src.data() + run_at,
                run_bytes);
    run_at += run_bytes;
    run_bytes = 0;
    run_count = 0;
    run_min = UINT64_MAX;
    run_max = 0;
  };
  for (std::size_t at = 0; at < src.size();) {
    const std::byte* rec = src.data() + at;
    const std::size_t size = bytes::loadLe<std::uint32_t>(rec) + std::size_t{4};
    const auto ts = bytes::loadLe<std::uint64_t>(rec + 8);
    if (d.overflows(run_bytes, run_count, size)) {
      placeRun();
      d.sealForNext(p);
    }
    p.wrote = true;
    run_bytes += size;
    ++run_count;
    run_min = std::min(run_min, ts);
    run_max = std::max(run_max, ts);
    at += size;
  }
  placeRun();
  d.finishAppend(lk, state, need, p);
  return *ticket;
}

Status LmdbRing::waitCommitted(Ticket ticket, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  std::unique_lock lk(d.mu);
  const bool done = d.commit_cv.wait_for(
      lk, timeout, [&] { return d.committed_ticket >= ticket || d.writer_done; });
  if (d.committed_ticket >= ticket) return ok();
  if (!done) return fail(ErrorCode::kTimeout, "commit not done within the timeout", true);
  return fail(ErrorCode::kClosed, "buffer closed before the commit");
}

Status LmdbRing::flush(std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  if (d.opt.read_only) return ok();
  std::unique_lock lk(d.mu);
  const Ticket target = d.next_ticket;
  const std::uint64_t request = ++d.flush_requested;
  d.writer_cv.notify_one();
  const bool done = d.commit_cv.wait_for(lk, timeout, [&] {
    return (d.flush_done >= request && d.committed_ticket >= target) || d.writer_done;
  });
  if (d.flush_done >= request && d.committed_ticket >= target) return ok();
  if (!done) return fail(ErrorCode::kTimeout, "flush not done within the timeout", true);
  return fail(ErrorCode::kClosed, "buffer closed before the flush");
}

void LmdbRing::setCommitListener(std::function<void(const CommitInfo&)> listener) {
  std::lock_guard lk(impl_->mu);
  impl_->listener = std::move(listener);
}

// ---------------------------------------------------------------------------------------------
// Consumers

Result<std::size_t> LmdbRing::Impl::findOrCreateConsumer(std::string_view name) {
  if (name.empty() || name.size() > kMaxInputNameBytes) {
    return fail(ErrorCode::kInvalidArgument, "consumer name must be 1..255 bytes");
  }
  {
    std::lock_guard lk(consumers_mu);
    for (std::size_t i = 0; i < consumers.size(); ++i) {
      if (!consumers[i]->removed && consumers[i]->name == name) return i;
    }
  }
  if (opt.read_only) {
    return fail(ErrorCode::kNotFound, "no consumer named '" + std::string(name) + "'");
  }
  ConsumerOp op;
  op.kind = ConsumerOp::Kind::kCreate;
  op.name = std::string(name);
  std::unique_lock lk(mu);
  if (closing) return fail(ErrorCode::kClosed, "buffer is closing");
  ops.push_back(&op);
  writer_cv.notify_one();
  commit_cv.wait(lk, [&] { return op.done || writer_done; });
  if (!op.done) return fail(ErrorCode::kClosed, "buffer closed before the consumer was created");
  if (!op.result) return tl::unexpected(op.result.error());
  return op.index;
}

Result<Consumer*> LmdbRing::consumer(std::string_view name) {
  auto index = impl_->findOrCreateConsumer(name);
  if (!index) return tl::unexpected(index.error());
  return impl_->live(*index).handle.get();
}

Status LmdbRing::removeConsumer(std::string_view name) {
  Impl& d = *impl_;
  if (d.opt.read_only) return fail(ErrorCode::kInvalidArgument, "buffer opened read-only");
  ConsumerOp op;
  op.kind = ConsumerOp::Kind::kRemove;
  op.name = std::string(name);
  std::unique_lock lk(d.mu);
  if (d.closing) return fail(ErrorCode::kClosed, "buffer is closing");
  d.ops.push_back(&op);
  d.writer_cv.notify_one();
  d.commit_cv.wait(lk, [&] { return op.done || d.writer_done; });
  if (!op.done) return fail(ErrorCode::kClosed, "buffer closed before the consumer was removed");
  return op.result;
}

std::vector<std::string> LmdbRing::consumerNames() const {
  std::lock_guard lk(impl_->consumers_mu);
  std::vector<std::string> names;
  for (const auto& c : impl_->consumers) {
    if (!c->removed) names.push_back(c->name);
  }
  return names;
}

namespace {

ConsumerStats statsOf(const ConsumerLive& c, const RingMeta& meta) {
  const ConsumerRecord& r = c.durable;
  ConsumerStats s;
  s.name = c.name;
  s.ack_floor = r.done.floor();
  s.ack_ranges = r.done.ranges().size();
  s.assigned_records = r.assignedRecords(meta);
  s.acked_frames = r.acked_frames;
  s.acked_records = r.acked_records;
  s.evicted_frames = r.evicted_frames;
  s.evicted_records = r.evicted_records;
  s.corrupt_frames = r.corrupt_frames;
  s.corrupt_records = r.corrupt_records;
  s.pending_frames = meta.frames - r.done_in_ring_frames;
  s.pending_records = meta.records - r.done_in_ring_records;
  return s;
}

}  // namespace

std::vector<ConsumerStats> LmdbRing::consumerStats() const {
  Impl& d = *impl_;
  RingMeta meta;
  {
    std::lock_guard lk(d.stats_mu);
    meta.frames = d.snapshot.frames;
    meta.records = d.snapshot.records;
    meta.appended_records = d.snapshot.appended_records;
  }
  if (d.opt.read_only) {
    if (auto s = d.readStats()) {
      meta.frames = s->frames;
      meta.records = s->records;
      meta.appended_records = s->appended_records;
    }
  }
  std::vector<ConsumerStats> out;
  std::lock_guard lk(d.consumers_mu);
  for (const auto& c : d.consumers) {
    if (c->removed) continue;
    std::lock_guard ck(c->mu);
    out.push_back(statsOf(*c, meta));
  }
  return out;
}

const std::string& Consumer::name() const { return ring_.impl_->live(index_).name; }

Result<std::size_t> Consumer::readNext(ReadBatch& out, const ReadLimits& limits) {
  FrameId from = next_read_;
  if (from == 0) from = oldestUnacked();
  FrameId next = from;
  auto n = ring_.impl_->read(index_, from, Direction::kForward, out, limits, &next);
  if (n) next_read_ = next;
  return n;
}

Result<std::size_t> Consumer::readAt(FrameId from, Direction direction, ReadBatch& out,
                                     const ReadLimits& limits) {
  FrameId ignored = 0;
  return ring_.impl_->read(index_, from, direction, out, limits, &ignored);
}

Result<std::size_t> LmdbRing::scan(FrameId from, ReadBatch& out, const ReadLimits& limits,
                                   FrameId* next) const {
  FrameId ignored = 0;
  return impl_->read(Impl::kNoConsumer, from, Direction::kForward, out, limits,
                     next != nullptr ? next : &ignored);
}

void Consumer::ack(FrameId id) { ack(std::span<const FrameId>(&id, 1)); }

void Consumer::ack(std::span<const FrameId> ids) {
  LmdbRing::Impl& d = *ring_.impl_;
  if (d.opt.read_only || ids.empty()) return;
  ConsumerLive& c = d.live(index_);
  std::vector<AckOp> fresh;
  fresh.reserve(ids.size());
  {
    std::lock_guard lk(c.mu);
    for (FrameId id : ids) {
      if (id != 0 && c.done.insert(id)) fresh.push_back(AckOp{index_, id});
    }
  }
  if (fresh.empty()) return;
  std::lock_guard lk(d.mu);
  if (d.acks.empty() && !d.oldest_pending) d.oldest_pending = std::chrono::steady_clock::now();
  d.acks.insert(d.acks.end(), fresh.begin(), fresh.end());
}

void Consumer::rewind() { next_read_ = 0; }

FrameId Consumer::oldestUnacked() const {
  ConsumerLive& c = ring_.impl_->live(index_);
  std::lock_guard lk(c.mu);
  return c.done.nextMissing(c.done.floor());
}

ConsumerStats Consumer::stats() const {
  for (auto& s : ring_.consumerStats()) {
    if (s.name == name()) return s;
  }
  return ConsumerStats{};
}

// ---------------------------------------------------------------------------------------------
// State store and stats

Result<std::optional<std::string>> LmdbRing::readState(std::string_view key) const {
  Impl& d = *impl_;
  auto txn = d.beginRead();
  if (!txn) return tl::unexpected(txn.error());
  MDB_val k = lmdb::val(key.data(), key.size());
  MDB_val v;
  const int rc = mdb_get(txn->get(), d.dbi_state, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string>{};
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "reading state"));
  return std::optional<std::string>(std::string(static_cast<const char*>(v.mv_data), v.mv_size));
}

Result<std::vector<StateWrite>> LmdbRing::readStatePrefix(std::string_view prefix) const {
  Impl& d = *impl_;
  auto txn = d.beginRead();
  if (!txn) return tl::unexpected(txn.error());
  MDB_cursor* raw = nullptr;
  int rc = mdb_cursor_open(txn->get(), d.dbi_state, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening a state cursor"));
  lmdb::Cursor cur(raw);
  std::vector<StateWrite> out;
  MDB_val k = lmdb::val(prefix.data(), prefix.size());
  MDB_val v;
  for (rc = mdb_cursor_get(raw, &k, &v, prefix.empty() ? MDB_FIRST : MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(raw, &k, &v, MDB_NEXT)) {
    std::string key(static_cast<const char*>(k.mv_data), k.mv_size);
    if (key.compare(0, prefix.size(), prefix) != 0) break;
    out.push_back(
        StateWrite{std::move(key), std::string(static_cast<const char*>(v.mv_data), v.mv_size)});
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "reading state"));
  return out;
}

RingStats LmdbRing::stats() const {
  Impl& d = *impl_;
  RingStats s;
  if (d.opt.read_only) {
    auto fresh = d.readStats();
    if (fresh) s = *fresh;
  } else {
    std::lock_guard lk(d.stats_mu);
    s = d.snapshot;
  }
  s.refused_queue_full = d.refused_queue_full;
  s.refused_invalid = d.refused_invalid;
  s.dropped_map_full = d.dropped_map_full;
  s.dropped_at_close = d.dropped_at_close;
  s.corrupt_frames_seen = d.corrupt_frames_seen;
  s.map_full_events = d.map_full_events;
  s.stale_readers_cleared = d.stale_readers_cleared;
  {
    std::lock_guard lk(d.mu);
    s.queued_bytes = d.queued_bytes;
    s.writer_blocked = d.blocked;
  }
  struct stat st {};
  if (::stat((d.opt.dir / "data.mdb").c_str(), &st) == 0) {
    s.file_bytes = static_cast<std::uint64_t>(st.st_size);
  }
  return s;
}

Result<RingStats> LmdbRing::Impl::readStats() const {
  auto txn = beginRead();
  if (!txn) return tl::unexpected(txn.error());
  auto stored = readMeta(txn->get());
  if (!stored) return tl::unexpected(stored.error());
  const RingMeta m = stored->value_or(RingMeta{});
  RingStats s;
  copyTotals(m, s);
  s.max_size = opt.read_only ? m.max_size : opt.max_size;
  s.effective_max_size = opt.read_only ? m.max_size : effectiveMaxSize();
  MDB_cursor* raw = nullptr;
  const int rc = mdb_cursor_open(txn->get(), dbi_index, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening an index cursor"));
  lmdb::Cursor cur(raw);
  MDB_val ik;
  MDB_val iv;
  if (mdb_cursor_get(raw, &ik, &iv, MDB_FIRST) == 0) {
    s.oldest_frame = lmdb::frameIdOf(ik);
    if (auto e = IndexEntry::deserialize(lmdb::span(iv))) s.oldest_ts = e->first_ts;
    mdb_cursor_get(raw, &ik, &iv, MDB_LAST);
    s.newest_frame = lmdb::frameIdOf(ik);
    if (auto e = IndexEntry::deserialize(lmdb::span(iv))) s.newest_ts = e->last_ts;
  }
  return s;
}

Result<std::optional<RingMeta>> LmdbRing::Impl::readMeta(MDB_txn* txn) const {
  MDB_val k = lmdb::val(kMetaKey.data(), kMetaKey.size());
  MDB_val v;
  const int rc = mdb_get(txn, dbi_meta, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<RingMeta>{};
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "reading the meta record"));
  auto m = RingMeta::deserialize(lmdb::span(v));
  if (!m) return tl::unexpected(m.error());
  return std::optional<RingMeta>(*m);
}

void LmdbRing::Impl::copyTotals(const RingMeta& m, RingStats& s) const {
  s.frames = m.frames;
  s.records = m.records;
  s.used_bytes = m.used_bytes;
  s.next_frame = m.next_frame;
  s.appended_frames = m.appended_frames;
  s.appended_records = m.appended_records;
  s.deleted_frames = m.deleted_frames;
  s.evicted_frames = m.evicted_frames;
  s.evicted_records = m.evicted_records;
  s.commits = m.commits;
  s.map_size = map_size;
}

const RingOptions& LmdbRing::options() const { return impl_->opt; }

FrameId Consumer::newestFrame() const { return ring_.newestFrame(); }

FrameId LmdbRing::newestFrame() const {
  if (impl_->opt.read_only) {
    auto s = impl_->readStats();
    return s ? s->newest_frame : 0;
  }
  std::lock_guard lk(impl_->stats_mu);
  return impl_->snapshot.newest_frame;
}

}  // namespace cistern::buffer
