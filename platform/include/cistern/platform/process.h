// Facts about the running process and host that metrics and benchmarks report.
#pragma once

#include <cstdint>
#include <string>

namespace cistern::platform {

struct MemoryUsage {
  std::uint64_t rss_bytes = 0;       // resident set now (anonymous + file-backed + shmem)
  std::uint64_t peak_rss_bytes = 0;  // high-water mark of rss_bytes since the process started
  std::uint64_t rss_anon_bytes = 0;  // anonymous part of rss_bytes (heap, stacks)
  std::uint64_t rss_file_bytes = 0;  // file-backed part (mapped files such as the LMDB map)
};

// Reads /proc/self/status. Fields the kernel does not report stay 0.
MemoryUsage memoryUsage();

// The host name (gethostname), or "localhost" when it cannot be read.
std::string hostName();

// The operating system for humans: /etc/os-release's PRETTY_NAME ("Debian GNU/Linux 12
// (bookworm)"), else uname's system and release ("Linux 6.1.0-18-amd64").
std::string osDescription();

}  // namespace cistern::platform
