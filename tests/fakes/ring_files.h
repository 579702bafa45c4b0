// Reading and damaging a ring's data.mdb on disk, for corruption tests. The ring must be closed.
// Frame layout as in buffer/src/frame_codec.h: magic "CSF1" at 0, codec at 5, frame id at 8,
// stored length at 24, checksum at 48, body at 56.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <vector>

#include "cistern/core/bytes.h"

namespace cistern::testing {

inline constexpr std::byte kFrameMagic[4] = {std::byte{0x43}, std::byte{0x53}, std::byte{0x46},
                                             std::byte{0x31}};
inline constexpr std::size_t kFrameCodecAt = 5;
inline constexpr std::size_t kFrameIdAt = 8;
inline constexpr std::size_t kFrameStoredLenAt = 24;
inline constexpr std::size_t kFrameHeaderBytes = 56;

// The whole file; aborts the test binary if it cannot be read.
inline std::vector<std::byte> readFile(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::abort();
  std::vector<std::byte> data(std::filesystem::file_size(p));
  std::size_t at = 0;
  while (at < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + at, data.size() - at, static_cast<off_t>(at));
    if (n <= 0) std::abort();
    at += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return data;
}

// Overwrites bytes at `offset` and fsyncs; returns false on any error.
inline bool writeAt(const std::filesystem::path& p, std::size_t offset,
                    std::span<const std::byte> b) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::pwrite(fd, b.data(), b.size(), static_cast<off_t>(offset)) ==
                      static_cast<ssize_t>(b.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

inline std::vector<std::size_t> findAll(std::span<const std::byte> hay,
                                        std::span<const std::byte> needle) {
  std::vector<std::size_t> at;
  auto it = hay.begin();
  while ((it = std::search(it, hay.end(), needle.begin(), needle.end())) != hay.end()) {
    at.push_back(static_cast<std::size_t>(it - hay.begin()));
    ++it;
  }
  return at;
}

inline bool isFrameHeaderOf(std::span<const std::byte> data, std::size_t at, std::uint64_t id) {
  return at + kFrameHeaderBytes <= data.size() &&
         std::equal(kFrameMagic, kFrameMagic + 4, data.begin() + static_cast<std::ptrdiff_t>(at)) &&
         bytes::loadLe<std::uint64_t>(data.data() + at + kFrameIdAt) == id;
}

// Offsets of every stored copy of frame `id`'s header (stale copies may sit in free pages).
inline std::vector<std::size_t> frameHeadersOf(std::span<const std::byte> data, std::uint64_t id) {
  std::vector<std::size_t> out;
  for (std::size_t at : findAll(data, kFrameMagic)) {
    if (isFrameHeaderOf(data, at, id)) out.push_back(at);
  }
  return out;
}

// Inverts four bytes in the middle of the stored body of every copy of frame `id`; returns how
// many copies were damaged.
inline std::size_t damageFrameBody(const std::filesystem::path& file, std::uint64_t id) {
  const auto data = readFile(file);
  const auto headers = frameHeadersOf(data, id);
  for (std::size_t h : headers) {
    const auto stored = bytes::loadLe<std::uint32_t>(data.data() + h + kFrameStoredLenAt);
    const std::size_t at = h + kFrameHeaderBytes + stored / 2;
    if (stored < 8 || at + 4 > data.size()) std::abort();
    std::vector<std::byte> b(data.begin() + static_cast<std::ptrdiff_t>(at),
                             data.begin() + static_cast<std::ptrdiff_t>(at + 4));
    for (auto& x : b) x ^= std::byte{0xff};
    if (!writeAt(file, at, b)) std::abort();
  }
  return headers.size();
}

}  // namespace cistern::testing
