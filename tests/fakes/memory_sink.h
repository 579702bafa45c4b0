// MemorySink: a RecordSink that keeps copies of what it is given, for input tests that do not
// need the ring. It can be made to refuse (kFull) to exercise an input's drop accounting.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cistern/core/sink.h"

namespace cistern::testing {

struct StoredRecord {
  RecordKind kind = RecordKind::kTest;
  std::uint64_t timestamp_ns = 0;
  std::string input;
  std::vector<std::byte> meta;
  std::string payload;
};

class MemorySink final : public RecordSink {
 public:
  // While set, append(Wait::kNo) refuses with kFull (and Wait::kYes waits until it is cleared).
  void setFull(bool full) {
    {
      std::lock_guard lk(mu_);
      full_ = full;
    }
    cv_.notify_all();
  }

  Result<Ticket> append(std::span<const RecordInput> records, std::span<const StateWrite> state,
                        Wait wait) override {
    std::unique_lock lk(mu_);
    if (full_) {
      if (wait == Wait::kNo) {
        refused_ += records.size();
        return fail(ErrorCode::kFull, "memory sink is full", true);
      }
      cv_.wait(lk, [&] { return !full_ || closed_; });
    }
    if (closed_) return fail(ErrorCode::kClosed, "memory sink is closed");
    for (const auto& r : records) {
      if (auto v = validateRecord(r); !v) return tl::unexpected(v.error());
      StoredRecord s;
      s.kind = r.kind;
      s.timestamp_ns = r.timestamp_ns;
      s.input = std::string(r.input);
      s.meta.assign(r.meta.begin(), r.meta.end());
      s.payload.assign(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
      records_.push_back(std::move(s));
    }
    for (const auto& w : state) state_[w.key] = w.value;
    cv_.notify_all();
    return ++ticket_;
  }

  Status waitCommitted(Ticket /*ticket*/, std::chrono::milliseconds /*timeout*/) override {
    return ok();
  }

  Result<std::vector<StateWrite>> readStatePrefix(std::string_view prefix) const override {
    std::lock_guard lk(mu_);
    std::vector<StateWrite> out;
    for (const auto& [k, v] : state_) {
      if (k.compare(0, prefix.size(), prefix) == 0) out.push_back({k, v});
    }
    return out;
  }

  void close() {
    {
      std::lock_guard lk(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  std::vector<StoredRecord> records() const {
    std::lock_guard lk(mu_);
    return records_;
  }
  std::size_t size() const {
    std::lock_guard lk(mu_);
    return records_.size();
  }
  std::uint64_t refused() const {
    std::lock_guard lk(mu_);
    return refused_;
  }
  // Waits until at least `n` records arrived; false on timeout.
  bool waitFor(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return records_.size() >= n; });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<StoredRecord> records_;
  std::map<std::string, std::string> state_;
  std::uint64_t ticket_ = 0;
  std::uint64_t refused_ = 0;
  bool full_ = false;
  bool closed_ = false;
};

}  // namespace cistern::testing
