#include "pcap_util.h"

#include <pcap/pcap.h>

#include <limits>

namespace cistern::capture {

int linkTypeOfDlt(int dlt) noexcept {
  if (dlt < 0) return -1;
  // The values libpcap's own dlt_to_linktype() (not exported) maps differently on Linux; every
  // other DLT_ value is its LINKTYPE_ value.
  switch (dlt) {
    case DLT_ATM_RFC1483:
      return 100;  // LINKTYPE_ATM_RFC1483
    case DLT_RAW:
      return 101;  // LINKTYPE_RAW
    case DLT_SLIP_BSDOS:
      return 102;  // LINKTYPE_SLIP_BSDOS
    case DLT_PPP_BSDOS:
      return 103;  // LINKTYPE_PPP_BSDOS
    case DLT_ATM_CLIP:
      return 106;  // LINKTYPE_ATM_CLIP
    default:
      return dlt;
  }
}

std::uint64_t timestampNs(std::int64_t seconds, std::int64_t fraction, bool nano) noexcept {
  if (seconds < 0 || fraction < 0) return 0;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  constexpr std::uint64_t kNsPerSecond = 1'000'000'000;
  const auto sec = static_cast<std::uint64_t>(seconds);
  auto frac = static_cast<std::uint64_t>(fraction);
  if (!nano) {
    if (frac > kMax / 1000) return kMax;
    frac *= 1000;
  }
  if (sec > (kMax - frac) / kNsPerSecond) return kMax;
  return sec * kNsPerSecond + frac;
}

}  // namespace cistern::capture
