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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
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

// A growable byte buffer whose new bytes are left uninitialised. Frames are written once, record
// by record, so std::vector's resize() would write every byte twice (zero-fill, then the copy);
// the zero-fill was a tenth of a capture thread's time.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept { *this = std::move(other); }
  ByteBuffer& operator=(ByteBuffer&& other) noexcept;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() = default;

  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  [[nodiscard]] std::byte* data() { return data_.get(); }
  [[nodiscard]] const std::byte* data() const { return data_.get(); }
  [[nodiscard]] std::span<const std::byte> span() const { return {data_.get(), size_}; }

  // Keeps the capacity.
  void clear() { size_ = 0; }
  void reserve(std::size_t n) {
    if (n > capacity_) reallocate(n);
  }
  // Adds `n` uninitialised bytes at the end and returns where they start; the caller writes them.
  std::byte* append(std::size_t n) {
    if (capacity_ - size_ < n) reallocate(std::max(size_ + n, 2 * capacity_));
    std::byte* p = data_.get() + size_;
    size_ += n;
    return p;
  }
  // Sets the size; bytes beyond the old size are uninitialised.
  void resize(std::size_t n) {
    reserve(n);
    size_ = n;
  }

 private:
  void reallocate(std::size_t n);
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// A frame on its way to the ring, built in its stored form so that the writer copies it into
// LMDB in one piece: kFrameHeaderBytes left for the header, then the encoded records. Sealing
// gives it its id; finishing writes the header and the checksum (and compresses the body when
// asked), after which `bytes` is exactly the value stored under the id.
struct FrameBody {
  ByteBuffer bytes;
  std::uint32_t record_count = 0;
  std::uint64_t first_ts = UINT64_MAX;
  std::uint64_t last_ts = 0;
  FrameId id = 0;         // 0 until sealed; frames without records never get one
  bool finished = false;  // header and checksum written

  // Where the next record goes: `n` bytes after the ones already encoded.
  std::byte* appendRecord(std::size_t n) {
    if (bytes.empty()) bytes.append(kFrameHeaderBytes);
    return bytes.append(n);
  }
  [[nodiscard]] std::size_t bodyBytes() const {
    return bytes.size() < kFrameHeaderBytes ? 0 : bytes.size() - kFrameHeaderBytes;
  }
};

// Writes the header and checksum of an uncompressed frame. Producers call it when they seal a
// frame, so the checksum is computed while the records are still in their cache and not on the
// writer thread, which is the ring's bottleneck. False when the body is too large to describe
// (over 4 GiB): the frame stays unfinished and the writer drops it, counted.
bool finishRawFrame(FrameBody& frame);

// Finishes frames with the ring's codec: compresses when it pays off, then header and checksum.
// Owns the compression context and scratch space, so one per writer thread.
class FrameEncoder {
 public:
  FrameEncoder(Codec codec, int zstd_level);
  ~FrameEncoder();
  FrameEncoder(const FrameEncoder&) = delete;
  FrameEncoder& operator=(const FrameEncoder&) = delete;

  // Finishes `frame` (sealed, with records). Errors: kInvalidArgument when the body is too large
  // for the header's 32-bit lengths.
  Status finish(FrameBody& frame);

 private:
  Codec codec_;
  int zstd_level_;
  void* cctx_ = nullptr;  // ZSTD_CCtx, kept opaque so zstd.h stays in the .cpp
  ByteBuffer scratch_;
};

// Parses and checks a stored frame: magic, version, codec, lengths, checksum and that the id in
// the header equals `expected_id`. Returns the header; kCorrupt with the reason otherwise.
Result<FrameHeader> checkFrame(std::span<const std::byte> stored, FrameId expected_id);
// The same for a frame read in two parts: its first kFrameHeaderBytes and the body after them.
Result<FrameHeader> checkFrame(std::span<const std::byte, kFrameHeaderBytes> header,
                               std::span<const std::byte> body, FrameId expected_id);

// Appends the frame's raw body (decompressed if needed) to `out`. `body` is the stored body (what
// follows the header), of a frame that passed checkFrame(). kCorrupt if decompression fails or
// yields another length.
Status decodeFrameBody(std::span<const std::byte> body, const FrameHeader& header,
                       std::vector<std::byte>& out);

}  // namespace cistern::buffer
