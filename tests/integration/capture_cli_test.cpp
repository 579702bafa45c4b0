// `cistern run` and `cistern buffer export` as child processes: a pcap file in, the same packets
// out as pcapng (checked with libpcap and tshark); logs out as NDJSON; every bad input config
// reported with the input's name.
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "subprocess.h"
#include "temp_dir.h"

using cistern::testing::binary;
using cistern::testing::run;
using cistern::testing::TempDir;

namespace {

std::string cisternBin() { return binary("agent/cistern"); }

struct Packet {
  std::uint64_t ts_ns = 0;
  std::vector<unsigned char> bytes;
  std::uint32_t original_length = 0;
};

// N Ethernet frames of varying sizes with known contents and nanosecond timestamps.
std::vector<Packet> makePackets(std::size_t n) {
  std::vector<Packet> out;
  for (std::size_t i = 0; i < n; ++i) {
    Packet p;
    p.ts_ns = 1'700'000'000'000'000'000ULL + i * 1'234'567ULL + (i % 7);
    const std::size_t len = 60 + (i * 37) % 1400;
    p.bytes.resize(len);
    for (std::size_t b = 0; b < len; ++b)
      p.bytes[b] = static_cast<unsigned char>((i * 131 + b) & 0xFFU);
    p.bytes[12] = 0x08;  // EtherType IPv4, so a filter on "ip" would keep them all
    p.bytes[13] = 0x00;
    p.original_length = static_cast<std::uint32_t>(len + (i % 3 == 0 ? 100 : 0));
    out.push_back(std::move(p));
  }
  return out;
}

void writePcap(const std::filesystem::path& path, const std::vector<Packet>& packets) {
  pcap_t* dead =
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
  REQUIRE(dead != nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  REQUIRE(dumper != nullptr);
  for (const auto& p : packets) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(p.ts_ns / 1'000'000'000ULL);
    h.ts.tv_usec = static_cast<suseconds_t>(p.ts_ns % 1'000'000'000ULL);  // ns in nano files
    h.caplen = static_cast<bpf_u_int32>(p.bytes.size());
    h.len = p.original_length;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h, p.bytes.data());
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

std::vector<Packet> readCapture(const std::filesystem::path& path) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  INFO(errbuf);
  REQUIRE(p != nullptr);
  std::vector<Packet> out;
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(p, &h, &data) == 1) {
    Packet pk;
    pk.ts_ns = static_cast<std::uint64_t>(h->ts.tv_sec) * 1'000'000'000ULL +
               static_cast<std::uint64_t>(h->ts.tv_usec);
    pk.bytes.assign(data, data + h->caplen);
    pk.original_length = h->len;
    out.push_back(std::move(pk));
  }
  pcap_close(p);
  return out;
}

std::filesystem::path writeFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

nlohmann::json lastJsonLine(const std::string& out) {
  const auto end = out.find_last_not_of('\n');
  REQUIRE(end != std::string::npos);
  const auto start = out.rfind('\n', end);
  return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1));
}

std::uint64_t counter(const nlohmann::json& report, const std::string& input,
                      const std::string& name) {
  for (const auto& in : report["inputs"]) {
    if (in["name"] == input) return in["counters"][name].get<std::uint64_t>();
  }
  FAIL("no input " << input);
  return 0;
}

}  // namespace

TEST_CASE("a pcap file through cistern run comes back out of export identical", "[integration]") {
  TempDir dir;
  const auto packets = makePackets(2000);
  writePcap(dir / "in.pcap", packets);
  const auto config = writeFile(dir / "agent.yaml",
                                fmt::format(R"(
agent:
  data_dir: {}
status:
  listen: ""
buffer:
  max_size: 64MiB
inputs:
  - type: pcap
    name: replay
    file: {}
)",
                                            (dir / "data").string(), (dir / "in.pcap").string()));
  auto r = run({cisternBin(), "run", "-c", config.string(), "--exit-when-done"},
               std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto report = lastJsonLine(r.out);
  CHECK(counter(report, "replay", "packets_captured") == packets.size());
  CHECK(counter(report, "replay", "packets_stored") == packets.size());
  CHECK(counter(report, "replay", "packets_dropped_agent") == 0);
  CHECK(report["buffer"]["records"] == packets.size());

  auto e = run({cisternBin(), "buffer", "export", "--data-dir", (dir / "data").string(), "--format",
                "pcapng", "--output", (dir / "out.pcapng").string()});
  INFO(e.err);
  REQUIRE(e.exit_code == 0);
  const auto back = readCapture(dir / "out.pcapng");
  REQUIRE(back.size() == packets.size());
  for (std::size_t i = 0; i < packets.size(); ++i) {
    INFO("packet " << i);
    CHECK(back[i].ts_ns == packets[i].ts_ns);
    CHECK(back[i].bytes == packets[i].bytes);
    CHECK(back[i].original_length == packets[i].original_length);
  }

  // tshark reads the export too (it is what operators use), with nanosecond timestamps.
  if (::access("/usr/bin/tshark", X_OK) == 0) {
    auto t = run({"/usr/bin/tshark", "-r", (dir / "out.pcapng").string(), "-T", "fields", "-e",
                  "frame.time_epoch", "-e", "frame.len"},
                 std::chrono::seconds(120));
    INFO(t.err);
    REQUIRE(t.exit_code == 0);
    std::size_t lines = 0;
    for (char c : t.out) lines += c == '\n' ? 1 : 0;
    CHECK(lines == packets.size());
    const std::string first = t.out.substr(0, t.out.find('\n'));
    CHECK(first.rfind("1700000000.000000000\t", 0) == 0);
  } else {
    WARN("tshark is not installed; checked the export with libpcap only");
  }

  // Export does not consume: a second export gives the same packets; a filtered one none.
  auto again =
      run({cisternBin(), "buffer", "export", "--data-dir", (dir / "data").string(), "--format",
           "pcapng", "--input", "other", "--output", (dir / "none.pcapng").string()});
  CHECK(again.exit_code == 0);
  // No packets: a section header alone (libpcap refuses a file without interfaces; nothing to
  // read in it anyway).
  CHECK(again.err.find("exported 0 records") != std::string::npos);
  CHECK(std::filesystem::file_size(dir / "none.pcapng") < 100);
  CHECK(readCapture(dir / "out.pcapng").size() == packets.size());
}

