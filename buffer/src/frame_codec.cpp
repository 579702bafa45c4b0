#include "frame_codec.h"

#include <cstring>
#include <utility>

#include <fmt/format.h>
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>
#include <zstd.h>

#include "cistern/core/bytes.h"

namespace cistern::buffer {
namespace {

void encodeHeader(const FrameHeader& h, std::byte* p) {
  bytes::storeLe<std::uint32_t>(p, kFrameMagic);
  p[4] = static_cast<std::byte>(h.version);
  p[5] = static_cast<std::byte>(h.codec);
  p[6] = std::byte{0};
  p[7] = std::byte{0};
  bytes::storeLe<std::uint64_t>(p + 8, h.frame_id);
  bytes::storeLe<std::uint32_t>(p + 16, h.record_count);
  bytes::storeLe<std::uint32_t>(p + 20, h.raw_len);
  bytes::storeLe<std::uint32_t>(p + 24, h.stored_len);
  bytes::storeLe<std::uint32_t>(p + 28, 0);
  bytes::storeLe<std::uint64_t>(p + 32, h.first_ts);
  bytes::storeLe<std::uint64_t>(p + 40, h.last_ts);
  bytes::storeLe<std::uint64_t>(p + 48, h.checksum);
}

std::uint64_t frameChecksum(const std::byte* header, std::span<const std::byte> body) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, 48);
  XXH3_64bits_update(&state, body.data(), body.size());
  return XXH3_64bits_digest(&state);
}

}  // namespace

ByteBuffer& ByteBuffer::operator=(ByteBuffer&& other) noexcept {
  if (this != &other) {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

void ByteBuffer::reallocate(std::size_t n) {
  auto fresh = std::make_unique_for_overwrite<std::byte[]>(n);
  if (size_ > 0) std::memcpy(fresh.get(), data_.get(), size_);
  data_ = std::move(fresh);
  capacity_ = n;
}

namespace {

// Header and checksum over a frame whose body (raw or compressed) follows the header in `out`.
void sealHeader(FrameHeader h, std::byte* out) {
  h.checksum = 0;
  encodeHeader(h, out);
  const std::span<const std::byte> body(out + kFrameHeaderBytes, h.stored_len);
  bytes::storeLe<std::uint64_t>(out + 48, frameChecksum(out, body));
}

FrameHeader headerOf(const FrameBody& frame) {
  FrameHeader h;
  h.frame_id = frame.id;
  h.record_count = frame.record_count;
  h.raw_len = static_cast<std::uint32_t>(frame.bodyBytes());
  h.stored_len = h.raw_len;
  h.first_ts = frame.record_count > 0 ? frame.first_ts : 0;
  h.last_ts = frame.last_ts;
  return h;
}

}  // namespace

bool finishRawFrame(FrameBody& frame) {
  if (frame.bodyBytes() > UINT32_MAX) return false;
  if (frame.bytes.empty()) frame.bytes.append(kFrameHeaderBytes);
  sealHeader(headerOf(frame), frame.bytes.data());
  frame.finished = true;
  return true;
}

FrameEncoder::FrameEncoder(Codec codec, int zstd_level) : codec_(codec), zstd_level_(zstd_level) {
  if (codec_ == Codec::kZstd) cctx_ = ZSTD_createCCtx();
}

FrameEncoder::~FrameEncoder() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_)); }

Status FrameEncoder::finish(FrameBody& frame) {
  const std::size_t raw = frame.bodyBytes();
  if (raw > UINT32_MAX) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("frame body of {} bytes exceeds 4 GiB", raw));
  }
  if (codec_ == Codec::kZstd && raw > 0) {
    scratch_.resize(kFrameHeaderBytes + ZSTD_compressBound(raw));
    const std::size_t n =
        ZSTD_compressCCtx(static_cast<ZSTD_CCtx*>(cctx_), scratch_.data() + kFrameHeaderBytes,
                          scratch_.size() - kFrameHeaderBytes,
                          frame.bytes.data() + kFrameHeaderBytes, raw, zstd_level_);
    // Incompressible data (encrypted payloads, random bytes) is stored raw; so is a body zstd
    // failed on, which is better than losing it.
    if (ZSTD_isError(n) == 0U && n < raw) {
      FrameHeader h = headerOf(frame);
      h.codec = Codec::kZstd;
      h.stored_len = static_cast<std::uint32_t>(n);
      scratch_.resize(kFrameHeaderBytes + n);
      sealHeader(h, scratch_.data());
      // The compressed frame takes the body's buffer's place; the body's buffer is the next
      // scratch space.
      std::swap(scratch_, frame.bytes);
      frame.finished = true;
      return ok();
    }
  }
  finishRawFrame(frame);
  return ok();
}

