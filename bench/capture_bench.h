#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "cistern/buffer/options.h"
#include "cistern/core/result.h"

namespace cistern::bench {

struct CaptureBenchOptions {
  std::filesystem::path pcap;      // the file to ingest; written first when generate > 0
  std::uint64_t generate = 0;      // > 0: write a pcap of this many synthetic packets first
  std::uint32_t packet_size = 64;  // bytes per generated frame (Ethernet/IPv4/UDP)
  bool generate_only = false;      // write the file and stop (for bench/live_capture.sh)
  buffer::SyncMode sync = buffer::SyncMode::kBatch;
  int repeat = 3;
  std::string tcpdump = "tcpdump";  // the reference program
  std::filesystem::path dir;        // where the rings go (the disk under test)
  bool keep = false;
};

// Writes a pcap (microsecond timestamps, LINKTYPE_ETHERNET) of `packets` Ethernet/IPv4/UDP frames
// of `packet_size` bytes each (42..65535), from 10.77.0.1 to 10.77.0.2 with varying source
// ports. Errors: kInvalidArgument (size), kIo.
Status writeSyntheticPcap(const std::filesystem::path& path, std::uint64_t packets,
                          std::uint32_t packet_size);

// Runs the capture benchmark; prints per-run lines and a final JSON line. Returns the exit code.
int runCaptureBench(const CaptureBenchOptions& options);

}  // namespace cistern::bench
