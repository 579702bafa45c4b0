// PcapSource: packets from a live interface or a pcap/pcapng file, through libpcap.
//
// Live capture runs a dedicated thread on a TPACKET_V3 ring (no immediate mode) and never blocks
// on the sink: when the sink has no room the packets are counted as dropped in the agent, so the
// kernel ring keeps draining. A file is read on the same kind of thread, as fast as the sink
// takes it (`replay: fast`, waiting for room, nothing dropped) or at the pace of its timestamps
// (`realtime`).
//
// Every packet becomes one RecordKind::kPacket record: the input's name, the capture timestamp
// in nanoseconds, PacketMeta (link type, original length) and the captured bytes.
//
// Counters (Source::counters(), in this order):
//   packets_received           live: the kernel's ps_recv (wrap handled); file: packets read
//   packets_captured           handed to Cistern by libpcap
//   packets_dropped_kernel     live: ps_drop, the 32-bit counter's wraps accumulated; file: 0
//   packets_dropped_interface  live: ps_ifdrop where the platform reports it, else unknown
//   packets_dropped_agent      captured, but the sink had no room (live only)
//   packets_stored             appended to the sink
//   bytes_captured             captured bytes of the stored packets
//   file_errors                a damaged or truncated file stopped being read (0 or 1 per run)
// They reconcile: packets_captured = packets_dropped_agent + packets_stored.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "cistern/capture/source.h"
#include "cistern/core/sink.h"

namespace cistern::capture {

enum class Replay { kFast, kRealtime };

struct PcapOptions {
  std::string name;       // the input's name, 1..255 bytes
  std::string interface;  // live capture: the interface name ("eth0", "any")
  std::string file;       // offline: a pcap or pcapng file; exactly one of interface and file
  Replay replay = Replay::kFast;
  std::string filter;                      // BPF expression; empty captures everything
  std::uint32_t snaplen = 262144;          // bytes kept per packet
  bool promiscuous = true;                 // live only
  std::uint64_t buffer_size = 32U << 20U;  // live: the kernel ring, bytes
  // live: how long the kernel holds a TPACKET_V3 block before handing it over (pcap timeout).
  std::chrono::nanoseconds block_timeout = std::chrono::milliseconds(100);

  bool operator==(const PcapOptions&) const = default;
};

// Checks the options, opens and activates the interface or file and compiles and installs the
// filter, so that every configuration error surfaces here. Nothing is captured before start().
// Errors (messages start with "input 'NAME': "): kConfig (no such interface, bad filter with
// libpcap's text, unsupported link type, both or neither of interface and file), kNotFound and
// kIo (file missing or unreadable, not a pcap file), kUnsupported (permission to capture denied).
Result<std::unique_ptr<Source>> makePcapSource(const PcapOptions& options, RecordSink& sink);

}  // namespace cistern::capture
