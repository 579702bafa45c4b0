// The file output through the public Transport API: a real ring, the agent's event loop, records
// of every kind in, pcapng (read back by libpcap) and NDJSON out, rotation, restart, bad paths.
#include <pcap/pcap.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "cistern/core/record_meta.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/outputs.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using cistern::transport::FileOutputOptions;
using cistern::transport::OutputOptions;
using cistern::transport::Transport;

namespace {

struct Harness {
  cistern::testing::TempDir dir{"cistern-file-output"};
  std::unique_ptr<cistern::buffer::LmdbRing> ring;
  std::unique_ptr<cistern::platform::EventLoop> loop;
  std::unique_ptr<Transport> transport;

  Harness() {
    auto opened = cistern::buffer::LmdbRing::open(cistern::testing::smallRing(dir / "ring"));
    REQUIRE_OK(opened);
    ring = std::move(*opened);
    auto started = cistern::platform::EventLoop::start("test-loop");
    REQUIRE_OK(started);
    loop = std::move(*started);
  }
  ~Harness() {
    if (transport) transport->stop(0ms);
    loop->stop();
    (void)ring->close();
  }

  cistern::Result<std::unique_ptr<Transport>> create(const FileOutputOptions& options) {
    return Transport::create(
        *loop, {OutputOptions(options)},
        [this](const std::string& name) -> cistern::Result<cistern::FrameCursor*> {
          auto c = ring->consumer(name);
          if (!c) return tl::unexpected(c.error());
          return static_cast<cistern::FrameCursor*>(*c);
        },
        {"sensor-1", "host-1", "0.0-test"});
  }

  void start(const FileOutputOptions& options) {
    auto made = create(options);
    REQUIRE_OK(made);
    transport = std::move(*made);
    ring->setCommitListener(
        [t = transport.get()](const cistern::buffer::CommitInfo&) { t->notifyCommitted(); });
    transport->start();
  }

  void stop() {
    transport->stop(5s);
    transport.reset();
    ring->setCommitListener(nullptr);
  }

  std::uint64_t counter(const std::string& name) {
    const auto status = transport->status();
    for (const auto& c : status.at(0).counters) {
      if (c.name == name) return c.value;
    }
    return 0;
  }

