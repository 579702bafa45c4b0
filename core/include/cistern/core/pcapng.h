// PcapngEncoder: packet records as a pcapng stream (the format tshark and Wireshark read), for
// `cistern buffer export` and the file output.
//
// Layout: one Section Header Block, an Interface Description Block the first time each (input
// name, link type) pair appears (if_name = the input's name, if_tsresol = nanoseconds), then one
// Enhanced Packet Block per packet. All little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cistern {

class PcapngEncoder {
 public:
  // Appends the Section Header Block. Call once, first.
  void begin(std::vector<std::byte>& out, std::string_view application);

  // Appends an Enhanced Packet Block (and the interface's description first if it is new).
  // `data` longer than 2^32-1 bytes or the snap length is cut to it.
  void packet(std::vector<std::byte>& out, std::string_view input, std::uint32_t link_type,
              std::uint64_t timestamp_ns, std::span<const std::byte> data,
              std::uint32_t original_length);

  [[nodiscard]] std::size_t interfaces() const { return interfaces_.size(); }

  static constexpr std::uint32_t kSnapLength = 262144;

 private:
  std::map<std::pair<std::string, std::uint32_t>, std::uint32_t> interfaces_;
};

}  // namespace cistern
