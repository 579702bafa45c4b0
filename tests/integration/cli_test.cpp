// The cistern binary as a child process: check-config, buffer inspect, buffer verify.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "../unit/buffer/ring_test_util.h"
#include "cistern/buffer/ring.h"
#include "ring_files.h"
#include "subprocess.h"
#include "temp_dir.h"

using cistern::testing::appendSeq;
using cistern::testing::binary;
using cistern::testing::run;
using cistern::testing::TempDir;

namespace {

std::string cisternBin() { return binary("agent/cistern"); }

std::filesystem::path writeFile(const TempDir& dir, const std::string& name,
                                const std::string& text) {
  auto path = dir / name;
  std::ofstream(path) << text;
  return path;
}

// A ring at <data_dir>/buffer with 1000 records, consumer "a" having acknowledged all of it and
// consumer "b" nothing.
void makeRing(const std::filesystem::path& data_dir) {
  auto opts = cistern::testing::smallRing(data_dir / "buffer");
  auto ring = cistern::buffer::LmdbRing::open(opts).value();
  auto* a = ring->consumer("a").value();
  (void)ring->consumer("b").value();
  appendSeq(*ring, 0, 1000);
  REQUIRE_OK(ring->flush());
  cistern::testing::drain(*a, true);
  REQUIRE_OK(ring->flush());
  REQUIRE_OK(ring->close());
}

}  // namespace

TEST_CASE("cistern version prints the version", "[integration]") {
  auto r = run({cisternBin(), "version"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("cistern ", 0) == 0);
}

TEST_CASE("check-config accepts a valid file and exits 0", "[integration]") {
  TempDir dir;
  const auto file = writeFile(dir, "ok.yaml",
                              "agent:\n  id: sensor-1\n  data_dir: /tmp/x\n"
                              "buffer:\n  max_size: 10GiB\n  commit_interval: 250ms\n");
  auto r = run({cisternBin(), "check-config", "-c", file.string()});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("valid") != std::string::npos);
  CHECK(r.out.find("10GiB") != std::string::npos);
}

TEST_CASE("check-config reports every problem with file, line and key, exit 1", "[integration]") {
  TempDir dir;
  const auto file = writeFile(dir, "bad.yaml",
                              "agent:\n"
                              "  id: sensor-1\n"
                              "buffer:\n"
                              "  max_sise: 10GiB\n"          // line 4: unknown key
                              "  commit_interval: 250\n"     // line 5: duration without unit
                              "  sync: sometimes\n"          // line 6: bad enum value
                              "  frame_max_bytes: [1, 2]\n"  // line 7: wrong type
                              "log:\n"
                              "  level: loud\n");  // line 9: bad enum value
  auto r = run({cisternBin(), "check-config", "-c", file.string()});
  CHECK(r.exit_code == 1);
  const std::string f = file.string();
  CHECK(r.err.find(f + ":4:") != std::string::npos);
  CHECK(r.err.find("buffer.max_sise") != std::string::npos);
  CHECK(r.err.find("did you mean 'max_size'") != std::string::npos);
  CHECK(r.err.find(f + ":5:") != std::string::npos);
  CHECK(r.err.find(f + ":6:") != std::string::npos);
  CHECK(r.err.find(f + ":7:") != std::string::npos);
  CHECK(r.err.find(f + ":9:") != std::string::npos);
  CHECK(r.err.find("5 problems") != std::string::npos);
}

