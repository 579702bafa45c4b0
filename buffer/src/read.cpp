// Reading frames for a consumer: short read transactions, checksum checks, corrupt-frame skips.
#include <sys/mman.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>

#include "lmdb_ring_impl.h"

namespace cistern::buffer {

Result<ReadTxn> LmdbRing::Impl::beginRead() const {
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::shared_lock gate(txn_gate);
      MDB_txn* raw = nullptr;
      const int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &raw);
      if (rc == 0) return ReadTxn{std::move(gate), lmdb::Txn(raw)};
      if (rc != MDB_MAP_RESIZED) return tl::unexpected(lmdb::error(rc, "beginning a read"));
    }
    // Another process grew the map: adopt its size (needs no transaction open in this one).
    std::unique_lock gate(txn_gate);
    const int rc = mdb_env_set_mapsize(env, 0);
    if (rc != 0) return tl::unexpected(lmdb::error(rc, "adopting a resized map"));
    locateMap();
  }
  return fail(ErrorCode::kIo, "beginning a read: the map keeps being resized", true);
}

// Drops a range of the map from this process's resident set. The map is a shared, read-only
// file mapping, so this discards nothing but page-table entries: a later access faults the page
// back in from the page cache. Without it, RSS would grow with every frame ever read, up to the
// size of the backlog.
//
// The kernel maps whole page-cache folios (up to 2 MiB on recent kernels) on a fault, so even
// touching a frame's header pulls the frame and its neighbours into RSS: the writer releases
// what it wrote and the whole map after each commit; reads and deletes count what they mapped
// and release the whole map now and then (mapped()).
namespace {
// The largest folio the kernel maps at once (a PMD, 2 MiB): a fault on a value's first page also
// maps the folio's pages before it, which belong to a neighbour.
constexpr std::uintptr_t kFolio = 2U << 20U;
}  // namespace

bool LmdbRing::Impl::inMap(const void* p, std::size_t n) const {
  const auto map_begin = reinterpret_cast<std::uintptr_t>(map_addr.load());
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  return map_begin != 0 && n > 0 && at >= map_begin && at + n <= map_begin + map_size.load();
}

