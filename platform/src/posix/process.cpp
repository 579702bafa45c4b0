#include "cistern/platform/process.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

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

std::string osDescription() {
  std::ifstream in("/etc/os-release");
  std::string line;
  constexpr std::string_view kKey = "PRETTY_NAME=";
  while (std::getline(in, line)) {
    if (line.compare(0, kKey.size(), kKey) != 0) continue;
    std::string value = line.substr(kKey.size());
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (!value.empty()) return value;
  }
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release;
}

}  // namespace cistern::platform
