// The control plane's own pieces: the store that keeps the last applied remote config for the
// next start, and the effective config text reported to the OpAMP server.
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "control/control_plane.h"
#include "control/remote_config_store.h"
#include "temp_dir.h"

namespace cistern::agent {
namespace {

using testing::TempDir;

void writeFile(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

TEST_CASE("remote config store: nothing stored, saved, loaded back, cleared", "[unit]") {
  TempDir dir;
  RemoteConfigStore store(dir.path() / "opamp");
  auto empty = store.load();
  REQUIRE(empty);
  CHECK_FALSE(empty->has_value());

  const std::string hash("\x00\x01\xfe\xff hash", 9);  // opaque bytes, not text
  const std::string text = "inputs:\n  - {name: a, type: file, paths: [/x]}\n";
  REQUIRE(store.save({hash, text}));
  auto loaded = store.load();
  REQUIRE(loaded);
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->hash == hash);
  CHECK((*loaded)->text == text);

  // Saving again replaces it.
  REQUIRE(store.save({"h2", "log: {level: debug}\n"}));
  loaded = store.load();
  REQUIRE(loaded);
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->hash == "h2");
  CHECK((*loaded)->text == "log: {level: debug}\n");

  REQUIRE(store.clear());
  loaded = store.load();
  REQUIRE(loaded);
  CHECK_FALSE(loaded->has_value());
  REQUIRE(store.clear());  // idempotent
}

// What load() must say about a damaged store: refused, naming the directory.
void checkRefused(const RemoteConfigStore& store) {
  const auto loaded = store.load();
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == ErrorCode::kCorrupt);
  CHECK_THAT(loaded.error().message, Catch::Contains(store.dir().string()));
}

TEST_CASE("remote config store: files that do not belong together are refused, not used",
          "[unit]") {
  TempDir dir;
  RemoteConfigStore store(dir.path());
  REQUIRE(store.save({"abc", "log: {level: info}\n"}));

  SECTION("the text changed after the hash was written (an interrupted save)") {
    writeFile(dir.path() / "remote_config.yaml", "log: {level: debug}\n");
    checkRefused(store);
  }
  SECTION("the hash file is garbage") {
    writeFile(dir.path() / "remote_config.hash", "not hex at all\n");
    checkRefused(store);
  }
  SECTION("the hash file is empty") {
    writeFile(dir.path() / "remote_config.hash", "");
    checkRefused(store);
  }
  SECTION("the text is missing") {
    std::filesystem::remove(dir.path() / "remote_config.yaml");
    checkRefused(store);
  }
}

TEST_CASE("remote config store: an oversized file is refused", "[unit]") {
  TempDir dir;
  RemoteConfigStore store(dir.path());
  REQUIRE(store.save({"abc", "x"}));
  writeFile(dir.path() / "remote_config.yaml", std::string(RemoteConfigStore::kMaxBytes + 1, 'x'));
  const auto loaded = store.load();
  REQUIRE_FALSE(loaded);
  CHECK_THAT(loaded.error().message, Catch::Contains("larger than"));
}

TEST_CASE("remote config store: an unwritable directory is a clear error", "[unit]") {
  TempDir dir;
  writeFile(dir.path() / "file", "x");
  RemoteConfigStore store(dir.path() / "file" / "opamp");  // a file where a directory must be
  const auto saved = store.save({"abc", "x"});
  REQUIRE_FALSE(saved);
  CHECK(saved.error().code == ErrorCode::kIo);
  CHECK_THAT(saved.error().message, Catch::Contains("opamp"));
}

TEST_CASE("hex of opaque bytes", "[unit]") {
  CHECK(toHex("") == "");
  CHECK(toHex(std::string("\x00\x0f\xa0\xff", 4)) == "000fa0ff");
}

TEST_CASE("effective config: the remote sections replace the local ones, the rest stays",
          "[unit]") {
  const std::string local = R"(agent:
  id: sensor-1
  data_dir: /var/lib/cistern
inputs:
  - name: a
    type: file
    paths: [/var/log/a.log]
log:
  level: info
)";
  SECTION("no remote config: the local text as it is") {
    CHECK(mergeConfigText(local, "") == local);
  }
  SECTION("a remote inputs section") {
    const std::string merged = mergeConfigText(local,
                                               "inputs:\n  - {name: b, type: file, "
                                               "paths: [/var/log/b.log]}\n");
    CHECK_THAT(merged, Catch::Contains("sensor-1"));
    CHECK_THAT(merged, Catch::Contains("/var/lib/cistern"));
    CHECK_THAT(merged, Catch::Contains("/var/log/b.log"));
    CHECK_THAT(merged, !Catch::Contains("/var/log/a.log"));
    CHECK_THAT(merged, Catch::Contains("level: info"));
    // What is reported parses as a config again, with the merged values.
    const auto parsed = parseConfig(merged, "effective");
    REQUIRE(parsed);
    REQUIRE(parsed->inputs.size() == 1);
    CHECK(inputName(parsed->inputs[0]) == "b");
    CHECK(parsed->agent.id == "sensor-1");
  }
  SECTION("text that is not a mapping is reported as the server sent it") {
    CHECK(mergeConfigText(local, "- just\n- a list\n") == "- just\n- a list\n");
    CHECK(mergeConfigText(local, "{unclosed: [") == "{unclosed: [");
  }
}

}  // namespace
}  // namespace cistern::agent