void LmdbRing::Impl::releaseRange(const void* p, std::size_t n) const {
  // Never madvise outside the map: on heap memory MADV_DONTNEED would zero live data.
  if (!inMap(p, n)) return;
  const auto map_begin = reinterpret_cast<std::uintptr_t>(map_addr.load());
  const auto map_end = map_begin + map_size.load();
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t begin = std::max(map_begin, at & ~(kFolio - 1));
  const std::uintptr_t end = std::min(map_end, (at + n + kFolio - 1) & ~(kFolio - 1));
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void LmdbRing::Impl::releaseMap() const {
  mapped_since_release.store(0, std::memory_order_relaxed);
  const std::byte* base = map_addr.load();
  if (base != nullptr) ::madvise(const_cast<std::byte*>(base), map_size.load(), MADV_DONTNEED);
}

// What reads and deletes map (the folios around the frames they touch, and the tree pages the
// cursor walked, whose folios hold other frames) leaves the resident set once 8 MiB of folios
// have been mapped since the map was last released, here or by the writer's commit: the
// resident set's allowance beyond read batches and the write transaction. Releasing after each
// frame re-faulted the 2 MiB mapping the next frame shared with it, and releasing after each
// 1 MiB read re-faulted the tree and the mapping the next read shared: measured on the deliver
// bench, each cost about a quarter more CPU per GB delivered. Never releasing kept the whole
// drained backlog resident. 16 MiB instead of 8 was a little faster still but took the buffer
// bench's peak RSS (4 GiB backlog) from 54 to 66 MB, past its 64 MB budget.
void LmdbRing::Impl::mapped(const void* p, std::size_t n, std::uintptr_t& last_folio) const {
  constexpr std::uint64_t kReleaseBytes = 4 * kFolio;
  // A value dirty in the current write transaction lives on the heap: nothing mapped.
  if (!inMap(p, n)) return;
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t first = at & ~(kFolio - 1);
  const std::uintptr_t last = (at + n - 1) & ~(kFolio - 1);
  if (first == last_folio) first += kFolio;  // already counted
  last_folio = last;
  if (first > last) return;
  const std::uint64_t bytes = last - first + kFolio;
  if (mapped_since_release.fetch_add(bytes, std::memory_order_relaxed) + bytes >= kReleaseBytes) {
    releaseMap();
  }
}

// Frames are copied out of the file with preadv, not read through the map: the reading thread
// takes no page faults for them, maps nothing it must release later (see mapped()) and sends
// no TLB shootdowns with those releases; the copy lands in the batch's storage, where the
// frame was copied to anyway, and the checksum runs over the copy while it is in cache. On the
// deliver bench's VM (a PVM guest, where faults and first touches through a mapping are dear)
// this cut the output's CPU per GB by about a quarter (5 interleaved pairs: 1.56 against 2.17
// CPU s). A plain read loop over a backlog the page cache no longer holds was slower there
// (4 GiB: 3.8-4.2 against 4.8-6.1 M records/s): the kernel's copy out of pages just read from
// the disk costs more than touching them through the map. See docs/performance.md.
bool LmdbRing::Impl::readStored(const MDB_val& v, std::span<std::byte, kFrameHeaderBytes> header,
                                std::vector<std::byte>& storage) const {
  if (data_fd < 0 || v.mv_size < kFrameHeaderBytes || !inMap(v.mv_data, v.mv_size)) return false;
  const std::size_t body = v.mv_size - kFrameHeaderBytes;
  const std::size_t at = storage.size();
  storage.resize(at + body);
  std::array<iovec, 2> iov{{{header.data(), kFrameHeaderBytes}, {storage.data() + at, body}}};
  auto offset = static_cast<off_t>(static_cast<const std::byte*>(v.mv_data) - map_addr.load());
  std::size_t first = 0;  // the first iovec not read in full
  while (first < iov.size()) {
    const ssize_t n = ::preadv(data_fd, &iov[first], static_cast<int>(iov.size() - first), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // an I/O error or the file shorter than the map says: read through the map
      storage.resize(at);
      return false;
    }
    offset += n;
    auto left = static_cast<std::size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < iov.size()) {
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

void LmdbRing::Impl::reportCorrupt(std::size_t index, FrameId id, const Error& why) {
  const std::uint64_t seen = ++corrupt_frames_seen;
  if (seen <= 10 || seen % 1000 == 0) {
    log->error("buffer frame skipped as corrupt: {} (corrupt frames so far: {})", why.message,
               seen);
  }
  if (opt.read_only || index == kNoConsumer) return;
  ConsumerLive& c = live(index);
  bool fresh = false;
  {
    std::lock_guard lk(c.mu);
    fresh = c.done.insert(id);
  }
  if (!fresh) return;
  std::lock_guard lk(mu);
  if (!oldest_pending) oldest_pending = std::chrono::steady_clock::now();
  corrupt.push_back(AckOp{index, id});
}

Result<std::size_t> LmdbRing::Impl::read(std::size_t index, FrameId from, Direction dir,
                                         ReadBatch& out, const ReadLimits& limits,
                                         FrameId* next_pos) {
  out.clear();
  // A scan (index kNoConsumer) reads every frame present, whatever any consumer acknowledged.
  ConsumerLive* c = index == kNoConsumer ? nullptr : &live(index);
  auto txn = beginRead();
  if (!txn) return tl::unexpected(txn.error());
  MDB_cursor* raw = nullptr;
  int rc = mdb_cursor_open(txn->get(), dbi_frames, &raw);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening a frame cursor"));
  lmdb::Cursor cur(raw);

  const bool forward = dir == Direction::kForward;
  FrameId pos = from == 0 ? 1 : from;
  std::uintptr_t last_folio = 0;  // the folio of the last frame this read mapped
  while (out.size() < limits.max_frames && (out.empty() || out.bodyBytes() < limits.max_bytes)) {
    FrameId want = pos;
    if (c != nullptr) {
      std::lock_guard lk(c->mu);
      if (forward) {
        want = c->done.nextMissing(pos);
      } else if (!c->done.prevMissing(pos, want)) {
        break;
      }
    }
    if (want == 0) break;
    lmdb::FrameKey key(want);
    MDB_val k = key.val();
    MDB_val v;
    rc = mdb_cursor_get(raw, &k, &v, MDB_SET_RANGE);
    if (!forward) {
      if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(raw, &k, &v, MDB_LAST);
      } else if (rc == 0 && lmdb::frameIdOf(k) != want) {
        rc = mdb_cursor_get(raw, &k, &v, MDB_PREV);
      }
    }
    if (rc == MDB_NOTFOUND) break;
    if (rc != 0) return tl::unexpected(lmdb::error(rc, "reading a frame"));
    const FrameId id = lmdb::frameIdOf(k);
    if (forward && limits.end != 0 && id >= limits.end) break;
    if (forward) {
      pos = id + 1;
    } else {
      if (id == 0 || id > want) break;
      pos = id - 1;
    }
    bool done = false;
    if (c != nullptr) {
      std::lock_guard lk(c->mu);
      done = c->done.contains(id);
    }
    if (!done) {
      const std::size_t at = out.storage().size();
      std::array<std::byte, kFrameHeaderBytes> head{};
      Result<FrameHeader> header;
      Status body = ok();
      if (readStored(v, head, out.storage())) {
        auto& storage = out.storage();
        const std::span<const std::byte> stored_body(storage.data() + at, storage.size() - at);
        header = checkFrame(head, stored_body, id);
        if (header && header->codec != Codec::kNone) {
          // Decompressed from the copy, into the place it occupied.
          const std::vector<std::byte> compressed(stored_body.begin(), stored_body.end());
          storage.resize(at);
          body = decodeFrameBody(compressed, *header, storage);
        }
      } else {
        const auto stored = lmdb::span(v);
        header = checkFrame(stored, id);
        if (header) {
          body = decodeFrameBody(stored.subspan(kFrameHeaderBytes), *header, out.storage());
        }
        mapped(v.mv_data, v.mv_size, last_folio);
      }
      if (!header) body = tl::unexpected(header.error());
      if (!body) {
        out.storage().resize(at);
        out.addCorruptSkipped();
        reportCorrupt(index, id, body.error());
      } else {
        FrameView view;
        view.id = id;
        view.record_count = header->record_count;
        view.first_ts = header->first_ts;
        view.last_ts = header->last_ts;
        view.stored_bytes = static_cast<std::uint32_t>(v.mv_size);
        out.addFrame(view, at, header->raw_len);
      }
    }
    if (!forward && pos == 0) break;
  }
  out.seal();
  *next_pos = pos;
  return out.size();
}

}  // namespace cistern::buffer
