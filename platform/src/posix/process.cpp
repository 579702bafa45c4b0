#include "cistern/platform/process.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>

namespace cistern::platform {
namespace {

// Parses "VmRSS:     1234 kB" style lines; returns bytes.
bool readKb(const char* line, const char* key, std::uint64_t& out) {
  const std::size_t n = std::strlen(key);
  if (std::strncmp(line, key, n) != 0) return false;
  unsigned long long kb = 0;
  if (std::sscanf(line + n, " %llu", &kb) == 1) out = static_cast<std::uint64_t>(kb) * 1024U;
  return true;
}

}  // namespace

MemoryUsage memoryUsage() {
  MemoryUsage usage;
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return usage;
  std::array<char, 256> line{};
  while (std::fgets(line.data(), static_cast<int>(line.size()), f) != nullptr) {
    readKb(line.data(), "VmRSS:", usage.rss_bytes) ||
        readKb(line.data(), "VmHWM:", usage.peak_rss_bytes) ||
        readKb(line.data(), "RssAnon:", usage.rss_anon_bytes) ||
        readKb(line.data(), "RssFile:", usage.rss_file_bytes);
  }
  std::fclose(f);
  return usage;
}

std::string hostName() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "localhost";
  return {buf.data()};
}

}  // namespace cistern::platform
