// Helpers for ring tests: records that carry a sequence number, and draining a consumer.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cistern/buffer/ring.h"
#include "cistern/core/bytes.h"
#include "cistern/core/record.h"

// REQUIRE that a Status/Result holds a value, printing the error when it does not.
#define REQUIRE_OK(expr)                                                              \
  do {                                                                                \
    const auto& require_ok_result = (expr);                                           \
    INFO((require_ok_result ? std::string() : require_ok_result.error().describe())); \
    REQUIRE(require_ok_result);                                                       \
  } while (false)

namespace cistern::testing {

// Appends records seq [first, first+count) of `size` payload bytes each; the payload starts
// with the sequence number and is filled with a byte derived from it.
inline buffer::Ticket appendSeq(buffer::LmdbRing& ring, std::uint64_t first, std::uint64_t count,
                                std::size_t size = 200, std::string_view input = "test",
                                buffer::Wait wait = buffer::Wait::kYes) {
  std::vector<std::vector<std::byte>> payloads(count, std::vector<std::byte>(size));
  std::vector<RecordInput> records(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    auto& p = payloads[i];
    const std::uint64_t seq = first + i;
    std::memset(p.data(), static_cast<int>(seq & 0x7fU), p.size());
    if (size >= 8) bytes::storeLe<std::uint64_t>(p.data(), seq);
    records[i] = RecordInput{RecordKind::kTest, 1'000'000'000ULL + seq, input, {}, p};
  }
  auto ticket = ring.append(records, {}, wait);
  return ticket ? *ticket : 0;
}

inline std::uint64_t seqOf(const RecordView& r) {
  return bytes::loadLe<std::uint64_t>(r.payload.data());
}

// Sequence numbers of every record in the batch, in order; checks payload filler too.
inline std::vector<std::uint64_t> seqsOf(const buffer::ReadBatch& batch, bool* intact = nullptr) {
  std::vector<std::uint64_t> out;
  for (const auto& f : batch.frames()) {
    RecordReader reader(f.body);
    while (const auto* r = reader.next()) {
      const std::uint64_t seq = seqOf(*r);
      out.push_back(seq);
      if (intact != nullptr) {
        for (std::size_t i = 8; i < r->payload.size(); ++i) {
          if (r->payload[i] != static_cast<std::byte>(seq & 0x7fU)) *intact = false;
        }
        if (r->timestamp_ns != 1'000'000'000ULL + seq) *intact = false;
      }
    }
    if (reader.failed() && intact != nullptr) *intact = false;
  }
  return out;
}

// Reads everything the consumer has, acknowledging as it goes when `ack` is set.
inline std::vector<std::uint64_t> drain(buffer::Consumer& c, bool ack = true,
                                        bool* intact = nullptr) {
  std::vector<std::uint64_t> all;
  buffer::ReadBatch batch;
  for (;;) {
    auto n = c.readNext(batch);
    if (!n || *n == 0) break;
    for (auto s : seqsOf(batch, intact)) all.push_back(s);
    if (ack) {
      for (const auto& f : batch.frames()) c.ack(f.id);
    }
  }
  return all;
}

inline buffer::RingOptions smallRing(const std::filesystem::path& dir) {
  buffer::RingOptions o;
  o.dir = dir;
  o.max_size = 8ULL << 20U;
  o.commit_interval = std::chrono::milliseconds(2);
  o.commit_max_bytes = 1ULL << 20U;
  o.frame_max_bytes = 16U << 10U;
  o.ingest_max_bytes = 4ULL << 20U;
  return o;
}

}  // namespace cistern::testing
