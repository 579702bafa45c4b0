// Reconfiguring a running agent (SIGHUP) through `cistern run` as a child process: what changes,
// what keeps running, what a bad config gets, and that a change during heavy capture loses no
// buffered record and reports the capture gap of a replaced packet input.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent_process.h"
#include "subprocess.h"
#include "temp_dir.h"

using cistern::testing::AgentProcess;
using cistern::testing::TempDir;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path.string() + ".tmp");
  out << text;
  out.close();
  fs::rename(path.string() + ".tmp", path);  // a reload never sees half a file
}

// Lines ("line 000042") found in the NDJSON files of an archive directory, with their counts.
std::map<std::string, int> archivedLines(const fs::path& dir) {
  std::map<std::string, int> seen;
  if (!fs::exists(dir)) return seen;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".ndjson") continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("message")) ++seen[j["message"].get<std::string>()];
    }
  }
  return seen;
}

std::string config(const TempDir& dir, const std::string& inputs, const std::string& outputs) {
  return fmt::format(R"(agent:
  id: reload-test
  data_dir: {}
status:
  listen: ""
buffer:
  max_size: 64MiB
  commit_interval: 5ms
inputs:
{}
outputs:
{}
)",
                     (dir / "data").string(), inputs, outputs);
}

std::string fileInput(const TempDir& dir) {
  return fmt::format(R"(  - type: file
    name: app
    paths: {}
    start_at: beginning
    poll_interval: 20ms)",
                     (dir / "app.log").string());
}

std::string archive(const TempDir& dir, const std::string& name) {
  return fmt::format("  - type: file\n    name: {}\n    path: {}", name, (dir / name).string());
}

// Appends `count` numbered lines, `per_second` of them per second (0: at once).
void appendLines(const fs::path& path, std::size_t first, std::size_t count, int per_second = 0) {
  std::ofstream out(path, std::ios::app);
  for (std::size_t i = first; i < first + count; ++i) {
    out << fmt::format("line {:06}\n", i);
    if (per_second > 0 && i % 50 == 49) {
      out.flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(50'000 / per_second));
    }
  }
}

}  // namespace

TEST_CASE("SIGHUP adds an output, keeps what did not change, and refuses a bad config",
          "[integration]") {
  TempDir dir;
  appendLines(dir / "app.log", 0, 300);
  const fs::path cfg = dir / "agent.yaml";
  writeFile(cfg, config(dir, fileInput(dir), archive(dir, "first")));
  AgentProcess agent(cfg);
  REQUIRE(agent.waitFor([&] { return archivedLines(dir / "first").size() >= 300; }, 30s));

  // A second archive joins: it starts at the oldest frame still in the buffer, so it gets what
  // is captured from now on at least.
  writeFile(cfg,
            config(dir, fileInput(dir), archive(dir, "first") + "\n" + archive(dir, "second")));
  ::kill(agent.pid(), SIGHUP);
  agent.idle(500ms);
  appendLines(dir / "app.log", 300, 100);
  REQUIRE(agent.waitFor(
      [&] {
        return archivedLines(dir / "first").size() >= 400 &&
               archivedLines(dir / "second").count("line 000399") == 1;
      },
      30s));

  // A config that does not parse, one that changes the buffer: both refused, the agent runs on.
  writeFile(cfg, "inputs: [ this is not valid");
  ::kill(agent.pid(), SIGHUP);
  agent.idle(300ms);
  {
    std::string changed = config(dir, fileInput(dir), archive(dir, "first"));
    const auto at = changed.find("max_size: 64MiB");
    changed.replace(at, std::string("max_size: 64MiB").size(), "max_size: 32MiB");
    writeFile(cfg, changed);
  }
  ::kill(agent.pid(), SIGHUP);
  agent.idle(300ms);
  appendLines(dir / "app.log", 400, 100);
  REQUIRE(agent.waitFor([&] { return archivedLines(dir / "first").size() >= 500; }, 30s));
  const auto report = agent.stop();
  INFO(agent.err());
  REQUIRE(report.is_object());
  CHECK_THAT(agent.err(), Catch::Contains("is not valid; the running config stays"));
  CHECK_THAT(agent.err(), Catch::Contains("'buffer' changes only at a restart"));
  // Every line exactly once in the first archive, which kept running throughout.
  const auto first = archivedLines(dir / "first");
  CHECK(first.size() == 500);
  for (const auto& [line, n] : first) CHECK(n == 1);
  CHECK(AgentProcess::outputCounter(report, "second", "records_acked") >= 100);
}

TEST_CASE("a config change during heavy capture loses nothing and reports the capture gap",
          "[integration]") {
  REQUIRE(::geteuid() == 0);  // live capture on lo; the suite runs as root (CI does)
  TempDir dir;
  const fs::path cfg = dir / "agent.yaml";
  const auto inputs = [&](const std::string& filter) {
    return fileInput(dir) + fmt::format(R"(
  - type: pcap
    name: loopback
    interface: lo
    filter: "{}")",
                                        filter);
  };
  writeFile(cfg, config(dir, inputs("udp port 9"), archive(dir, "archive")));
  AgentProcess agent(cfg);
  agent.idle(500ms);
  // Heavy capture: 20,000 lines at about 10,000 per second while the packet input is replaced.
  std::thread writer([&] { appendLines(dir / "app.log", 0, 20000, 10000); });
  std::this_thread::sleep_for(700ms);
  writeFile(cfg, config(dir, inputs("udp port 19"), archive(dir, "archive")));
  ::kill(agent.pid(), SIGHUP);
  writer.join();
  REQUIRE(agent.waitFor([&] { return archivedLines(dir / "archive").size() >= 20000; }, 60s));
  const auto report = agent.stop();
  INFO(agent.err());
  REQUIRE(report.is_object());
  const auto lines = archivedLines(dir / "archive");
  CHECK(lines.size() == 20000);
  std::size_t duplicates = 0;
  for (const auto& [line, n] : lines) duplicates += static_cast<std::size_t>(n - 1);
  CHECK(duplicates == 0);
  REQUIRE(report["reconfigurations"].size() == 1);
  CHECK(report["reconfigurations"][0]["input"] == "loopback");
  const double gap_ms = report["reconfigurations"][0]["gap_ms"].get<double>();
  WARN("capture gap of the replaced pcap input: " << gap_ms << " ms");
  CHECK(gap_ms < 1000);
  CHECK_THAT(agent.err(), Catch::Contains("input=loopback replaced; capture gap"));
}
