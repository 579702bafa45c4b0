// cistern-bench capture: a pcap file through PcapSource into a fresh LmdbRing, against
// `tcpdump -r FILE -w /dev/null` on the same file in the same run.
//
// Each run: (1) the reference: tcpdump reads the file and writes it out again (to /dev/null), as
// a child process, timed by wall clock; (2) a fresh ring in a temporary directory, a PcapSource
// on the file with `replay: fast`, timed from creating the source until the ring's flush()
// returns, so every packet is committed (durable with `sync: batch`) when the clock stops. The
// two alternate within every run so that both see the same state of a shared machine. Prints a
// line per run and, last, one JSON line with medians.
#include "capture_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cistern/buffer/ring.h"
#include "cistern/capture/pcap_source.h"
#include "cistern/core/bytes.h"
#include "cistern/core/units.h"

namespace cistern::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::uint32_t kEthernetIpUdpBytes = 14 + 20 + 8;
constexpr std::uint32_t kLinkTypeEthernet = 1;

struct RunResult {
  double seconds = 0;
  double packets_per_s = 0;
  double mb_per_s = 0;
  double cpu_s = 0;  // this process during the ingest: capture thread, writer, and the poller
  double tcpdump_s = 0;
  double tcpdump_packets_per_s = 0;
  double tcpdump_mb_per_s = 0;
  double tcpdump_cpu_s = 0;
  double tcpdump_peak_rss_mb = 0;
  std::map<std::string, std::uint64_t> counters;
  std::uint64_t ring_records = 0;
  std::uint64_t ring_evicted = 0;
  std::uint64_t commits = 0;
  std::uint64_t file_bytes = 0;
};

std::string errnoText() { return std::strerror(errno); }

std::uint16_t ipv4Checksum(const std::byte* header) {
  std::uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) {
    sum += static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(header[i])) << 8U;
    sum += std::to_integer<std::uint8_t>(header[i + 1]);
  }
  while (sum > 0xffffU) sum = (sum & 0xffffU) + (sum >> 16U);
  return static_cast<std::uint16_t>(~sum & 0xffffU);
}