TEST_CASE("a BPF filter keeps only matching packets, and the counts reconcile", "[integration]") {
  TempDir dir;
  auto packets = makePackets(300);
  for (std::size_t i = 0; i < packets.size(); i += 3) {
    packets[i].bytes[12] = 0x86;  // IPv6 EtherType: not "ip"
    packets[i].bytes[13] = 0xDD;
  }
  writePcap(dir / "in.pcap", packets);
  const auto config = writeFile(dir / "agent.yaml",
                                fmt::format(R"(
agent: {{data_dir: {}}}
status: {{listen: ""}}
buffer: {{max_size: 64MiB}}
inputs:
  - {{type: pcap, name: v4, file: {}, filter: "ether proto 0x0800"}}
)",
                                            (dir / "data").string(), (dir / "in.pcap").string()));
  auto r = run({cisternBin(), "run", "-c", config.string(), "--exit-when-done"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto report = lastJsonLine(r.out);
  CHECK(counter(report, "v4", "packets_stored") == 200);
  CHECK(counter(report, "v4", "packets_captured") ==
        counter(report, "v4", "packets_stored") + counter(report, "v4", "packets_dropped_agent"));
  auto e = run({cisternBin(), "buffer", "export", "--data-dir", (dir / "data").string(), "--format",
                "ndjson"});
  REQUIRE(e.exit_code == 0);
  std::size_t lines = 0;
  std::size_t pos = 0;
  while ((pos = e.out.find('\n', pos)) != std::string::npos) {
    ++lines;
    ++pos;
  }
  CHECK(lines == 200);
  const auto first = nlohmann::json::parse(e.out.substr(0, e.out.find('\n')));
  CHECK(first["kind"] == "packet");
  CHECK(first["input"] == "v4");
  CHECK(first["link_type"] == 1);
}

TEST_CASE("every bad input is reported with its name, and run exits 2", "[integration]") {
  TempDir dir;
  // A port in use: hold one.
  const int held = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(held >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(held, 1) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(held, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int port = ntohs(addr.sin_port);
  writeFile(dir / "secret.log", "x\n");
  writePcap(dir / "ok.pcap", makePackets(1));

  const auto config =
      writeFile(dir / "agent.yaml",
                fmt::format(R"(
agent: {{data_dir: {data}}}
status: {{listen: ""}}
buffer: {{max_size: 64MiB}}
inputs:
  - {{type: pcap, name: no-such-if, interface: cstnosuch0}}
  - {{type: pcap, name: bad-filter, file: {ok}, filter: "port 99999 and"}}
  - {{type: pcap, name: missing-file, file: {dir}/missing.pcap}}
  - {{type: file, name: not-a-dir, paths: ["{dir}/secret.log/*.log"]}}
  - {{type: syslog, name: busy-port, listen: "tcp://127.0.0.1:{port}"}}
)",
                            fmt::arg("data", (dir / "data").string()),
                            fmt::arg("ok", (dir / "ok.pcap").string()),
                            fmt::arg("dir", dir.path().string()), fmt::arg("port", port)));
  auto r = run({cisternBin(), "run", "-c", config.string()}, std::chrono::seconds(30));
  ::close(held);
  INFO(r.err);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("input 'no-such-if'") != std::string::npos);
  CHECK(r.err.find("input 'bad-filter'") != std::string::npos);
  CHECK(r.err.find("input 'missing-file'") != std::string::npos);
  CHECK(r.err.find("input 'busy-port'") != std::string::npos);
  CHECK(r.err.find("input 'not-a-dir'") != std::string::npos);
}

TEST_CASE("run refuses a bad config with exit 1 before touching anything", "[integration]") {
  TempDir dir;
  const auto config = writeFile(dir / "agent.yaml",
                                "inputs:\n  - {type: pcap, name: x}\n  - {type: nope, name: y}\n");
  auto r = run({cisternBin(), "run", "-c", config.string()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("inputs[0]") != std::string::npos);
  CHECK(r.err.find("inputs[1].type") != std::string::npos);
}

TEST_CASE("a second agent on the same data directory exits 2 naming the first", "[integration]") {
  TempDir dir;
  const auto config = writeFile(
      dir / "agent.yaml",
      fmt::format("agent: {{data_dir: {data}}}\nstatus: {{listen: \"\"}}\n"
                  "inputs:\n  - {{type: file, name: logs, paths: [\"{dir}/*.log\"]}}\n",
                  fmt::arg("data", (dir / "data").string()), fmt::arg("dir", dir.path().string())));
  cistern::testing::Child first({cisternBin(), "run", "-c", config.string()});
  // The first agent holds the buffer once its lock file names it.
  const auto lock_file = dir / "data" / "buffer" / "writer.lock";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::string holder;
  while (holder.empty() && std::chrono::steady_clock::now() < deadline) {
    first.pump(std::chrono::milliseconds(20));
    std::ifstream in(lock_file);
    std::getline(in, holder);
  }
  INFO(first.err());
  REQUIRE(holder == std::to_string(first.pid()));

  auto second = run({cisternBin(), "run", "-c", config.string()}, std::chrono::seconds(30));
  CHECK_FALSE(second.timed_out);
  CHECK(second.exit_code == 2);
  CHECK_THAT(second.err, Catch::Contains("is open for writing by another process (pid " + holder +
                                         "); one agent per data directory"));

  // The first one is unaffected and stops cleanly.
  first.kill(SIGTERM);
  CHECK(first.wait() == 0);
}

TEST_CASE("buffer remove-consumer deletes a removed output's cursor, nothing else",
          "[integration]") {
  TempDir dir;
  writePcap(dir / "a.pcap", makePackets(50));
  writePcap(dir / "b.pcap", makePackets(70));
  const std::string head = fmt::format(
      "agent: {{data_dir: {}}}\nstatus: {{listen: \"\"}}\nbuffer: {{max_size: 64MiB}}\n",
      (dir / "data").string());
  // First both outputs deliver a's packets; then "gone" is no longer configured and b's packets
  // stay in the buffer for its cursor only.
  const auto with_both = writeFile(
      dir / "both.yaml", head + fmt::format("inputs:\n  - {{type: pcap, name: a, file: {}}}\n"
                                            "outputs:\n  - {{type: file, name: kept, path: {}}}\n"
                                            "  - {{type: file, name: gone, path: {}}}\n",
                                            (dir / "a.pcap").string(), (dir / "kept").string(),
                                            (dir / "gone").string()));
  const auto without =
      writeFile(dir / "without.yaml",
                head + fmt::format("inputs:\n  - {{type: pcap, name: b, file: {}}}\n"
                                   "outputs:\n  - {{type: file, name: kept, path: {}}}\n",
                                   (dir / "b.pcap").string(), (dir / "kept").string()));
  for (const auto& config : {with_both, without}) {
    auto r = run({cisternBin(), "run", "-c", config.string(), "--exit-when-done"},
                 std::chrono::seconds(60));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
  auto inspect = [&] {
    auto r =
        run({cisternBin(), "buffer", "inspect", "--data-dir", (dir / "data").string(), "--json"});
    REQUIRE(r.exit_code == 0);
    return nlohmann::json::parse(r.out);
  };
  auto pendingOf = [](const nlohmann::json& j, const std::string& name) {
    for (const auto& c : j["consumers"]) {
      if (c["name"] == name) return c["pending_records"].get<std::int64_t>();
    }
    return std::int64_t{-1};
  };
  const auto before = inspect();
  REQUIRE(pendingOf(before, "gone") == 70);
  REQUIRE(pendingOf(before, "kept") == 0);
  REQUIRE(before["records"] == 70);

  // Refused: an output still configured, and a name the buffer does not have.
  auto still = run({cisternBin(), "buffer", "remove-consumer", "gone", "-c", with_both.string()});
  CHECK(still.exit_code == 2);
  CHECK_THAT(still.err, Catch::Contains("output 'gone' is still configured"));
  auto unknown = run({cisternBin(), "buffer", "remove-consumer", "nope", "-c", without.string()});
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("has no consumer 'nope' (it has: gone, kept)"));
  CHECK(pendingOf(inspect(), "gone") == 70);

  auto removed = run({cisternBin(), "buffer", "remove-consumer", "gone", "-c", without.string()});
  INFO(removed.err);
  CHECK(removed.exit_code == 0);
  CHECK_THAT(removed.out,
             Catch::Contains("removed consumer 'gone'") && Catch::Contains("70 records in"));
  const auto after = inspect();
  CHECK(pendingOf(after, "gone") == -1);
  CHECK(pendingOf(after, "kept") == 0);
  CHECK(after["records"] == 0);  // "kept" had acknowledged everything: the frames are gone

  auto again = run({cisternBin(), "buffer", "remove-consumer", "gone", "-c", without.string()});
  CHECK(again.exit_code == 2);
}