Result<FrameHeader> checkFrame(std::span<const std::byte> stored, FrameId expected_id) {
  if (stored.size() < kFrameHeaderBytes) {
    return fail(ErrorCode::kCorrupt, fmt::format("frame {}: {} bytes is shorter than the header",
                                                 expected_id, stored.size()));
  }
  return checkFrame(stored.first<kFrameHeaderBytes>(), stored.subspan(kFrameHeaderBytes),
                    expected_id);
}

Result<FrameHeader> checkFrame(std::span<const std::byte, kFrameHeaderBytes> header,
                               std::span<const std::byte> body, FrameId expected_id) {
  const std::byte* p = header.data();
  if (bytes::loadLe<std::uint32_t>(p) != kFrameMagic) {
    return fail(ErrorCode::kCorrupt, fmt::format("frame {}: bad magic", expected_id));
  }
  FrameHeader h;
  h.version = std::to_integer<std::uint8_t>(p[4]);
  h.codec = static_cast<Codec>(p[5]);
  h.frame_id = bytes::loadLe<std::uint64_t>(p + 8);
  h.record_count = bytes::loadLe<std::uint32_t>(p + 16);
  h.raw_len = bytes::loadLe<std::uint32_t>(p + 20);
  h.stored_len = bytes::loadLe<std::uint32_t>(p + 24);
  h.first_ts = bytes::loadLe<std::uint64_t>(p + 32);
  h.last_ts = bytes::loadLe<std::uint64_t>(p + 40);
  h.checksum = bytes::loadLe<std::uint64_t>(p + 48);
  if (h.version != kFrameVersion) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: unsupported version {}", expected_id, h.version));
  }
  if (h.stored_len != body.size()) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: stored length {} but {} body bytes present", expected_id,
                            h.stored_len, body.size()));
  }
  const std::uint64_t actual = frameChecksum(p, body);
  if (actual != h.checksum) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: checksum mismatch (stored {:016x}, computed {:016x})",
                            expected_id, h.checksum, actual));
  }
  if (h.frame_id != expected_id) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: header carries id {}", expected_id, h.frame_id));
  }
  if (h.codec != Codec::kNone && h.codec != Codec::kZstd) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: unknown codec {}", expected_id, static_cast<int>(h.codec)));
  }
  if (h.codec == Codec::kNone && h.raw_len != h.stored_len) {
    return fail(ErrorCode::kCorrupt, fmt::format("frame {}: raw and stored lengths differ for "
                                                 "an uncompressed frame",
                                                 expected_id));
  }
  return h;
}

Status decodeFrameBody(std::span<const std::byte> body, const FrameHeader& header,
                       std::vector<std::byte>& out) {
  if (header.codec == Codec::kNone) {
    // insert() copies into the new space directly; resize() would zero-fill it first.
    out.insert(out.end(), body.begin(), body.end());
    return ok();
  }
  const std::size_t at = out.size();
  out.resize(at + header.raw_len);
  const std::size_t n = ZSTD_decompress(out.data() + at, header.raw_len, body.data(), body.size());
  if (ZSTD_isError(n) != 0U || n != header.raw_len) {
    out.resize(at);
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: zstd decompression failed: {}", header.frame_id,
                            ZSTD_isError(n) != 0U ? ZSTD_getErrorName(n) : "length mismatch"));
  }
  return ok();
}

}  // namespace cistern::buffer
