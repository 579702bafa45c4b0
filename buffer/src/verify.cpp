// LmdbRing::verify(): every frame and every invariant, reported rather than repaired.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "lmdb_ring_impl.h"

namespace cistern::buffer {
namespace {

// Per read transaction: short, so the pages a writer frees meanwhile are not pinned for long.
constexpr std::uint64_t kChunkBytes = 4ULL << 20U;
constexpr std::size_t kChunkFrames = 256;

class Reporter {
 public:
  explicit Reporter(VerifyReport& r) : r_(r) {}
  void frame(FrameId id, std::string problem) {
    if (bad_.insert(id).second) r_.bad_frames.push_back(id);
    r_.problems.push_back(std::move(problem));
  }
  void ring(std::string problem) { r_.problems.push_back(std::move(problem)); }

 private:
  VerifyReport& r_;
  std::set<FrameId> bad_;
};

Result<lmdb::Cursor> openCursor(MDB_txn* txn, MDB_dbi dbi) {
  MDB_cursor* c = nullptr;
  const int rc = mdb_cursor_open(txn, dbi, &c);
  if (rc != 0) return tl::unexpected(lmdb::error(rc, "opening a cursor"));
  return lmdb::Cursor(c);
}

// Checks one frame's stored bytes against its index entry, decoding every record.
void checkStoredFrame(FrameId id, std::span<const std::byte> stored, const IndexEntry* entry,
                      std::vector<std::byte>& scratch, VerifyReport& report, Reporter& rep) {
  ++report.frames_checked;
  report.bytes_checked += stored.size();
  auto header = checkFrame(stored, id);
  if (!header) {
    rep.frame(id, header.error().message);
    return;
  }
  scratch.clear();
  if (auto body = decodeFrameBody(stored.subspan(kFrameHeaderBytes), *header, scratch); !body) {
    rep.frame(id, body.error().message);
    return;
  }
  RecordReader reader(scratch);
  std::uint32_t count = 0;
  std::uint64_t first = UINT64_MAX;
  std::uint64_t last = 0;
  while (const auto* r = reader.next()) {
    ++count;
    first = std::min(first, r->timestamp_ns);
    last = std::max(last, r->timestamp_ns);
  }
  report.records_checked += count;
  if (reader.failed()) {
    rep.frame(id, fmt::format("frame {}: {}", id, reader.error()));
    return;
  }
  if (count != header->record_count) {
    rep.frame(id, fmt::format("frame {}: header says {} records, body holds {}", id,
                              header->record_count, count));
  }
  if (count > 0 && (first != header->first_ts || last != header->last_ts)) {
    rep.frame(id, fmt::format("frame {}: header time range does not match its records", id));
  }
  if (entry == nullptr) {
    rep.frame(id, fmt::format("frame {}: stored but missing from the index", id));
  } else if (entry->record_count != header->record_count || entry->stored_bytes != stored.size() ||
             entry->first_ts != header->first_ts || entry->last_ts != header->last_ts) {
    rep.frame(id, fmt::format("frame {}: index entry disagrees with the frame", id));
  }
}

}  // namespace

Result<VerifyReport> LmdbRing::verify() const {
  const Impl& d = *impl_;
  VerifyReport report;
  Reporter rep(report);

  // 1. Invariants on one snapshot: meta, index, consumers.
  std::map<FrameId, IndexEntry> index;
  RingMeta meta;
  {
    auto txn = d.beginRead();
    if (!txn) return tl::unexpected(txn.error());
    auto stored = d.readMeta(txn->get());
    if (stored) {
      meta = stored->value_or(RingMeta{});
    } else if (stored.error().code == ErrorCode::kCorrupt) {
      rep.ring("meta record: " + stored.error().message);
    } else {
      return tl::unexpected(stored.error());
    }
    int rc = 0;

    auto cur = openCursor(txn->get(), d.dbi_index);
    if (!cur) return tl::unexpected(cur.error());
    MDB_val ik;
    MDB_val iv;
    std::uint64_t records = 0;
    std::uint64_t used = 0;
    FrameId prev = 0;
    for (rc = mdb_cursor_get(cur->get(), &ik, &iv, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur->get(), &ik, &iv, MDB_NEXT)) {
      const FrameId id = lmdb::frameIdOf(ik);
      if (ik.mv_size != 8 || id == 0) {
        rep.ring(fmt::format("index holds a malformed key of {} bytes", ik.mv_size));
        continue;
      }
      if (id <= prev) rep.ring(fmt::format("frame ids not strictly increasing at {}", id));
      if (id >= meta.next_frame) {
        rep.frame(id, fmt::format("frame {}: id not below the next id {}", id, meta.next_frame));
      }
      prev = id;
      auto e = IndexEntry::deserialize(lmdb::span(iv));
      if (!e) {
        rep.frame(id, fmt::format("frame {}: {}", id, e.error().message));
        continue;
      }
      if (e->first_ts > e->last_ts) {
        rep.frame(id, fmt::format("frame {}: index time range reversed", id));
      }
      records += e->record_count;
      used += d.accountedBytes(e->stored_bytes);
      index.emplace(id, *e);
    }
    if (rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "scanning the index"));
    if (index.size() != meta.frames || records != meta.records || used != meta.used_bytes) {
      rep.ring(
          fmt::format("meta totals (frames {}, records {}, used {}) differ from the index "
                      "(frames {}, records {}, used {})",
                      meta.frames, meta.records, meta.used_bytes, index.size(), records, used));
    }
    if (meta.appended_frames != meta.frames + meta.deleted_frames + meta.evicted_frames) {
      rep.ring(fmt::format("appended frames {} != present {} + deleted {} + evicted {}",
                           meta.appended_frames, meta.frames, meta.deleted_frames,
                           meta.evicted_frames));
    }

    auto ccur = openCursor(txn->get(), d.dbi_consumers);
    if (!ccur) return tl::unexpected(ccur.error());
    MDB_val ck;
    MDB_val cv;
    for (rc = mdb_cursor_get(ccur->get(), &ck, &cv, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(ccur->get(), &ck, &cv, MDB_NEXT)) {
      const std::string name(static_cast<const char*>(ck.mv_data), ck.mv_size);
      auto c = ConsumerRecord::deserialize(lmdb::span(cv));
      if (!c) {
        rep.ring(fmt::format("consumer '{}': {}", name, c.error().message));
        continue;
      }
      std::uint64_t done_frames = 0;
      std::uint64_t done_records = 0;
      for (const auto& [id, e] : index) {
        if (c->done.contains(id)) {
          ++done_frames;
          done_records += e.record_count;
        }
      }
      if (done_frames != c->done_in_ring_frames || done_records != c->done_in_ring_records) {
        rep.ring(fmt::format(
            "consumer '{}': done-in-ring counters ({} frames, {} records) "
            "differ from its ack set ({} frames, {} records)",
            name, c->done_in_ring_frames, c->done_in_ring_records, done_frames, done_records));
      }
      const std::uint64_t pending = meta.records - std::min(meta.records, done_records);
      const std::uint64_t assigned = c->assignedRecords(meta);
      const std::uint64_t accounted =
          c->acked_records + c->evicted_records + c->corrupt_records + pending;
      if (assigned != accounted) {
        rep.ring(
            fmt::format("consumer '{}': {} records due but acked {} + evicted {} + corrupt "
                        "{} + pending {} = {}",
                        name, assigned, c->acked_records, c->evicted_records, c->corrupt_records,
                        pending, accounted));
      }
      if (c->done.floor() > meta.next_frame) {
        rep.ring(fmt::format("consumer '{}': ack floor {} beyond the next id {}", name,
                             c->done.floor(), meta.next_frame));
      }
    }
    if (rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "scanning consumers"));
  }