std::span<const char> asChars(const std::vector<std::byte>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

void storeBe16(std::byte* p, std::uint16_t v) {
  p[0] = static_cast<std::byte>(v >> 8U);
  p[1] = static_cast<std::byte>(v & 0xffU);
}

// Reads the whole file once: brings it into the page cache for both readers (a file given with
// --pcap may be cold) and measures how fast plain reads go.
Result<double> readWholeFile(const fs::path& path) {
  const auto t0 = BenchClock::now();
  auto bytes = readChunks(path, 1U << 20U, [](std::span<const char>) {});
  if (!bytes) return tl::unexpected(bytes.error());
  return mbPerS(*bytes, secondsSince(t0));
}

Result<RunResult> runOnce(const CaptureBenchOptions& o, int run, std::uint64_t file_size) {
  RunResult r;
  auto ref = runChild({o.tcpdump, "-n", "-r", o.pcap.string(), "-w", "/dev/null"});
  if (!ref) return tl::unexpected(ref.error());
  if (ref->exit_code != 0) {
    return fail(ErrorCode::kIo,
                fmt::format("{} -r {} exited with {}", o.tcpdump, o.pcap.string(), ref->exit_code));
  }
  r.tcpdump_s = ref->wall_s;
  r.tcpdump_cpu_s = ref->cpu_s;
  r.tcpdump_peak_rss_mb = ref->peak_rss_mb;

  const fs::path dir = o.dir / fmt::format("capture-run-{}", run);
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  buffer::RingOptions ro;
  ro.dir = dir / "ring";
  ro.sync = o.sync;
  // Room for everything (records carry a header, the input name and PacketMeta besides the
  // packet, about what the pcap's per-packet header costs): nothing is evicted.
  ro.max_size = 2 * file_size + (256ULL << 20U);
  auto opened = buffer::LmdbRing::open(ro);
  if (!opened) return tl::unexpected(opened.error());
  auto ring = std::move(*opened);

  capture::PcapOptions po;
  po.name = "bench";
  po.file = o.pcap.string();
  po.replay = capture::Replay::kFast;
  const double cpu0 = processCpuSeconds();
  const auto t0 = BenchClock::now();
  auto source = capture::makePcapSource(po, *ring);
  if (!source) return tl::unexpected(source.error());
  if (auto st = (*source)->start(); !st) return tl::unexpected(st.error());
  while (!(*source)->finished()) std::this_thread::sleep_for(1ms);
  (*source)->stop();
  if (auto st = ring->flush(std::chrono::minutes(10)); !st) return tl::unexpected(st.error());
  r.seconds = secondsSince(t0);
  r.cpu_s = processCpuSeconds() - cpu0;

  r.counters = counterMap(**source);
  const auto stats = ring->stats();
  r.ring_records = stats.appended_records;
  r.ring_evicted = stats.evicted_records;
  r.commits = stats.commits;
  r.file_bytes = stats.file_bytes;
  if (auto st = ring->close(); !st) return tl::unexpected(st.error());
  ring.reset();
  if (!o.keep) fs::remove_all(dir, ec);

  const std::uint64_t packets = r.counters["packets_captured"];
  const std::uint64_t bytes = r.counters["bytes_captured"];
  r.packets_per_s = static_cast<double>(packets) / r.seconds;
  r.mb_per_s = mbPerS(bytes, r.seconds);
  // tcpdump reads the same packets: the file's.
  r.tcpdump_packets_per_s = static_cast<double>(packets) / r.tcpdump_s;
  r.tcpdump_mb_per_s = mbPerS(bytes, r.tcpdump_s);
  return r;
}

// The counters must reconcile, and everything captured must be in the ring.
Status checkCounters(const RunResult& r, std::uint64_t expected_packets) {
  auto c = r.counters;
  const std::uint64_t captured = c["packets_captured"];
  if (captured != c["packets_stored"] + c["packets_dropped_agent"]) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("counters do not reconcile: captured {} != stored {} + dropped {}",
                            captured, c["packets_stored"], c["packets_dropped_agent"]));
  }
  if (c["file_errors"] != 0)
    return fail(ErrorCode::kCorrupt, "the file could not be read to its end");
  if (r.ring_records != c["packets_stored"] || r.ring_evicted != 0) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("ring holds {} records ({} evicted), source stored {}", r.ring_records,
                            r.ring_evicted, c["packets_stored"]));
  }
  if (expected_packets != 0 && captured != expected_packets) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("captured {} of the {} packets written", captured, expected_packets));
  }
  return ok();
}

}  // namespace

