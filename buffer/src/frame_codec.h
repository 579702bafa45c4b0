// The stored form of a frame: a fixed header followed by the record body, raw or zstd-compressed.
//
//   offset  size  field
//        0     4  magic        "CSF1"
//        4     1  version      1
//        5     1  codec        0 none, 1 zstd
//        6     1  cipher       0 none (reserved for AES-256-GCM)
//        7     1  flags        0
//        8     8  frame id     same as the LMDB key; catches misplaced values
//       16     4  record count
//       20     4  raw length   body bytes after decompression
//       24     4  stored length body bytes as stored after the header
//       28     4  reserved     0
//       32     8  first timestamp (ns since the epoch; minimum over the records)
//       40     8  last timestamp  (maximum over the records)
//       48     8  checksum     XXH3-64 of bytes 0..47 and the stored body
//       56     .  body
//
// All integers little-endian. The checksum is checked before the body is decompressed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cistern/buffer/options.h"
#include "cistern/buffer/types.h"
#include "cistern/core/result.h"

namespace cistern::buffer {

inline constexpr std::uint32_t kFrameMagic = 0x31465343;  // "CSF1" little-endian
inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::size_t kFrameHeaderBytes = 56;

struct FrameHeader {
  std::uint8_t version = kFrameVersion;
  Codec codec = Codec::kNone;
  std::uint64_t frame_id = 0;
  std::uint32_t record_count = 0;
  std::uint32_t raw_len = 0;
  std::uint32_t stored_len = 0;
  std::uint64_t first_ts = 0;
  std::uint64_t last_ts = 0;
  std::uint64_t checksum = 0;
};

// A frame body waiting to be stored: encoded records and what the header needs to know of them.
struct FrameBody {
  std::vector<std::byte> bytes;
  std::uint32_t record_count = 0;
  std::uint64_t first_ts = UINT64_MAX;
  std::uint64_t last_ts = 0;
};

// Compresses when asked and when it pays off; owns the scratch space, so one per writer thread.
class FrameEncoder {
 public:
  FrameEncoder(Codec codec, int zstd_level);
  ~FrameEncoder();
  FrameEncoder(const FrameEncoder&) = delete;
  FrameEncoder& operator=(const FrameEncoder&) = delete;

  // Prepares `body` as frame `id`; returns the total stored size (header + stored body).
  Result<std::size_t> prepare(FrameId id, const FrameBody& body);
  // Writes the prepared frame into `out` (exactly the size prepare() returned).
  void write(std::byte* out) const;
  [[nodiscard]] const FrameHeader& header() const { return header_; }

 private:
  Codec codec_;
  int zstd_level_;
  void* cctx_ = nullptr;  // ZSTD_CCtx, kept opaque so zstd.h stays in the .cpp
  std::vector<std::byte> scratch_;
  std::span<const std::byte> stored_;
  FrameHeader header_;
};

// Parses and checks a stored frame: magic, version, codec, lengths, checksum and that the id in
// the header equals `expected_id`. Returns the header; kCorrupt with the reason otherwise.
Result<FrameHeader> checkFrame(std::span<const std::byte> stored, FrameId expected_id);

// Appends the frame's raw body (decompressed if needed) to `out`. `stored` must have passed
// checkFrame(). kCorrupt if decompression fails or yields another length.
Status decodeFrameBody(std::span<const std::byte> stored, const FrameHeader& header,
                       std::vector<std::byte>& out);

}  // namespace cistern::buffer