  bool waitAcked(std::uint64_t n, std::chrono::milliseconds timeout = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (counter("records_acked") < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  // Appends `count` packets of `size` bytes and `count` log lines, interleaved.
  void appendMixed(std::uint64_t first, std::uint64_t count, std::size_t size = 120) {
    std::vector<std::vector<std::byte>> packet_meta;
    std::vector<std::vector<std::byte>> line_meta;
    std::vector<std::vector<std::byte>> payloads;
    std::vector<cistern::RecordInput> records;
    packet_meta.reserve(count);
    line_meta.reserve(count);
    payloads.reserve(2 * count);
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::uint64_t seq = first + i;
      packet_meta.emplace_back();
      cistern::encodePacketMeta({1, static_cast<std::uint32_t>(size + 4)}, packet_meta.back());
      payloads.emplace_back(size, static_cast<std::byte>(seq & 0xFFU));
      records.push_back({cistern::RecordKind::kPacket, 1'700'000'000'000'000'000ULL + seq, "tap0",
                         packet_meta.back(), payloads.back()});
      cistern::LogLineMeta lm;
      lm.offset = seq * 10;
      lm.path = "/var/log/app.log";
      line_meta.emplace_back();
      cistern::encodeLogLineMeta(lm, line_meta.back());
      const std::string text = "line " + std::to_string(seq);
      payloads.emplace_back(reinterpret_cast<const std::byte*>(text.data()),
                            reinterpret_cast<const std::byte*>(text.data()) + text.size());
      records.push_back({cistern::RecordKind::kLogLine, 1'700'000'000'000'000'000ULL + seq, "app",
                         line_meta.back(), payloads.back()});
    }
    REQUIRE(ring->append(records, {}, cistern::Wait::kYes));
    REQUIRE_OK(ring->flush());
  }
};

std::vector<fs::path> filesWith(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Packets in a pcapng file as libpcap reads it: (timestamp ns, captured bytes).
std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> readPackets(const fs::path& file) {
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> out;
  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  INFO(errbuf);
  REQUIRE(p != nullptr);
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(p, &h, &data) == 1) {
    const auto ns = static_cast<std::uint64_t>(h->ts.tv_sec) * 1'000'000'000ULL +
                    static_cast<std::uint64_t>(h->ts.tv_usec);
    out.emplace_back(ns,
                     std::vector<std::byte>(reinterpret_cast<const std::byte*>(data),
                                            reinterpret_cast<const std::byte*>(data) + h->caplen));
  }
  pcap_close(p);
  return out;
}

std::vector<nlohmann::json> readLines(const fs::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("file output archives packets as pcapng and logs as NDJSON, then acknowledges",
          "[component]") {
  Harness h;
  FileOutputOptions o;
  o.name = "archive";
  o.path = (h.dir / "out").string();
  h.start(o);
  h.appendMixed(0, 2000);
  REQUIRE(h.waitAcked(4000));
  h.stop();

  const auto pcaps = filesWith(h.dir / "out", ".pcapng");
  const auto logs = filesWith(h.dir / "out", ".ndjson");
  REQUIRE(pcaps.size() == 1);
  REQUIRE(logs.size() == 1);
  const auto packets = readPackets(pcaps[0]);
  REQUIRE(packets.size() == 2000);
  for (std::uint64_t i = 0; i < 2000; ++i) {
    CHECK(packets[i].first == 1'700'000'000'000'000'000ULL + i);
    REQUIRE(packets[i].second.size() == 120);
    CHECK(packets[i].second[0] == static_cast<std::byte>(i & 0xFFU));
  }
  const auto lines = readLines(logs[0]);
  REQUIRE(lines.size() == 2000);
  CHECK(lines[0]["message"] == "line 0");
  CHECK(lines[1999]["message"] == "line 1999");
  CHECK(lines[5]["path"] == "/var/log/app.log");
  CHECK(lines[5]["offset"] == 50);
  // Every frame was acknowledged (the acknowledgements commit with the ring's next commit).
  REQUIRE_OK(h.ring->flush());
  for (const auto& s : h.ring->consumerStats()) CHECK(s.pending_records == 0);
}

TEST_CASE("file output rotates by size, keeps max_files and continues after a restart",
          "[component]") {
  Harness h;
  FileOutputOptions o;
  o.name = "archive";
  o.path = (h.dir / "out").string();
  o.max_file_bytes = 64U << 10U;
  o.max_files = 3;
  o.batch.max_bytes = 16U << 10U;  // files rotate between batches
  h.start(o);
  h.appendMixed(0, 3000, 200);  // ~700 KiB of packets: about 10 files' worth
  REQUIRE(h.waitAcked(6000));
  h.stop();
  auto pcaps = filesWith(h.dir / "out", ".pcapng");
  REQUIRE(pcaps.size() == 3);
  std::size_t packets = 0;
  for (const auto& p : pcaps) {
    // Each file is complete in itself (its own section and interface blocks).
    const auto read = readPackets(p);
    CHECK(!read.empty());
    packets += read.size();
    // At most one batch (16 KiB of records plus pcapng framing) past max_file_bytes.
    CHECK(fs::file_size(p) < (64U << 10U) + (24U << 10U));
  }
  CHECK(packets < 3000);  // older files were deleted

  // A restart opens new files after the highest number present.
  const std::string last = pcaps.back().filename().string();
  h.start(o);
  h.appendMixed(3000, 10, 200);
  REQUIRE(h.waitAcked(20));
  h.stop();
  pcaps = filesWith(h.dir / "out", ".pcapng");
  CHECK(pcaps.back().filename().string() > last);
  CHECK(readPackets(pcaps.back()).size() == 10);
}

TEST_CASE("file output refuses a directory it cannot create, naming the output", "[component]") {
  Harness h;
  std::ofstream(h.dir / "plain-file") << "x";
  FileOutputOptions o;
  o.name = "archive";
  o.path = (h.dir / "plain-file" / "sub").string();
  auto made = h.create(o);
  REQUIRE_FALSE(made);
  CHECK(made.error().code == cistern::ErrorCode::kConfig);
  CHECK_THAT(made.error().message,
             Catch::Contains("output 'archive'") && Catch::Contains("plain-file"));
}