Status writeSyntheticPcap(const fs::path& path, std::uint64_t packets, std::uint32_t packet_size) {
  if (packet_size < kEthernetIpUdpBytes || packet_size > 65535) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("packet size {} is outside {}..65535",
                                                         packet_size, kEthernetIpUdpBytes));
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(ErrorCode::kIo, "open " + path.string() + ": " + errnoText());

  std::vector<std::byte> out;
  out.reserve((1U << 20U) + 16 + packet_size);
  auto put32 = [&](std::uint32_t v) {
    const std::size_t at = out.size();
    out.resize(at + 4);
    bytes::storeLe<std::uint32_t>(&out[at], v);
  };
  auto put16 = [&](std::uint16_t v) {
    const std::size_t at = out.size();
    out.resize(at + 2);
    bytes::storeLe<std::uint16_t>(&out[at], v);
  };
  // Global header: microsecond magic, version 2.4, snaplen, LINKTYPE_ETHERNET.
  put32(0xa1b2c3d4U);
  put16(2);
  put16(4);
  put32(0);
  put32(0);
  put32(std::max<std::uint32_t>(packet_size, 65535));
  put32(kLinkTypeEthernet);

  // The frame, patched per packet: IPv4 id and checksum, UDP source port, a sequence number.
  std::vector<std::byte> frame(packet_size, std::byte{0});
  constexpr std::array<std::uint8_t, 14> kEthernet = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02,
                                                      0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00};
  for (std::size_t i = 0; i < kEthernet.size(); ++i) frame[i] = std::byte{kEthernet[i]};
  std::byte* ip = &frame[14];
  ip[0] = std::byte{0x45};
  storeBe16(ip + 2, static_cast<std::uint16_t>(packet_size - 14));
  ip[8] = std::byte{64};  // TTL
  ip[9] = std::byte{17};  // UDP
  constexpr std::array<std::uint8_t, 8> kAddresses = {10, 77, 0, 1, 10, 77, 0, 2};
  for (std::size_t i = 0; i < kAddresses.size(); ++i) ip[12 + i] = std::byte{kAddresses[i]};
  std::byte* udp = &frame[34];
  storeBe16(udp + 2, 9);  // discard
  storeBe16(udp + 4, static_cast<std::uint16_t>(packet_size - 34));
  for (std::uint32_t i = kEthernetIpUdpBytes; i < packet_size; ++i) {
    frame[i] = static_cast<std::byte>(i & 0xffU);
  }

  constexpr std::uint64_t kFirstSecond = 1'700'000'000;
  for (std::uint64_t seq = 0; seq < packets; ++seq) {
    storeBe16(ip + 4, static_cast<std::uint16_t>(seq & 0xffffU));
    storeBe16(ip + 10, 0);
    storeBe16(ip + 10, ipv4Checksum(ip));
    storeBe16(udp, static_cast<std::uint16_t>(1024 + seq % 60000));
    if (packet_size >= kEthernetIpUdpBytes + 8) {
      bytes::storeLe<std::uint64_t>(&frame[kEthernetIpUdpBytes], seq);
    }
    // One packet per microsecond: a 1 Mpps trace, for tools that replay at the recorded pace.
    put32(static_cast<std::uint32_t>(kFirstSecond + seq / 1'000'000));
    put32(static_cast<std::uint32_t>(seq % 1'000'000));
    put32(packet_size);
    put32(packet_size);
    out.insert(out.end(), frame.begin(), frame.end());
    if (out.size() >= (1U << 20U)) {
      if (auto st = writeAll(fd, asChars(out), path); !st) {
        ::close(fd);
        return st;
      }
      out.clear();
    }
  }
  auto st = writeAll(fd, asChars(out), path);
  if (::close(fd) != 0 && st) {
    return fail(ErrorCode::kIo, "close " + path.string() + ": " + errnoText());
  }
  return st;
}

