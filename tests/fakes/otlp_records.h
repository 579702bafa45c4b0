// BatchBuilder: builds a ReadBatch (frames of encoded records) in memory, as a FrameCursor would
// return it, for tests of senders and encoders.
//
//   auto batch = BatchBuilder()
//                    .frame(7)
//                    .logLine("app", 1000, "/var/log/app.log", 0, 0, "hello")
//                    .packet("lan", 2000, 1, 60, bytes)
//                    .build();
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/core/frames.h"
#include "cistern/core/record.h"
#include "cistern/core/record_meta.h"

namespace cistern::testing {

inline std::span<const std::byte> asBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class BatchBuilder {
 public:
  // Starts a frame; records added after it go into it.
  BatchBuilder& frame(FrameId id) {
    frames_.push_back(Frame{id, {}, 0});
    return *this;
  }

  BatchBuilder& packet(std::string_view input, std::uint64_t ts, std::uint32_t link_type,
                       std::uint32_t original_length, std::string_view data) {
    std::vector<std::byte> meta;
    encodePacketMeta(PacketMeta{link_type, original_length}, meta);
    return raw(RecordKind::kPacket, input, ts, meta, data);
  }

  BatchBuilder& logLine(std::string_view input, std::uint64_t ts, std::string_view path,
                        std::uint64_t offset, std::uint8_t flags, std::string_view line) {
    std::vector<std::byte> meta;
    encodeLogLineMeta(LogLineMeta{flags, offset, path}, meta);
    return raw(RecordKind::kLogLine, input, ts, meta, line);
  }

  BatchBuilder& syslog(std::string_view input, std::uint64_t ts, const SyslogMeta& meta_in,
                       std::string_view message) {
    std::vector<std::byte> meta;
    encodeSyslogMeta(meta_in, meta);
    return raw(RecordKind::kSyslog, input, ts, meta, message);
  }

  // Any kind with any metadata bytes (malformed ones included).
  BatchBuilder& raw(RecordKind kind, std::string_view input, std::uint64_t ts,
                    std::span<const std::byte> meta, std::string_view payload) {
    if (frames_.empty()) frame(1);
    const RecordInput r{kind, ts, input, meta, asBytes(payload)};
    Frame& f = frames_.back();
    const std::size_t at = f.body.size();
    f.body.resize(at + encodedRecordSize(r));
    encodeRecord(r, f.body.data() + at);
    ++f.records;
    if (f.first_ts == 0) f.first_ts = ts;
    f.last_ts = ts;
    return *this;
  }

  // Cuts the last `n` bytes of the current frame's body (its record count stays): the record
  // reader then fails on the last record.
  BatchBuilder& truncate(std::size_t n) {
    auto& body = frames_.back().body;
    body.resize(body.size() - n);
    return *this;
  }

  [[nodiscard]] ReadBatch build() const {
    ReadBatch batch;
    for (const Frame& f : frames_) {
      auto& storage = batch.storage();
      const std::size_t offset = storage.size();
      storage.insert(storage.end(), f.body.begin(), f.body.end());
      FrameView view;
      view.id = f.id;
      view.record_count = f.records;
      view.first_ts = f.first_ts;
      view.last_ts = f.last_ts;
      view.stored_bytes = static_cast<std::uint32_t>(f.body.size() + 56);
      batch.addFrame(view, offset, f.body.size());
    }
    batch.seal();
    return batch;
  }

 private:
  struct Frame {
    FrameId id = 0;
    std::vector<std::byte> body;
    std::uint32_t records = 0;
    std::uint64_t first_ts = 0;
    std::uint64_t last_ts = 0;
  };
  std::vector<Frame> frames_;
};

}  // namespace cistern::testing
