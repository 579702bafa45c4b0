// Pure helpers of PcapSource, kept apart from the capture thread so that unit tests reach them
// without a pcap handle.
#pragma once

#include <cstdint>

namespace cistern::capture {

// libpcap reports ps_recv, ps_drop and ps_ifdrop as `u_int`, which wraps at 2^32 (a few minutes
// at line rate on a 10G link). Given the 64-bit total so far, the previous 32-bit reading and the
// current one, returns the new total. Correct as long as the counter is read at least once per
// 2^32 increments; a reading below the previous one is taken as one wrap, never as a decrease.
constexpr std::uint64_t accumulateWrapped32(std::uint64_t total, std::uint32_t previous,
                                            std::uint32_t current) noexcept {
  return total + static_cast<std::uint32_t>(current - previous);
}

// One 32-bit libpcap counter accumulated into 64 bits. libpcap's counters start at 0 when the
// handle is activated, so the first reading counts in full.
class Wrapped32 {
 public:
  // Feeds the counter's current reading; returns the 64-bit total.
  std::uint64_t update(std::uint32_t reading) noexcept {
    total_ = accumulateWrapped32(total_, last_, reading);
    last_ = reading;
    return total_;
  }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }

 private:
  std::uint64_t total_ = 0;
  std::uint32_t last_ = 0;
};

// The LINKTYPE_* value (what pcap files and PacketMeta carry) of a DLT_* value (what
// pcap_datalink() returns). They are equal except for a few DLT_ codes whose numbers differ
// between platforms; those have LINKTYPE_ codes of their own. Negative input returns -1.
int linkTypeOfDlt(int dlt) noexcept;

// Nanoseconds since the epoch of a pcap timestamp whose fraction is in nanoseconds (`nano`) or
// microseconds. Timestamps before the epoch (damaged files) give 0; overflow saturates.
std::uint64_t timestampNs(std::int64_t seconds, std::int64_t fraction, bool nano) noexcept;

}  // namespace cistern::capture