int runCaptureBench(const CaptureBenchOptions& options) {
  CaptureBenchOptions o = options;
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  bool generated_here = false;
  if (o.generate > 0) {
    if (o.pcap.empty()) {
      o.pcap = o.dir / fmt::format("synthetic-{}x{}.pcap", o.generate, o.packet_size);
      generated_here = true;
    }
    const auto g0 = BenchClock::now();
    if (auto st = writeSyntheticPcap(o.pcap, o.generate, o.packet_size); !st) {
      fmt::print(stderr, "capture bench: {}\n", st.error().describe());
      return 1;
    }
    fmt::print("generated {}: {} packets of {} bytes in {:.1f} s\n", o.pcap.string(), o.generate,
               o.packet_size, secondsSince(g0));
    if (o.generate_only) return 0;
  }
  if (o.pcap.empty()) {
    fmt::print(stderr, "capture bench: give --pcap FILE, --generate N, or both\n");
    return 2;
  }
  const auto file_size = fs::file_size(o.pcap, ec);
  if (ec) {
    fmt::print(stderr, "capture bench: {}: {}\n", o.pcap.string(), ec.message());
    return 2;
  }
  auto warm = readWholeFile(o.pcap);
  if (!warm) {
    fmt::print(stderr, "capture bench: {}\n", warm.error().describe());
    return 1;
  }

  MemorySampler sampler;
  fmt::print("capture bench: file={} ({}) sync={} runs={} dir={} | plain read {:.0f} MB/s\n",
             o.pcap.string(), formatSize(file_size), syncName(o.sync), o.repeat, o.dir.string(),
             *warm);
  std::vector<RunResult> runs;
  for (int i = 0; i < o.repeat; ++i) {
    auto r = runOnce(o, i, file_size);
    if (!r) {
      fmt::print(stderr, "capture bench failed: {}\n", r.error().describe());
      return 1;
    }
    if (auto st = checkCounters(*r, o.generate); !st) {
      fmt::print(stderr, "capture bench: run {}: {}\n", i, st.error().describe());
      return 1;
    }
    fmt::print(
        "run {}: cistern {:.0f} pkt/s {:.1f} MB/s in {:.2f} s (cpu {:.2f} s, {} commits) | "
        "tcpdump {:.0f} pkt/s in {:.2f} s (cpu {:.2f} s) | ratio {:.2f}\n",
        i, r->packets_per_s, r->mb_per_s, r->seconds, r->cpu_s, r->commits,
        r->tcpdump_packets_per_s, r->tcpdump_s, r->tcpdump_cpu_s,
        r->packets_per_s / r->tcpdump_packets_per_s);
    runs.push_back(std::move(*r));
  }
  if (generated_here && !o.keep) fs::remove(o.pcap, ec);

  const auto mem = platform::memoryUsage();
  const RunResult& last = runs.back();
  auto counter = [&](const char* name) {
    auto it = last.counters.find(name);
    return it == last.counters.end() ? std::uint64_t{0} : it->second;
  };
  nlohmann::json j;
  j["bench"] = "capture";
  j["file"] = o.pcap.string();
  j["file_bytes"] = file_size;
  j["packets"] = counter("packets_captured");
  j["avg_packet_bytes"] =
      static_cast<double>(counter("bytes_captured")) /
      static_cast<double>(std::max<std::uint64_t>(1, counter("packets_captured")));
  j["sync"] = syncName(o.sync);
  j["runs"] = o.repeat;
  j["seconds"] = medianOf(runs, [](const RunResult& r) { return r.seconds; });
  j["packets_per_s"] = medianOf(runs, [](const RunResult& r) { return r.packets_per_s; });
  j["mb_per_s"] = medianOf(runs, [](const RunResult& r) { return r.mb_per_s; });
  j["cpu_s"] = medianOf(runs, [](const RunResult& r) { return r.cpu_s; });
  j["tcpdump_packets_per_s"] =
      medianOf(runs, [](const RunResult& r) { return r.tcpdump_packets_per_s; });
  j["tcpdump_mb_per_s"] = medianOf(runs, [](const RunResult& r) { return r.tcpdump_mb_per_s; });
  j["tcpdump_cpu_s"] = medianOf(runs, [](const RunResult& r) { return r.tcpdump_cpu_s; });
  j["tcpdump_peak_rss_mb"] =
      medianOf(runs, [](const RunResult& r) { return r.tcpdump_peak_rss_mb; });
  j["ratio"] =
      medianOf(runs, [](const RunResult& r) { return r.packets_per_s / r.tcpdump_packets_per_s; });
  j["commits"] = medianOf(runs, [](const RunResult& r) { return static_cast<double>(r.commits); });
  j["ring_file_mb"] =
      medianOf(runs, [](const RunResult& r) { return static_cast<double>(r.file_bytes) / 1e6; });
  j["peak_rss_mb"] = static_cast<double>(mem.peak_rss_bytes) / 1e6;
  j["peak_rss_anon_mb"] = sampler.peakAnonMb();
  j["peak_rss_file_mb"] = sampler.peakFileMb();
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [name, value] : last.counters) counters[name] = value;
  j["counters"] = counters;
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace cistern::bench
