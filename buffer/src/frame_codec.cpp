#include "frame_codec.h"

#include <cstring>

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

FrameEncoder::FrameEncoder(Codec codec, int zstd_level) : codec_(codec), zstd_level_(zstd_level) {
  if (codec_ == Codec::kZstd) cctx_ = ZSTD_createCCtx();
}

FrameEncoder::~FrameEncoder() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_)); }

Result<std::size_t> FrameEncoder::prepare(FrameId id, const FrameBody& body) {
  if (body.bytes.size() > UINT32_MAX) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("frame body of {} bytes exceeds 4 GiB", body.bytes.size()));
  }
  header_ = FrameHeader{};
  header_.frame_id = id;
  header_.record_count = body.record_count;
  header_.raw_len = static_cast<std::uint32_t>(body.bytes.size());
  header_.first_ts = body.record_count > 0 ? body.first_ts : 0;
  header_.last_ts = body.last_ts;
  stored_ = body.bytes;
  if (codec_ == Codec::kZstd && !body.bytes.empty()) {
    scratch_.resize(ZSTD_compressBound(body.bytes.size()));
    const std::size_t n =
        ZSTD_compressCCtx(static_cast<ZSTD_CCtx*>(cctx_), scratch_.data(), scratch_.size(),
                          body.bytes.data(), body.bytes.size(), zstd_level_);
    if (ZSTD_isError(n) != 0U) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("zstd compression failed: {}", ZSTD_getErrorName(n)));
    }
    // Incompressible data (encrypted payloads, random bytes) is stored raw.
    if (n < body.bytes.size()) {
      header_.codec = Codec::kZstd;
      stored_ = std::span<const std::byte>(scratch_.data(), n);
    }
  }
  header_.stored_len = static_cast<std::uint32_t>(stored_.size());
  return kFrameHeaderBytes + stored_.size();
}

void FrameEncoder::write(std::byte* out) const {
  FrameHeader h = header_;
  h.checksum = 0;
  encodeHeader(h, out);
  if (!stored_.empty()) std::memcpy(out + kFrameHeaderBytes, stored_.data(), stored_.size());
  bytes::storeLe<std::uint64_t>(out + 48, frameChecksum(out, stored_));
}

Result<FrameHeader> checkFrame(std::span<const std::byte> stored, FrameId expected_id) {
  if (stored.size() < kFrameHeaderBytes) {
    return fail(ErrorCode::kCorrupt, fmt::format("frame {}: {} bytes is shorter than the header",
                                                 expected_id, stored.size()));
  }
  const std::byte* p = stored.data();
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
  if (h.stored_len != stored.size() - kFrameHeaderBytes) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame {}: stored length {} but {} body bytes present", expected_id,
                            h.stored_len, stored.size() - kFrameHeaderBytes));
  }
  const std::uint64_t actual = frameChecksum(p, stored.subspan(kFrameHeaderBytes));
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

Status decodeFrameBody(std::span<const std::byte> stored, const FrameHeader& header,
                       std::vector<std::byte>& out) {
  const std::span<const std::byte> body = stored.subspan(kFrameHeaderBytes);
  const std::size_t at = out.size();
  out.resize(at + header.raw_len);
  if (header.codec == Codec::kNone) {
    if (!body.empty()) std::memcpy(out.data() + at, body.data(), body.size());
    return ok();
  }
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
