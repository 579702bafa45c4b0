// PcapSource: pcap/pcapng files written here (and pcapfix's damaged samples) replayed into an
// in-memory sink or a real ring, and live capture on a veth pair between two network namespaces.
#include <fcntl.h>
#include <pcap/pcap.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <catch2/catch.hpp>

#include "cistern/buffer/ring.h"
#include "cistern/capture/pcap_source.h"
#include "cistern/core/record_meta.h"
#include "memory_sink.h"
#include "pcap_util.h"
#include "subprocess.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::ErrorCode;
using cistern::PacketMeta;
using cistern::RecordKind;
using cistern::capture::accumulateWrapped32;
using cistern::capture::linkTypeOfDlt;
using cistern::capture::makePcapSource;
using cistern::capture::PcapOptions;
using cistern::capture::Replay;
using cistern::capture::Source;
using cistern::capture::timestampNs;
using cistern::capture::Wrapped32;
using cistern::testing::MemorySink;
using cistern::testing::StoredRecord;
using cistern::testing::TempDir;

namespace {

constexpr std::uint64_t kNsPerSecond = 1'000'000'000;
constexpr std::uint64_t kBaseNs = 1'700'000'000ULL * kNsPerSecond + 123'456'789;

struct TestPacket {
  std::uint64_t ts_ns = 0;
  std::string bytes;  // what the file holds (captured bytes)
  std::uint32_t original_length = 0;
};

void put16(std::string& s, std::size_t at, std::uint16_t v) {
  s[at] = static_cast<char>(v >> 8U);
  s[at + 1] = static_cast<char>(v & 0xffU);
}

// An Ethernet/IPv4/UDP frame of `size` bytes (>= 60) to `port`, whose payload starts with a
// marker and `seq` and is filled with bytes derived from `seq`.
std::string udpFrame(std::uint16_t port, std::uint32_t seq, std::size_t size) {
  std::string f(size, '\0');
  const unsigned char macs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(f.data(), macs, sizeof macs);
  put16(f, 12, 0x0800);
  const std::size_t ip_len = size - 14;
  f[14] = 0x45;
  put16(f, 16, static_cast<std::uint16_t>(ip_len));
  put16(f, 18, static_cast<std::uint16_t>(seq));
  f[22] = 64;
  f[23] = 17;
  const unsigned char addrs[8] = {10, 77, 0, 1, 10, 77, 0, 5};  // .5: nobody's, so no replies
  std::memcpy(f.data() + 26, addrs, sizeof addrs);
  std::uint32_t sum = 0;
  for (std::size_t i = 14; i < 34; i += 2) {
    sum += (static_cast<std::uint32_t>(static_cast<unsigned char>(f[i])) << 8U) |
           static_cast<unsigned char>(f[i + 1]);
  }
  while ((sum >> 16U) != 0) sum = (sum & 0xffffU) + (sum >> 16U);
  put16(f, 24, static_cast<std::uint16_t>(~sum & 0xffffU));
  put16(f, 34, 40000);
  put16(f, 36, port);
  put16(f, 38, static_cast<std::uint16_t>(ip_len - 20));
  const std::string marker = fmt::format("CISTERN:{:08x}:", seq);
  std::memcpy(f.data() + 42, marker.data(), std::min(marker.size(), size - 42));
  for (std::size_t i = 42 + marker.size(); i < size; ++i) {
    f[i] = static_cast<char>((std::size_t{seq} * 31 + i) & 0xffU);
  }
  return f;
}

// Writes `packets` with libpcap's own dumper; nanosecond or microsecond resolution.
void writePcap(const std::filesystem::path& path, const std::vector<TestPacket>& packets,
               int dlt = DLT_EN10MB, bool nano = true) {
  pcap_t* dead = pcap_open_dead_with_tstamp_precision(
      dlt, 262144, nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  REQUIRE(dead != nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  REQUIRE(dumper != nullptr);
  for (const auto& p : packets) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(p.ts_ns / kNsPerSecond);
    const std::uint64_t frac = p.ts_ns % kNsPerSecond;
    h.ts.tv_usec = static_cast<suseconds_t>(nano ? frac : frac / 1000);
    h.caplen = static_cast<bpf_u_int32>(p.bytes.size());
    h.len = p.original_length;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h,
              reinterpret_cast<const u_char*>(p.bytes.data()));
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

// `count` UDP frames of varying sizes, timestamps `step_ns` apart; every third goes to port
// 7001 (the rest to 7002), every tenth claims a longer original length (snapped on capture).
std::vector<TestPacket> makePackets(std::size_t count, std::uint64_t step_ns = 1'000'003) {
  std::vector<TestPacket> out;
  for (std::size_t i = 0; i < count; ++i) {
    TestPacket p;
    p.ts_ns = kBaseNs + i * step_ns;
    const auto seq = static_cast<std::uint32_t>(i);
    p.bytes = udpFrame(i % 3 == 0 ? 7001 : 7002, seq, 60 + (i * 37) % 1455);
    p.original_length = static_cast<std::uint32_t>(p.bytes.size() + (i % 10 == 0 ? 500 : 0));
    out.push_back(std::move(p));
  }
  return out;
}

std::unique_ptr<Source> makeSource(const PcapOptions& o, MemorySink& sink) {
  auto s = makePcapSource(o, sink);
  if (!s) FAIL("makePcapSource failed: " << s.error().describe());
  return std::move(*s);
}

PcapOptions fileOptions(const std::filesystem::path& file, Replay replay = Replay::kFast) {
  PcapOptions o;
  o.name = "pcap-test";
  o.file = file.string();
  o.replay = replay;
  return o;
}

std::uint64_t counter(const Source& s, const std::string& name) {
  for (const auto& c : s.counters()) {
    if (c.name == name) return c.value;
  }
  FAIL("no counter " << name);
  return 0;
}

void checkReconciles(const Source& s) {
  CHECK(counter(s, "packets_captured") ==
        counter(s, "packets_dropped_agent") + counter(s, "packets_stored"));
}

bool waitFinished(const Source& s, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!s.finished()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

template <typename Pred>
bool waitUntil(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Runs a file source to its end and returns what it stored.
std::vector<StoredRecord> replayAll(const PcapOptions& o, MemorySink& sink,
                                    std::unique_ptr<Source>& source) {
  source = makeSource(o, sink);
  REQUIRE(source->start());
  REQUIRE(waitFinished(*source, 30s));
  source->stop();
  return sink.records();
}

void checkRecord(const StoredRecord& r, const TestPacket& p, std::uint32_t link_type,
                 std::uint64_t ts_ns) {
  CHECK(r.kind == RecordKind::kPacket);
  CHECK(r.input == "pcap-test");
  CHECK(r.timestamp_ns == ts_ns);
  auto meta = cistern::decodePacketMeta(r.meta);
  REQUIRE(meta);
  CHECK(meta->link_type == link_type);
  CHECK(meta->original_length == p.original_length);
  CHECK(r.payload == p.bytes);
}

std::string run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 30s) {
  auto r = cistern::testing::run(argv, timeout);
  if (r.exit_code == 0) return {};
  return fmt::format("'{}' exited {}{}: {}", fmt::join(argv, " "), r.exit_code,
                     r.timed_out ? " (timed out)" : "", r.err + r.out);
}

std::string findProgram(std::initializer_list<const char*> candidates) {
  for (const char* c : candidates) {
    if (::access(c, X_OK) == 0) return c;
  }
  return {};
}

const char* const kPcapfixExamples = "/usr/share/doc/pcapfix/examples";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pure logic

TEST_CASE("32-bit pcap counters accumulate their wraps into 64 bits", "[unit]") {
  CHECK(accumulateWrapped32(0, 0, 0) == 0);
  CHECK(accumulateWrapped32(0, 0, 10) == 10);
  CHECK(accumulateWrapped32(10, 10, 10) == 10);
  // 0xffff'fff0 -> 0x10 is 0x20 more, across the wrap.
  CHECK(accumulateWrapped32(0xffff'fff0ULL, 0xffff'fff0U, 0x10U) == 0x1'0000'0000ULL + 0x10);
  CHECK(accumulateWrapped32(5'000'000'000ULL, 0xffff'ffffU, 0U) == 5'000'000'001ULL);

  Wrapped32 w;
  CHECK(w.update(100) == 100);
  CHECK(w.update(0xffff'ffffU) == 0xffff'ffffULL);
  CHECK(w.update(99) == 0x1'0000'0000ULL + 99);  // wrapped once
  CHECK(w.update(99) == 0x1'0000'0000ULL + 99);  // no change
  CHECK(w.total() == 0x1'0000'0000ULL + 99);

  // A counter sampled at irregular steps (each below 2^32) over several wraps: the total is
  // exact whatever the step.
  Wrapped32 sampled;
  std::uint64_t truth = 0;
  std::uint64_t step = 12345;
  for (int i = 0; i < 4000; ++i) {
    step = (step * 6364136223846793005ULL + 1442695040888963407ULL);
    truth += (step >> 33U) % 0xffff'ff00ULL;
    sampled.update(static_cast<std::uint32_t>(truth & 0xffff'ffffULL));
  }
  CHECK(truth > 8 * 0x1'0000'0000ULL);
  CHECK(sampled.total() == truth);
}

TEST_CASE("pcap DLT values map to LINKTYPE values", "[unit]") {
  CHECK(linkTypeOfDlt(DLT_EN10MB) == 1);
  CHECK(linkTypeOfDlt(DLT_NULL) == 0);
  CHECK(linkTypeOfDlt(DLT_RAW) == 101);
  CHECK(linkTypeOfDlt(DLT_LINUX_SLL) == 113);
  CHECK(linkTypeOfDlt(DLT_LINUX_SLL2) == 276);
  CHECK(linkTypeOfDlt(DLT_IEEE802_11_RADIO) == 127);
  CHECK(linkTypeOfDlt(-1) == -1);
}

TEST_CASE("pcap timestamps convert to nanoseconds", "[unit]") {
  CHECK(timestampNs(1, 5, true) == 1'000'000'005ULL);
  CHECK(timestampNs(1, 5, false) == 1'000'005'000ULL);
  CHECK(timestampNs(1'700'000'000, 999'999'999, true) == 1'700'000'000'999'999'999ULL);
  CHECK(timestampNs(-1, 0, true) == 0);
  CHECK(timestampNs(0, -5, false) == 0);
  CHECK(timestampNs(INT64_MAX, 0, true) == UINT64_MAX);
}

// ---------------------------------------------------------------------------------------------
// Files

TEST_CASE("PcapSource replays a nanosecond pcap file exactly", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(1000);
  writePcap(dir / "in.pcap", packets);
  MemorySink sink;
  std::unique_ptr<Source> source;
  const auto records = replayAll(fileOptions(dir / "in.pcap"), sink, source);

  REQUIRE(records.size() == packets.size());
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    INFO("packet " << i);
    checkRecord(records[i], packets[i], 1, packets[i].ts_ns);
    bytes += packets[i].bytes.size();
  }
  CHECK(source->name() == "pcap-test");
  CHECK(source->finished());
  const auto counters = source->counters();
  std::vector<std::string> names;
  for (const auto& c : counters) {
    names.push_back(c.name);
    CHECK(c.known);
  }
  CHECK(names == std::vector<std::string>{"packets_received", "packets_captured",
                                          "packets_dropped_kernel", "packets_dropped_interface",
                                          "packets_dropped_agent", "packets_stored",
                                          "bytes_captured", "file_errors"});
  CHECK(counter(*source, "packets_received") == 1000);
  CHECK(counter(*source, "packets_captured") == 1000);
  CHECK(counter(*source, "packets_stored") == 1000);
  CHECK(counter(*source, "packets_dropped_agent") == 0);
  CHECK(counter(*source, "packets_dropped_kernel") == 0);
  CHECK(counter(*source, "packets_dropped_interface") == 0);
  CHECK(counter(*source, "bytes_captured") == bytes);
  CHECK(counter(*source, "file_errors") == 0);
  checkReconciles(*source);
  CHECK(sink.refused() == 0);

  // stop() after the end and a second stop() are harmless; start() after stop() is refused.
  source->stop();
  auto again = source->start();
  REQUIRE_FALSE(again);
  CHECK(again.error().code == ErrorCode::kClosed);
}

TEST_CASE("PcapSource applies a BPF filter to a file", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(1000);
  writePcap(dir / "in.pcap", packets);
  auto o = fileOptions(dir / "in.pcap");
  o.filter = "udp dst port 7001";
  MemorySink sink;
  std::unique_ptr<Source> source;
  const auto records = replayAll(o, sink, source);

  std::vector<TestPacket> expected;
  for (std::size_t i = 0; i < packets.size(); i += 3) expected.push_back(packets[i]);
  REQUIRE(records.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("packet " << i * 3);
    checkRecord(records[i], expected[i], 1, expected[i].ts_ns);
  }
  CHECK(counter(*source, "packets_captured") == expected.size());
  CHECK(counter(*source, "packets_stored") == expected.size());
  checkReconciles(*source);
}

TEST_CASE("PcapSource cuts packets to the snaplen", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(50);
  writePcap(dir / "in.pcap", packets);
  auto o = fileOptions(dir / "in.pcap");
  o.snaplen = 64;
  MemorySink sink;
  std::unique_ptr<Source> source;
  const auto records = replayAll(o, sink, source);
  REQUIRE(records.size() == packets.size());
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    INFO("packet " << i);
    auto cut = packets[i];
    cut.bytes.resize(std::min<std::size_t>(cut.bytes.size(), 64));
    checkRecord(records[i], cut, 1, packets[i].ts_ns);
    bytes += cut.bytes.size();
  }
  CHECK(counter(*source, "bytes_captured") == bytes);
}

TEST_CASE("PcapSource reads microsecond files and reports LINKTYPE values", "[component]") {
  TempDir dir("cst-pcap");
  auto packets = makePackets(20);
  // Raw IP: DLT_RAW is 12 on Linux, LINKTYPE_RAW 101 in files and in PacketMeta.
  for (auto& p : packets) {
    p.bytes.erase(0, 14);
    p.original_length = static_cast<std::uint32_t>(p.bytes.size());
  }
  writePcap(dir / "raw.pcap", packets, DLT_RAW, /*nano=*/false);
  MemorySink sink;
  std::unique_ptr<Source> source;
  const auto records = replayAll(fileOptions(dir / "raw.pcap"), sink, source);
  REQUIRE(records.size() == packets.size());
  for (std::size_t i = 0; i < packets.size(); ++i) {
    INFO("packet " << i);
    // The file holds microseconds: the nanoseconds below them are gone.
    checkRecord(records[i], packets[i], 101, packets[i].ts_ns / 1000 * 1000);
  }
  checkReconciles(*source);
}

TEST_CASE("PcapSource reads pcapng files", "[component]") {
  const std::string editcap = findProgram({"/usr/bin/editcap", "/usr/local/bin/editcap"});
  if (editcap.empty()) {
    WARN("editcap (wireshark-common) is not installed; pcapng replay not tested");
    return;
  }
  TempDir dir("cst-pcap");
  const auto packets = makePackets(300);
  writePcap(dir / "in.pcap", packets);
  const auto err =
      run({editcap, "-F", "pcapng", (dir / "in.pcap").string(), (dir / "in.pcapng").string()});
  REQUIRE(err.empty());
  MemorySink sink;
  std::unique_ptr<Source> source;
  auto o = fileOptions(dir / "in.pcapng");
  o.filter = "udp dst port 7002";
  const auto records = replayAll(o, sink, source);
  std::vector<TestPacket> expected;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    if (i % 3 != 0) expected.push_back(packets[i]);
  }
  REQUIRE(records.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("packet " << i);
    checkRecord(records[i], expected[i], 1, expected[i].ts_ns);
  }
  CHECK(counter(*source, "file_errors") == 0);
  checkReconciles(*source);
}

TEST_CASE("PcapSource into an LMDB ring stores every packet", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(2000);
  writePcap(dir / "in.pcap", packets);
  cistern::buffer::RingOptions ro;
  ro.dir = dir / "ring";
  ro.max_size = 64ULL << 20U;
  ro.commit_interval = 2ms;
  // A queue smaller than the file, so that fast replay has to wait for the writer.
  ro.ingest_max_bytes = 256U << 10U;
  ro.frame_max_bytes = 64U << 10U;
  ro.commit_max_bytes = 1U << 20U;
  auto ring = cistern::buffer::LmdbRing::open(ro);
  REQUIRE(ring);
  auto source = makePcapSource(fileOptions(dir / "in.pcap"), **ring);
  REQUIRE(source);
  REQUIRE((*source)->start());
  REQUIRE(waitFinished(**source, 60s));
  (*source)->stop();
  REQUIRE((*ring)->flush());

  auto* consumer = (*ring)->consumer("check").value();
  cistern::buffer::ReadBatch batch;
  std::size_t seen = 0;
  while (true) {
    auto n = consumer->readNext(batch);
    REQUIRE(n);
    if (*n == 0) break;
    for (const auto& frame : batch.frames()) {
      cistern::RecordReader reader(frame.body);
      while (const auto* r = reader.next()) {
        REQUIRE(seen < packets.size());
        CHECK(r->timestamp_ns == packets[seen].ts_ns);
        CHECK(std::string(reinterpret_cast<const char*>(r->payload.data()), r->payload.size()) ==
              packets[seen].bytes);
        ++seen;
      }
      CHECK_FALSE(reader.failed());
    }
  }
  CHECK(seen == packets.size());
  CHECK((*ring)->stats().refused_queue_full == 0);
  CHECK(counter(**source, "packets_stored") == packets.size());
  CHECK(counter(**source, "packets_dropped_agent") == 0);
  REQUIRE((*ring)->close());
}

// ---------------------------------------------------------------------------------------------
// Bad configuration and bad input

TEST_CASE("PcapSource reports bad options, files, filters and interfaces", "[component]") {
  TempDir dir("cst-pcap");
  MemorySink sink;
  writePcap(dir / "good.pcap", makePackets(3));

  auto expectError = [&](const PcapOptions& o, ErrorCode code,
                         std::initializer_list<std::string> mentions) {
    auto s = makePcapSource(o, sink);
    REQUIRE_FALSE(s);
    INFO(s.error().describe());
    CHECK(s.error().code == code);
    for (const auto& m : mentions) CHECK_THAT(s.error().message, Catch::Contains(m));
  };

  SECTION("missing file") {
    expectError(fileOptions(dir / "missing.pcap"), ErrorCode::kNotFound,
                {"input 'pcap-test'", "missing.pcap"});
  }
  SECTION("file that is not a capture") {
    std::ofstream(dir / "text.pcap") << "this is not a capture file, just some text\n";
    expectError(fileOptions(dir / "text.pcap"), ErrorCode::kIo, {"input 'pcap-test'", "text.pcap"});
  }
  SECTION("empty file") {
    std::ofstream(dir / "empty.pcap").flush();
    expectError(fileOptions(dir / "empty.pcap"), ErrorCode::kIo, {"empty.pcap"});
  }
  SECTION("directory") { expectError(fileOptions(dir.path()), ErrorCode::kIo, {"directory"}); }
  SECTION("invalid filter") {
    auto o = fileOptions(dir / "good.pcap");
    o.filter = "udp port nonsense and";
    expectError(o, ErrorCode::kConfig, {"input 'pcap-test'", "filter 'udp port nonsense and'"});
  }
  SECTION("unknown interface") {
    PcapOptions o;
    o.name = "live";
    o.interface = "cstnosuch0";
    if (::geteuid() == 0) {
      expectError(o, ErrorCode::kConfig, {"input 'live'", "no such interface 'cstnosuch0'"});
    } else {
      auto s = makePcapSource(o, sink);
      REQUIRE_FALSE(s);
      CHECK((s.error().code == ErrorCode::kConfig || s.error().code == ErrorCode::kUnsupported));
    }
  }
  SECTION("both or neither of interface and file") {
    auto o = fileOptions(dir / "good.pcap");
    o.interface = "lo";
    expectError(o, ErrorCode::kConfig, {"exactly one"});
    o.interface.clear();
    o.file.clear();
    expectError(o, ErrorCode::kConfig, {"exactly one"});
  }
  SECTION("bad name and snaplen") {
    auto o = fileOptions(dir / "good.pcap");
    o.name.clear();
    expectError(o, ErrorCode::kConfig, {"input name"});
    o.name = "pcap-test";
    o.snaplen = 0;
    expectError(o, ErrorCode::kConfig, {"snaplen"});
  }
}

TEST_CASE("PcapSource keeps the packets before a truncation", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(100);
  writePcap(dir / "in.pcap", packets);
  // Offsets: a 24-byte file header, then per packet a 16-byte header and its bytes.
  std::vector<std::uintmax_t> starts;
  std::uintmax_t at = 24;
  for (const auto& p : packets) {
    starts.push_back(at);
    at += 16 + p.bytes.size();
  }
  REQUIRE(std::filesystem::file_size(dir / "in.pcap") == at);

  auto replayTruncated = [&](std::uintmax_t size, std::uint64_t expected_errors) {
    std::filesystem::copy_file(dir / "in.pcap", dir / "cut.pcap",
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(dir / "cut.pcap", size);
    MemorySink sink;
    std::unique_ptr<Source> source;
    const auto records = replayAll(fileOptions(dir / "cut.pcap"), sink, source);
    REQUIRE(records.size() == 50);
    for (std::size_t i = 0; i < records.size(); ++i) {
      INFO("packet " << i);
      checkRecord(records[i], packets[i], 1, packets[i].ts_ns);
    }
    CHECK(counter(*source, "packets_stored") == 50);
    CHECK(counter(*source, "file_errors") == expected_errors);
    checkReconciles(*source);
  };

  SECTION("in the middle of a packet's bytes") { replayTruncated(starts[50] + 16 + 10, 1); }
  SECTION("in the middle of a packet header") { replayTruncated(starts[50] + 7, 1); }
  SECTION("at a packet boundary: a clean end") { replayTruncated(starts[50], 0); }
}

TEST_CASE("PcapSource survives pcapfix's damaged samples", "[component]") {
  const std::filesystem::path examples = kPcapfixExamples;
  if (!std::filesystem::is_directory(examples)) {
    WARN("pcapfix is not installed (" << examples << "); its damaged samples are not tested");
    return;
  }
  MemorySink sink;

  SECTION("test.pcap: intact") {
    std::unique_ptr<Source> source;
    const auto records = replayAll(fileOptions(examples / "test.pcap"), sink, source);
    CHECK(records.size() == 28);
    CHECK(counter(*source, "file_errors") == 0);
    checkReconciles(*source);
  }
  SECTION("test_damaged.pcap: the packets before the damage, then a file error") {
    std::unique_ptr<Source> source;
    const auto records = replayAll(fileOptions(examples / "test_damaged.pcap"), sink, source);
    CHECK(records.size() >= 1);
    CHECK(counter(*source, "file_errors") == 1);
    CHECK(counter(*source, "packets_stored") == records.size());
    checkReconciles(*source);
    for (const auto& r : records) {
      auto meta = cistern::decodePacketMeta(r.meta);
      REQUIRE(meta);
      CHECK(meta->original_length >= r.payload.size());
    }
  }
  SECTION("test_2018.pcap") {
    std::unique_ptr<Source> source;
    const auto records = replayAll(fileOptions(examples / "test_2018.pcap"), sink, source);
    CHECK(records.size() == 1);
    checkReconciles(*source);
  }
  SECTION("test_without_pcap_header.pcap: refused at open") {
    auto s = makePcapSource(fileOptions(examples / "test_without_pcap_header.pcap"), sink);
    REQUIRE_FALSE(s);
    CHECK(s.error().code == ErrorCode::kIo);
  }
}

// ---------------------------------------------------------------------------------------------
// Pacing, a full sink, stop()

TEST_CASE("PcapSource counts agent drops when the sink has no room", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(300, 1'000'000);  // 1 ms apart: 0.3 s in realtime
  writePcap(dir / "in.pcap", packets);
  MemorySink sink;
  sink.setFull(true);
  auto source = makeSource(fileOptions(dir / "in.pcap", Replay::kRealtime), sink);
  REQUIRE(source->start());
  REQUIRE(waitFinished(*source, 10s));
  source->stop();
  CHECK(sink.size() == 0);
  CHECK(sink.refused() == 300);
  CHECK(counter(*source, "packets_captured") == 300);
  CHECK(counter(*source, "packets_dropped_agent") == 300);
  CHECK(counter(*source, "packets_stored") == 0);
  CHECK(counter(*source, "bytes_captured") == 0);
  checkReconciles(*source);
}

TEST_CASE("PcapSource realtime replay follows the timestamps", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(21, 20'000'000);  // 20 ms apart: 400 ms in all
  writePcap(dir / "in.pcap", packets);
  MemorySink sink;
  auto source = makeSource(fileOptions(dir / "in.pcap", Replay::kRealtime), sink);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(source->start());
  // Well before the end, not everything is in (a loaded machine may run late, never early).
  std::this_thread::sleep_for(200ms);
  const auto halfway = sink.size();
  if (std::chrono::steady_clock::now() - t0 < 350ms) CHECK(halfway < 21);
  REQUIRE(waitFinished(*source, 10s));
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(elapsed >= 390ms);
  CHECK(sink.size() == 21);
  checkReconciles(*source);
}

TEST_CASE("PcapSource stop() interrupts a realtime replay waiting for its next packet",
          "[component]") {
  TempDir dir("cst-pcap");
  auto packets = makePackets(2);
  packets[1].ts_ns = packets[0].ts_ns + 3600 * kNsPerSecond;  // an hour later
  writePcap(dir / "in.pcap", packets);
  MemorySink sink;
  auto source = makeSource(fileOptions(dir / "in.pcap", Replay::kRealtime), sink);
  REQUIRE(source->start());
  REQUIRE(sink.waitFor(1, 5s));
  const auto t0 = std::chrono::steady_clock::now();
  source->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  CHECK_FALSE(source->finished());
  CHECK(sink.size() == 1);
  CHECK(counter(*source, "packets_stored") == 1);
  checkReconciles(*source);
}

TEST_CASE("PcapSource fast replay waits for room and drops nothing", "[component]") {
  TempDir dir("cst-pcap");
  const auto packets = makePackets(1000);
  writePcap(dir / "in.pcap", packets);
  MemorySink sink;
  sink.setFull(true);
  auto source = makeSource(fileOptions(dir / "in.pcap"), sink);
  REQUIRE(source->start());
  std::this_thread::sleep_for(200ms);
  CHECK(sink.size() == 0);
  CHECK_FALSE(source->finished());
  sink.setFull(false);
  REQUIRE(waitFinished(*source, 30s));
  source->stop();
  CHECK(sink.size() == 1000);
  CHECK(sink.refused() == 0);
  CHECK(counter(*source, "packets_dropped_agent") == 0);
  CHECK(counter(*source, "packets_stored") == 1000);
  checkReconciles(*source);
}

TEST_CASE("PcapSource stops a fast replay when its sink closes", "[component]") {
  TempDir dir("cst-pcap");
  writePcap(dir / "in.pcap", makePackets(1000));
  MemorySink sink;
  sink.setFull(true);
  auto source = makeSource(fileOptions(dir / "in.pcap"), sink);
  REQUIRE(source->start());
  std::this_thread::sleep_for(50ms);
  sink.close();
  REQUIRE(waitFinished(*source, 5s));
  source->stop();
  CHECK(counter(*source, "packets_stored") == 0);
  CHECK(counter(*source, "packets_dropped_agent") == counter(*source, "packets_captured"));
  CHECK(counter(*source, "packets_captured") > 0);
  checkReconciles(*source);
}

// ---------------------------------------------------------------------------------------------
// Live capture on a veth pair between two network namespaces

namespace {

// Two namespaces joined by a veth pair; deleted (with the veth) on destruction, also on failure.
class VethPair {
 public:
  explicit VethPair(std::string ip) : ip_(std::move(ip)) {
    const auto pid = ::getpid();
    ns_a_ = fmt::format("cst-a-{}", pid);
    ns_b_ = fmt::format("cst-b-{}", pid);
    veth_a_ = fmt::format("cva{}", pid);
    veth_b_ = fmt::format("cvb{}", pid);
    cleanup();  // leftovers of a crashed run with the same pid
    const std::vector<std::vector<std::string>> steps = {
        {ip_, "netns", "add", ns_a_},
        {ip_, "netns", "add", ns_b_},
        {ip_, "link", "add", veth_a_, "type", "veth", "peer", "name", veth_b_},
        {ip_, "link", "set", veth_a_, "netns", ns_a_},
        {ip_, "link", "set", veth_b_, "netns", ns_b_},
        {ip_, "-n", ns_a_, "addr", "add", "10.77.0.1/30", "dev", veth_a_},
        {ip_, "-n", ns_b_, "addr", "add", "10.77.0.2/30", "dev", veth_b_},
        {ip_, "-n", ns_a_, "link", "set", veth_a_, "up"},
        {ip_, "-n", ns_b_, "link", "set", veth_b_, "up"},
    };
    for (const auto& step : steps) {
      error_ = run(step, 10s);
      if (!error_.empty()) return;
    }
    // Both ends report carrier before anything is sent.
    const bool up = waitUntil(
        [&] {
          auto r = cistern::testing::run({ip_, "-n", ns_b_, "-o", "link", "show", veth_b_}, 5s);
          return r.exit_code == 0 && r.out.find("LOWER_UP") != std::string::npos;
        },
        5s);
    if (!up) error_ = "veth did not come up";
  }
  ~VethPair() { cleanup(); }
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;

  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const std::string& nsA() const { return ns_a_; }
  [[nodiscard]] const std::string& nsB() const { return ns_b_; }
  [[nodiscard]] const std::string& vethA() const { return veth_a_; }
  [[nodiscard]] const std::string& vethB() const { return veth_b_; }

 private:
  void cleanup() {
    // Deleting a namespace destroys its veth end, and with it the peer.
    cistern::testing::run({ip_, "netns", "del", ns_a_}, 10s);
    cistern::testing::run({ip_, "netns", "del", ns_b_}, 10s);
    cistern::testing::run({ip_, "link", "del", veth_a_}, 10s);
  }

  std::string ip_;
  std::string ns_a_;
  std::string ns_b_;
  std::string veth_a_;
  std::string veth_b_;
  std::string error_;
};

// Moves the calling thread into a named network namespace; back on destruction. Threads started
// meanwhile, and sockets opened, stay in the namespace.
class InNetns {
 public:
  explicit InNetns(const std::string& ns) {
    original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const int target = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    entered_ = original_ >= 0 && target >= 0 && ::setns(target, CLONE_NEWNET) == 0;
    if (target >= 0) ::close(target);
  }
  ~InNetns() {
    // The rest of the test binary would run in the wrong namespace otherwise.
    if (entered_ && ::setns(original_, CLONE_NEWNET) != 0) std::abort();
    if (original_ >= 0) ::close(original_);
  }
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;
  [[nodiscard]] bool entered() const { return entered_; }

 private:
  int original_ = -1;
  bool entered_ = false;
};

constexpr std::uint16_t kLivePort = 47123;

}  // namespace

TEST_CASE("PcapSource captures live traffic on a veth pair", "[component]") {
  const std::string ip = findProgram({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"});
  const std::string tcpreplay = findProgram({"/usr/bin/tcpreplay", "/usr/local/bin/tcpreplay"});
  if (::geteuid() != 0 || ip.empty() || tcpreplay.empty()) {
    WARN("live capture test needs root, ip(8) and tcpreplay; skipped");
    return;
  }
  VethPair veth(ip);
  if (!veth.error().empty()) {
    WARN("cannot create network namespaces here; live capture not tested: " << veth.error());
    return;
  }

  // What ns a sends: frames to the marker port, numbered, of varying sizes.
  TempDir dir("cst-pcap-live");
  constexpr std::size_t kStored = 400;
  constexpr std::size_t kDropped = 100;
  std::vector<TestPacket> first;
  std::vector<TestPacket> second;
  for (std::size_t i = 0; i < kStored + kDropped; ++i) {
    TestPacket p;
    p.ts_ns = kBaseNs + i * 500'000;
    p.bytes = udpFrame(kLivePort, static_cast<std::uint32_t>(i), 60 + (i * 53) % 1455);
    p.original_length = static_cast<std::uint32_t>(p.bytes.size());
    (i < kStored ? first : second).push_back(std::move(p));
  }
  writePcap(dir / "first.pcap", first, DLT_EN10MB, false);
  writePcap(dir / "second.pcap", second, DLT_EN10MB, false);
  auto send = [&](const std::string& file) {
    return run({ip, "netns", "exec", veth.nsA(), tcpreplay, "-q", "-i", veth.vethA(), "--pps=2000",
                (dir / file).string()},
               60s);
  };

  MemorySink sink;
  std::unique_ptr<Source> source;
  const auto wall_before =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  {
    InNetns in_b(veth.nsB());
    REQUIRE(in_b.entered());
    PcapOptions o;
    o.name = "live";
    o.interface = veth.vethB();
    // Stray IPv6 neighbour discovery and MLD packets on the link are not ours.
    o.filter = fmt::format("udp dst port {}", kLivePort);
    o.buffer_size = 4U << 20U;
    o.block_timeout = 20ms;
    auto made = makePcapSource(o, sink);
    REQUIRE(made);
    source = std::move(*made);
    REQUIRE(source->start());
  }
  CHECK_FALSE(source->finished());

  // Phase 1: everything is stored.
  REQUIRE(send("first.pcap").empty());
  REQUIRE(sink.waitFor(kStored, 10s));
  std::this_thread::sleep_for(200ms);  // anything extra would show up by now
  REQUIRE(sink.size() == kStored);

  // Phase 2: the sink refuses; live capture drops and counts, never blocks.
  sink.setFull(true);
  REQUIRE(send("second.pcap").empty());
  REQUIRE(
      waitUntil([&] { return counter(*source, "packets_captured") >= kStored + kDropped; }, 10s));
  std::this_thread::sleep_for(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  source->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  const auto wall_after =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());

  const auto records = sink.records();
  REQUIRE(records.size() == kStored);
  for (std::size_t i = 0; i < kStored; ++i) {
    INFO("packet " << i);
    const auto& r = records[i];
    CHECK(r.kind == RecordKind::kPacket);
    CHECK(r.input == "live");
    CHECK(r.payload == first[i].bytes);
    auto meta = cistern::decodePacketMeta(r.meta);
    REQUIRE(meta);
    CHECK(meta->link_type == 1);
    CHECK(meta->original_length == first[i].bytes.size());
    CHECK(r.timestamp_ns >= wall_before);
    CHECK(r.timestamp_ns <= wall_after);
    if (i > 0) CHECK(r.timestamp_ns >= records[i - 1].timestamp_ns);
  }
  CHECK(counter(*source, "packets_captured") == kStored + kDropped);
  CHECK(counter(*source, "packets_stored") == kStored);
  CHECK(counter(*source, "packets_dropped_agent") == kDropped);
  CHECK(counter(*source, "packets_dropped_kernel") == 0);
  CHECK(counter(*source, "packets_received") >= kStored + kDropped);
  CHECK(sink.refused() == kDropped);
  checkReconciles(*source);
  CHECK_FALSE(source->finished());
}
