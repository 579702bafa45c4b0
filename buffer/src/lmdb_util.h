// Thin RAII and error helpers over the LMDB C API. Only buffer/src includes lmdb.h.
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "cistern/core/bytes.h"
#include "cistern/core/result.h"

namespace cistern::buffer::lmdb {

// An Error naming the operation and carrying mdb_strerror's text. MAP_FULL and ENOSPC are
// retryable (eviction frees room); so is MDB_READERS_FULL.
inline Error error(int rc, std::string_view what) {
  const bool retryable = rc == MDB_MAP_FULL || rc == ENOSPC || rc == MDB_READERS_FULL;
  const ErrorCode code = (rc == MDB_MAP_FULL || rc == ENOSPC) ? ErrorCode::kFull
                         : rc == MDB_CORRUPTED                ? ErrorCode::kCorrupt
                                                              : ErrorCode::kIo;
  return Error{code, fmt::format("{}: {} (lmdb {})", what, mdb_strerror(rc), rc), retryable};
}

inline MDB_val val(const void* p, std::size_t n) {
  return MDB_val{n, const_cast<void*>(p)};  // LMDB never writes through a key or put value
}

inline std::span<const std::byte> span(const MDB_val& v) {
  return {static_cast<const std::byte*>(v.mv_data), v.mv_size};
}

// A big-endian u64 key: LMDB's default byte-wise comparison then orders frames by id.
struct FrameKey {
  std::byte bytes[8];
  explicit FrameKey(std::uint64_t id) { cistern::bytes::storeBe64(bytes, id); }
  MDB_val val() { return lmdb::val(bytes, sizeof bytes); }
};

inline std::uint64_t frameIdOf(const MDB_val& key) {
  return key.mv_size == 8 ? cistern::bytes::loadBe64(static_cast<const std::byte*>(key.mv_data))
                          : 0;
}

// Owns a transaction: aborts in the destructor unless committed or aborted explicitly.
class Txn {
 public:
  Txn() = default;
  explicit Txn(MDB_txn* txn) : txn_(txn) {}
  Txn(Txn&& other) noexcept : txn_(other.txn_) { other.txn_ = nullptr; }
  Txn& operator=(Txn&& other) noexcept {
    if (this != &other) {
      abort();
      txn_ = other.txn_;
      other.txn_ = nullptr;
    }
    return *this;
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() { abort(); }

  [[nodiscard]] MDB_txn* get() const { return txn_; }
  void abort() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  int commit() {
    const int rc = mdb_txn_commit(txn_);  // frees the txn whatever rc is
    txn_ = nullptr;
    return rc;
  }

 private:
  MDB_txn* txn_ = nullptr;
};

class Cursor {
 public:
  Cursor() = default;
  explicit Cursor(MDB_cursor* c) : cursor_(c) {}
  Cursor(Cursor&& o) noexcept : cursor_(o.cursor_) { o.cursor_ = nullptr; }
  Cursor& operator=(Cursor&& o) noexcept {
    if (this != &o) {
      if (cursor_ != nullptr) mdb_cursor_close(cursor_);
      cursor_ = o.cursor_;
      o.cursor_ = nullptr;
    }
    return *this;
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() {
    if (cursor_ != nullptr) mdb_cursor_close(cursor_);
  }
  [[nodiscard]] MDB_cursor* get() const { return cursor_; }

 private:
  MDB_cursor* cursor_ = nullptr;
};

}  // namespace cistern::buffer::lmdb
