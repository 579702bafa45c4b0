// Options of the LMDB ring buffer: what the `buffer:` section of the config sets.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>

namespace cistern::buffer {

// When a group commit is made durable (see docs/architecture.md, "Durability").
enum class SyncMode {
  kBatch,   // fsync data at every group commit; the meta page is flushed by the next commit.
            // A process crash loses nothing committed; power loss loses at most the last commit.
  kAlways,  // fsync data and meta at every commit, committing as soon as records are queued.
  kNone,    // never fsync; the OS writes back. A process crash loses nothing committed; power
            // loss may lose any amount not yet written back.
};

// What the writer does when a new frame does not fit in max_size.
enum class FullPolicy {
  kDropOldest,  // evict the oldest frames in the same transaction, counted per consumer
  kBlock,       // stop committing until consumers acknowledge enough to make room
};

enum class Codec : std::uint8_t {
  kNone = 0,
  kZstd = 1,
};

// What an LMDB map must hold besides the frames: pages freed by the last two commits (LMDB
// reuses a transaction's freed pages only two transactions later), the trees and the free list.
// A map filled to its last page cannot recover by itself: even an eviction needs fresh pages.
inline std::uint64_t mapHeadroom(std::uint64_t map_size, std::uint64_t commit_max_bytes) {
  return 2 * commit_max_bytes + map_size / 16 + (256U << 10U);
}

// The smallest map that holds max_size of frames and mapHeadroom(), rounded up to a MiB. An
// explicit map_size below it makes the ring evict before max_size.
inline std::uint64_t minimumMapSize(std::uint64_t max_size, std::uint64_t commit_max_bytes) {
  const std::uint64_t need = (max_size + 2 * commit_max_bytes + (256U << 10U)) * 16 / 15 + 1;
  return (need + (1U << 20U) - 1) / (1U << 20U) * (1U << 20U);
}

struct RingOptions {
  // Directory holding data.mdb and lock.mdb; created if missing.
  std::filesystem::path dir;
  // Upper bound on the bytes the ring's frames occupy (counted in LMDB pages).
  std::uint64_t max_size = 1ULL << 30U;
  // LMDB map size; 0 derives it from max_size with room for one commit in flight and the tree.
  std::uint64_t map_size = 0;
  SyncMode sync = SyncMode::kBatch;
  FullPolicy when_full = FullPolicy::kDropOldest;
  // Group commit: records wait at most commit_interval, less when a quarter of
  // commit_max_bytes is pending (under load commits then follow each other without a pause).
  std::chrono::nanoseconds commit_interval = std::chrono::milliseconds(20);
  // A transaction carries at most this much; a commit starts early once a quarter is pending.
  std::uint64_t commit_max_bytes = 4ULL << 20U;
  // A frame is sealed once its records reach this size (a single larger record gets its own).
  std::uint32_t frame_max_bytes = 256U << 10U;
  Codec codec = Codec::kNone;
  int zstd_level = 1;
  // Bytes of encoded records that may wait for the writer before append() refuses or blocks.
  std::uint64_t ingest_max_bytes = 16ULL << 20U;
  // Open without a writer: for inspect, verify and export while an agent may be running.
  bool read_only = false;

  bool operator==(const RingOptions&) const = default;
};

}  // namespace cistern::buffer
