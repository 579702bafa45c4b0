#include "cistern/core/pcapng.h"

#include <algorithm>

#include "cistern/core/bytes.h"

namespace cistern {
namespace {

constexpr std::uint32_t kSectionHeader = 0x0A0D0D0A;
constexpr std::uint32_t kInterfaceDescription = 1;
constexpr std::uint32_t kEnhancedPacket = 6;
constexpr std::uint16_t kOptEnd = 0;
constexpr std::uint16_t kOptShbUserAppl = 4;
constexpr std::uint16_t kOptIfName = 2;
constexpr std::uint16_t kOptIfTsresol = 9;

std::size_t padded(std::size_t n) { return (n + 3U) & ~std::size_t{3}; }

template <typename T>
void put(std::vector<std::byte>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  bytes::storeLe<T>(out.data() + at, v);
}

void putPadded(std::vector<std::byte>& out, std::span<const std::byte> data) {
  out.insert(out.end(), data.begin(), data.end());
  out.resize(out.size() + padded(data.size()) - data.size(), std::byte{0});
}

void putOption(std::vector<std::byte>& out, std::uint16_t code, std::span<const std::byte> value) {
  put<std::uint16_t>(out, code);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(value.size()));
  putPadded(out, value);
}

std::span<const std::byte> asBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), std::min<std::size_t>(s.size(), 0xFFFF)};
}

// Writes a block's type and a placeholder length; finish() fills both lengths.
std::size_t start(std::vector<std::byte>& out, std::uint32_t type) {
  const std::size_t at = out.size();
  put<std::uint32_t>(out, type);
  put<std::uint32_t>(out, 0);
  return at;
}

void finish(std::vector<std::byte>& out, std::size_t at) {
  const auto total = static_cast<std::uint32_t>(out.size() - at + 4);
  put<std::uint32_t>(out, total);
  bytes::storeLe<std::uint32_t>(out.data() + at + 4, total);
}

}  // namespace

void PcapngEncoder::begin(std::vector<std::byte>& out, std::string_view application) {
  const std::size_t at = start(out, kSectionHeader);
  put<std::uint32_t>(out, 0x1A2B3C4D);
  put<std::uint16_t>(out, 1);
  put<std::uint16_t>(out, 0);
  put<std::int64_t>(out, -1);  // section length not given
  putOption(out, kOptShbUserAppl, asBytes(application));
  put<std::uint32_t>(out, kOptEnd);
  finish(out, at);
}

void PcapngEncoder::packet(std::vector<std::byte>& out, std::string_view input,
                           std::uint32_t link_type, std::uint64_t timestamp_ns,
                           std::span<const std::byte> data, std::uint32_t original_length) {
  auto key = std::make_pair(std::string(input), link_type);
  auto it = interfaces_.find(key);
  if (it == interfaces_.end()) {
    const auto id = static_cast<std::uint32_t>(interfaces_.size());
    it = interfaces_.emplace(std::move(key), id).first;
    const std::size_t at = start(out, kInterfaceDescription);
    put<std::uint16_t>(out, static_cast<std::uint16_t>(link_type));
    put<std::uint16_t>(out, 0);
    put<std::uint32_t>(out, kSnapLength);
    putOption(out, kOptIfName, asBytes(input));
    const std::byte nanoseconds{9};
    putOption(out, kOptIfTsresol, std::span<const std::byte>(&nanoseconds, 1));
    put<std::uint32_t>(out, kOptEnd);
    finish(out, at);
  }
  const std::size_t caplen = std::min<std::size_t>(data.size(), kSnapLength);
  const std::size_t at = start(out, kEnhancedPacket);
  put<std::uint32_t>(out, it->second);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(timestamp_ns >> 32U));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(timestamp_ns & 0xFFFFFFFFU));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(caplen));
  put<std::uint32_t>(out, std::max(original_length, static_cast<std::uint32_t>(caplen)));
  putPadded(out, data.first(caplen));
  finish(out, at);
}

}  // namespace cistern