TEST_CASE("check-config on a missing file exits 2 naming the file", "[integration]") {
  auto r = run({cisternBin(), "check-config", "-c", "/nonexistent/cistern.yaml"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("/nonexistent/cistern.yaml") != std::string::npos);
}

TEST_CASE("buffer inspect shows contents and every consumer's cursor", "[integration]") {
  TempDir dir;
  makeRing(dir.path());
  auto text = run({cisternBin(), "buffer", "inspect", "--data-dir", dir.path().string()});
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("records    1000") != std::string::npos);
  CHECK(text.out.find("consumers    2") != std::string::npos);

  auto js = run({cisternBin(), "buffer", "inspect", "--json", "--data-dir", dir.path().string()});
  REQUIRE(js.exit_code == 0);
  const auto j = nlohmann::json::parse(js.out);
  CHECK(j["records"] == 1000);
  CHECK(j["appended_records"] == 1000);
  CHECK(j["max_size"] == 8ULL << 20U);
  CHECK(j["oldest_ts_ns"].get<std::uint64_t>() <= j["newest_ts_ns"].get<std::uint64_t>());
  REQUIRE(j["consumers"].size() == 2);
  for (const auto& c : j["consumers"]) {
    if (c["name"] == "a") {
      CHECK(c["acked_records"] == 1000);
      CHECK(c["pending_records"] == 0);
    } else {
      CHECK(c["name"] == "b");
      CHECK(c["acked_records"] == 0);
      CHECK(c["pending_records"] == 1000);
    }
    CHECK(c["assigned_records"] == 1000);
  }
  // The ring directory itself is accepted as well as the agent's data directory.
  auto direct = run({cisternBin(), "buffer", "inspect", "--data-dir", (dir / "buffer").string()});
  CHECK(direct.exit_code == 0);
}

TEST_CASE("buffer inspect and verify take the data directory from a config file", "[integration]") {
  TempDir dir;
  makeRing(dir / "data");
  const auto file =
      writeFile(dir, "c.yaml", "agent:\n  data_dir: " + (dir / "data").string() + "\n");
  CHECK(run({cisternBin(), "buffer", "inspect", "-c", file.string()}).exit_code == 0);
  CHECK(run({cisternBin(), "buffer", "verify", "-c", file.string()}).exit_code == 0);
}

TEST_CASE("buffer verify passes on a healthy ring", "[integration]") {
  TempDir dir;
  makeRing(dir.path());
  auto r = run({cisternBin(), "buffer", "verify", "--data-dir", dir.path().string()});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok") != std::string::npos);
  auto js = run({cisternBin(), "buffer", "verify", "--json", "--data-dir", dir.path().string()});
  const auto j = nlohmann::json::parse(js.out);
  CHECK(j["ok"] == true);
  CHECK(j["records_checked"] == 1000);
}

TEST_CASE("buffer verify names a damaged frame and exits 1", "[integration]") {
  TempDir dir;
  makeRing(dir.path());
  std::uint64_t victim = 0;
  {
    cistern::buffer::RingOptions ro;
    ro.dir = dir / "buffer";
    ro.read_only = true;
    victim = cistern::buffer::LmdbRing::open(ro).value()->stats().oldest_frame + 1;
  }
  REQUIRE(cistern::testing::damageFrameBody(dir / "buffer" / "data.mdb", victim) >= 1);
  auto r = run({cisternBin(), "buffer", "verify", "--data-dir", dir.path().string()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("bad frames: " + std::to_string(victim)) != std::string::npos);
  CHECK(r.err.find("checksum mismatch") != std::string::npos);
  CHECK(r.out.find("FAILED") != std::string::npos);
  auto js = run({cisternBin(), "buffer", "verify", "--json", "--data-dir", dir.path().string()});
  CHECK(js.exit_code == 1);
  const auto j = nlohmann::json::parse(js.out);
  CHECK(j["ok"] == false);
  CHECK(j["bad_frames"] == nlohmann::json::array({victim}));
}

TEST_CASE("buffer commands explain a missing ring and bad usage, exit 2", "[integration]") {
  TempDir dir;
  auto missing = run({cisternBin(), "buffer", "inspect", "--data-dir", (dir / "none").string()});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("no buffer") != std::string::npos);
  CHECK(run({cisternBin(), "buffer", "verify"}).exit_code == 2);
  CHECK(run({cisternBin(), "no-such-command"}).exit_code == 2);
}