  // 2. Every stored frame, a chunk per short read transaction; frames and index entries of a
  //    chunk are compared inside its own transaction, so a concurrent writer causes no false
  //    mismatches.
  std::vector<std::byte> scratch;
  FrameId from = 1;
  for (bool more = true; more;) {
    auto txn = d.beginRead();
    if (!txn) return tl::unexpected(txn.error());
    auto cur = openCursor(txn->get(), d.dbi_frames);
    if (!cur) return tl::unexpected(cur.error());
    lmdb::FrameKey key(from);
    MDB_val k = key.val();
    MDB_val v;
    int rc = mdb_cursor_get(cur->get(), &k, &v, MDB_SET_RANGE);
    std::uint64_t chunk = 0;
    FrameId until = UINT64_MAX;  // this chunk covers ids [from, until)
    std::set<FrameId> stored;
    more = false;
    for (; rc == 0; rc = mdb_cursor_get(cur->get(), &k, &v, MDB_NEXT)) {
      const FrameId id = lmdb::frameIdOf(k);
      if (chunk >= kChunkBytes || stored.size() >= kChunkFrames) {
        until = id;
        more = true;
        break;
      }
      chunk += v.mv_size;
      stored.insert(id);
      lmdb::FrameKey ikey(id);
      MDB_val ik = ikey.val();
      MDB_val iv;
      std::optional<IndexEntry> entry;
      const int irc = mdb_get(txn->get(), d.dbi_index, &ik, &iv);
      if (irc == 0) {
        if (auto e = IndexEntry::deserialize(lmdb::span(iv))) entry = *e;
      } else if (irc != MDB_NOTFOUND) {
        return tl::unexpected(lmdb::error(irc, "reading the index"));
      }
      checkStoredFrame(id, lmdb::span(v), entry ? &*entry : nullptr, scratch, report, rep);
      d.releaseRange(v.mv_data, v.mv_size);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "reading frames"));
    auto icur = openCursor(txn->get(), d.dbi_index);
    if (!icur) return tl::unexpected(icur.error());
    lmdb::FrameKey ifrom(from);
    MDB_val ik = ifrom.val();
    MDB_val iv;
    for (rc = mdb_cursor_get(icur->get(), &ik, &iv, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(icur->get(), &ik, &iv, MDB_NEXT)) {
      const FrameId id = lmdb::frameIdOf(ik);
      if (id >= until) break;
      if (stored.count(id) == 0) {
        rep.frame(id, fmt::format("frame {}: indexed but not stored", id));
      }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return tl::unexpected(lmdb::error(rc, "reading index"));
    from = until;
  }
  std::sort(report.bad_frames.begin(), report.bad_frames.end());
  return report;
}

}  // namespace cistern::buffer
