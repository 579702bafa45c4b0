// Fixed-width little- and big-endian loads and stores on byte buffers.
//
// All functions take unaligned pointers; the caller guarantees the range is in bounds.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cistern::bytes {

template <typename T>
inline T loadLe(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = byteswap(v);
  return v;
}

template <typename T>
inline void storeLe(std::byte* p, T v) noexcept {
  if constexpr (std::endian::native == std::endian::big) v = byteswap(v);
  std::memcpy(p, &v, sizeof v);
}

inline std::uint64_t loadBe64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

inline void storeBe64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::byte>(v & 0xffU);
    v >>= 8;
  }
}

}  // namespace cistern::bytes
