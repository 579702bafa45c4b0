#include "cistern/agent/config.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/platform/process.h"
#include "temp_dir.h"

using cistern::ErrorCode;
using cistern::agent::Config;
using cistern::agent::ConfigDiagnostic;
using cistern::agent::LogLevel;
using cistern::agent::parseConfig;
using cistern::buffer::Codec;
using cistern::buffer::FullPolicy;
using cistern::buffer::SyncMode;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

struct Parsed {
  cistern::Result<Config> result;
  std::vector<ConfigDiagnostic> diagnostics;
};

Parsed parse(std::string_view text) {
  Parsed parsed;
  parsed.result = parseConfig(text, "test.yaml", &parsed.diagnostics);
  return parsed;
}

// Parses text that must be valid and returns the config.
Config parseValid(std::string_view text) {
  Parsed parsed = parse(text);
  INFO(text);
  INFO((parsed.result ? std::string() : parsed.result.error().message));
  REQUIRE(parsed.result);
  REQUIRE(parsed.diagnostics.empty());
  return *parsed.result;
}

// Parses text that must be invalid and returns its diagnostics, checking the error's message
// lists exactly them.
std::vector<ConfigDiagnostic> parseInvalid(std::string_view text) {
  Parsed parsed = parse(text);
  INFO(text);
  REQUIRE_FALSE(parsed.result);
  CHECK(parsed.result.error().code == ErrorCode::kConfig);
  REQUIRE_FALSE(parsed.diagnostics.empty());
  std::string expected;
  for (const auto& d : parsed.diagnostics) {
    if (!expected.empty()) expected += '\n';
    expected += d.describe();
  }
  CHECK(parsed.result.error().message == expected);
  return parsed.diagnostics;
}

// The single diagnostic of text that has exactly one problem.
ConfigDiagnostic onlyProblem(std::string_view text) {
  auto diagnostics = parseInvalid(text);
  INFO(parseConfig(text, "test.yaml").error().message);
  REQUIRE(diagnostics.size() == 1);
  return diagnostics.front();
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const std::string kDocsPath = CISTERN_SOURCE_DIR "/docs/config.md";

// The text of the first ```<language> block after `heading` in the docs.
std::string docsBlock(const std::string& docs, const std::string& heading,
                      const std::string& language) {
  const std::size_t section = docs.find(heading);
  REQUIRE(section != std::string::npos);
  const std::string fence = "```" + language + "\n";
  const std::size_t from = docs.find(fence, section);
  REQUIRE(from != std::string::npos);
  const std::size_t to = docs.find("```", from + fence.size());
  REQUIRE(to != std::string::npos);
  return docs.substr(from + fence.size(), to - from - fence.size());
}

}  // namespace

TEST_CASE("a complete file sets every key", "[unit]") {
  const Config config = parseValid(R"(# every key, none at its default
agent:
  id: sensor-berlin_01.a
  data_dir: /srv/cistern
log:
  level: debug
buffer:
  max_size: 10GiB
  map_size: 12GiB
  sync: always
  when_full: block
  commit_interval: 250ms
  commit_max_bytes: 16MiB
  frame_max_bytes: 1MiB
  compression: zstd
  compression_level: 19
  ingest_max_bytes: 128MiB
)");
  CHECK(config.agent.id == "sensor-berlin_01.a");
  CHECK(config.agent.data_dir == "/srv/cistern");
  CHECK(config.log.level == LogLevel::kDebug);
  CHECK(config.buffer.max_size == 10 * kGiB);
  CHECK(config.buffer.map_size == 12 * kGiB);
  CHECK(config.buffer.sync == SyncMode::kAlways);
  CHECK(config.buffer.when_full == FullPolicy::kBlock);
  CHECK(config.buffer.commit_interval == 250ms);
  CHECK(config.buffer.commit_max_bytes == 16 * kMiB);
  CHECK(config.buffer.frame_max_bytes == 1 * kMiB);
  CHECK(config.buffer.codec == Codec::kZstd);
  CHECK(config.buffer.zstd_level == 19);
  CHECK(config.buffer.ingest_max_bytes == 128 * kMiB);
  CHECK(config.buffer.dir.empty());
  CHECK_FALSE(config.buffer.read_only);
}

TEST_CASE("flow style, quoted values and every enum value parse", "[unit]") {
  const Config config = parseValid(
      "{agent: {id: \"a\"}, log: {level: 'off'}, buffer: {sync: none, max_size: '2 GB', "
      "commit_interval: 0, compression_level: +3}}");
  CHECK(config.agent.id == "a");
  CHECK(config.log.level == LogLevel::kOff);
  CHECK(config.buffer.sync == SyncMode::kNone);
  CHECK(config.buffer.max_size == 2'000'000'000);
  CHECK(config.buffer.commit_interval == 0ns);
  CHECK(config.buffer.zstd_level == 3);

  const std::vector<std::pair<std::string, LogLevel>> levels{
      {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
      {"warn", LogLevel::kWarn},   {"error", LogLevel::kError}, {"off", LogLevel::kOff}};
  for (const auto& [name, level] : levels) {
    CHECK(parseValid("log:\n  level: " + name + "\n").log.level == level);
  }
  CHECK(parseValid("buffer: {sync: batch}").buffer.sync == SyncMode::kBatch);
  CHECK(parseValid("buffer: {when_full: drop_oldest}").buffer.when_full == FullPolicy::kDropOldest);
  CHECK(parseValid("buffer: {compression: none}").buffer.codec == Codec::kNone);
}

TEST_CASE("keys the file leaves out take the schema's defaults", "[unit]") {
  for (const char* text : {"log: {}", "agent:\nlog:\nbuffer:\n", "buffer: {}\n# more to come\n"}) {
    INFO(text);
    const Config config = parseValid(text);
    CHECK(config.agent.id == cistern::platform::hostName());
    CHECK(config.agent.data_dir == "/var/lib/cistern");
    CHECK(config.log.level == LogLevel::kInfo);
    CHECK(config.buffer.max_size == 1 * kGiB);
    CHECK(config.buffer.map_size == 0);
    CHECK(config.buffer.sync == SyncMode::kBatch);
    CHECK(config.buffer.when_full == FullPolicy::kDropOldest);
    CHECK(config.buffer.commit_interval == 20ms);
    CHECK(config.buffer.commit_max_bytes == 4 * kMiB);
    CHECK(config.buffer.frame_max_bytes == 256 * kKiB);
    CHECK(config.buffer.codec == Codec::kNone);
    CHECK(config.buffer.zstd_level == 1);
    CHECK(config.buffer.ingest_max_bytes == 16 * kMiB);
  }
}

TEST_CASE("the schema's buffer defaults agree with RingOptions' own", "[unit]") {
  // The agent always takes the schema's defaults; RingOptions' own serve tests and tools. When
  // they differ, one of the two was changed without the other: decide which is right.
  const cistern::buffer::RingOptions options;
  const Config config = parseValid("buffer: {}");
  CHECK(config.buffer.max_size == options.max_size);
  CHECK(config.buffer.map_size == options.map_size);
  CHECK(config.buffer.sync == options.sync);
  CHECK(config.buffer.when_full == options.when_full);
  CHECK(config.buffer.commit_interval == options.commit_interval);
  CHECK(config.buffer.commit_max_bytes == options.commit_max_bytes);
  CHECK(config.buffer.frame_max_bytes == options.frame_max_bytes);
  CHECK(config.buffer.codec == options.codec);
  CHECK(config.buffer.zstd_level == options.zstd_level);
  CHECK(config.buffer.ingest_max_bytes == options.ingest_max_bytes);
  CHECK(Config{}.log.level == parseValid("log: {}").log.level);
}

TEST_CASE("an unknown key names the nearest valid one", "[unit]") {
  SECTION("a typo in a section") {
    const auto d = onlyProblem("buffer:\n  max_size: 2GiB\n  max_sise: 1GiB\n");
    CHECK(d.file == "test.yaml");
    CHECK(d.line == 3);
    CHECK(d.column == 3);
    CHECK(d.key == "buffer.max_sise");
    CHECK(d.message == "unknown key");
    CHECK(d.suggestion == "max_size");
    CHECK(d.describe() == "test.yaml:3:3: buffer.max_sise: unknown key (did you mean 'max_size'?)");
  }
  SECTION("a typo in a section name") {
    const auto d = onlyProblem("log: {}\nbufer:\n  max_size: 1GiB\n");
    CHECK(d.line == 2);
    CHECK(d.column == 1);
    CHECK(d.key == "bufer");
    CHECK(d.message == "unknown section");
    CHECK(d.suggestion == "buffer");
  }
  SECTION("other spellings of a key: case, dashes, swapped letters") {
    CHECK(onlyProblem("buffer: {Max_Size: 1GiB}").suggestion == "max_size");
    CHECK(onlyProblem("buffer: {max-size: 1GiB}").suggestion == "max_size");
    CHECK(onlyProblem("buffer: {mxa_size: 1GiB}").suggestion == "max_size");
    CHECK(onlyProblem("agent: {data_dri: /x}").suggestion == "data_dir");
  }
  SECTION("an unknown top-level section with nothing close lists the sections") {
    const auto d = onlyProblem("exporters:\n  - kafka\n");
    CHECK(d.key == "exporters");
    CHECK(d.suggestion.empty());
    CHECK(d.message ==
          "unknown section; valid sections are 'agent', 'log', 'buffer', 'inputs', 'outputs', "
          "'opamp', 'status'");
  }
  SECTION("an unknown key with nothing close lists the section's keys") {
    const auto d = onlyProblem("buffer:\n  path: /tmp/x\n");
    CHECK(d.key == "buffer.path");
    CHECK(d.suggestion.empty());
    CHECK(contains(d.message, "valid keys are 'max_size', 'map_size', 'sync'"));
    CHECK(contains(d.message, "'ingest_max_bytes'"));
  }
  SECTION("a key in the wrong section points to the right one") {
    const auto d = onlyProblem("buffer:\n  level: debug\n");
    CHECK(d.key == "buffer.level");
    CHECK(d.suggestion == "log.level");
    const auto top = onlyProblem("max_size: 1GiB\n");
    CHECK(top.suggestion == "buffer.max_size");
  }
  SECTION("a misspelt enum value names the nearest choice") {
    const auto d = onlyProblem("log:\n  level: INFO\n");
    CHECK(d.key == "log.level");
    CHECK(d.line == 2);
    CHECK(d.column == 10);
    CHECK(d.suggestion == "info");
    CHECK(contains(d.message, "trace, debug, info, warn, error, off"));
    CHECK(onlyProblem("buffer: {when_full: drop-oldest}").suggestion == "drop_oldest");
    CHECK(onlyProblem("buffer: {sync: sometimes}").suggestion.empty());
  }
}

TEST_CASE("bad units are reported with the units that work", "[unit]") {
  const auto rate = onlyProblem("buffer:\n  max_size: 10GB/s\n");
  CHECK(rate.line == 2);
  CHECK(rate.column == 13);
  CHECK(rate.key == "buffer.max_size");
  CHECK(contains(rate.message, "'10GB/s'"));
  CHECK(contains(rate.message, "GiB"));

  const auto bare = onlyProblem("buffer:\n  commit_interval: 250\n");
  CHECK(bare.key == "buffer.commit_interval");
  CHECK(contains(bare.message, "needs a unit"));

  CHECK(
      contains(onlyProblem("buffer: {commit_interval: 5 days}").message, "unknown duration unit"));
  CHECK(contains(onlyProblem("buffer: {max_size: -1GiB}").message, "non-negative"));
  CHECK(contains(onlyProblem("buffer: {max_size: lots}").message, "not a size"));
}

TEST_CASE("values of the wrong type are reported", "[unit]") {
  const auto map = onlyProblem("buffer:\n  max_size:\n    value: 1GiB\n");
  CHECK(map.key == "buffer.max_size");
  CHECK(map.line == 3);
  CHECK(map.message == "expected a size such as 512MiB, got a mapping");

  const auto list = onlyProblem("log:\n  level: [info, debug]\n");
  CHECK(list.key == "log.level");
  CHECK(list.message == "expected one of trace, debug, info, warn, error, off, got a list");

  const auto text = onlyProblem("buffer:\n  compression_level: high\n");
  CHECK(text.key == "buffer.compression_level");
  CHECK(text.message == "'high' is not a whole number (1 to 19)");
  CHECK(contains(onlyProblem("buffer: {compression_level: 1.5}").message, "not a whole number"));

  const auto id = onlyProblem("agent:\n  id: [a, b]\n");
  CHECK(id.message == "expected a string, got a list");

  const auto section = onlyProblem("buffer: 1GiB\n");
  CHECK(section.key == "buffer");
  CHECK(section.line == 1);
  CHECK(section.column == 9);
  CHECK(contains(section.message, "expected a mapping with keys such as max_size, map_size"));
  CHECK(contains(section.message, "got a single value"));

  const auto empty = onlyProblem("buffer:\n  max_size:\n");
  CHECK(empty.key == "buffer.max_size");
  CHECK(empty.line == 2);
  CHECK(contains(empty.message, "has no value"));
  CHECK(contains(empty.message, "default ('1GiB')"));

  const auto complex_key = onlyProblem("buffer:\n  ? [a, b]\n  : 1\n");
  CHECK(complex_key.key == "buffer");
  CHECK(contains(complex_key.message, "a key must be a plain name"));
}

TEST_CASE("values out of range are reported with the range", "[unit]") {
  struct Case {
    std::string text;
    std::string key;
    std::string message;
  };
  const std::vector<Case> cases{
      {"buffer: {compression_level: 20}", "buffer.compression_level",
       "'20' is out of range; use 1 to 19"},
      {"buffer: {compression_level: 0}", "buffer.compression_level",
       "'0' is out of range; use 1 to 19"},
      {"buffer: {compression_level: 99999999999999999999999}", "buffer.compression_level",
       "'99999999999999999999999' is out of range; use 1 to 19"},
      {"buffer: {max_size: 512KiB}", "buffer.max_size",
       "'512KiB' is too small; the minimum is 1MiB"},
      {"buffer: {map_size: 100KiB}", "buffer.map_size",
       "'100KiB' is too small; use at least 1MiB, or 0 (derived from max_size)"},
      {"buffer: {commit_interval: 11s}", "buffer.commit_interval",
       "'11s' is too long; the maximum is 10s"},
      {"buffer: {commit_max_bytes: 32KiB}", "buffer.commit_max_bytes",
       "'32KiB' is too small; the minimum is 64KiB"},
      {"buffer: {commit_max_bytes: 2GiB, max_size: 100GiB}", "buffer.commit_max_bytes",
       "'2GiB' is too large; the maximum is 1GiB"},
      {"buffer: {frame_max_bytes: 1KiB}", "buffer.frame_max_bytes",
       "'1KiB' is too small; the minimum is 4KiB"},
      {"buffer: {frame_max_bytes: 128MiB}", "buffer.frame_max_bytes",
       "'128MiB' is too large; the maximum is 64MiB"},
      {"buffer: {ingest_max_bytes: 17GiB}", "buffer.ingest_max_bytes",
       "'17GiB' is too large; the maximum is 16GiB"},
      {"buffer: {max_size: 99999999999999999999999999TiB}", "buffer.max_size",
       "size '99999999999999999999999999TiB' is too large"},
      {"agent: {id: ''}", "agent.id", "an agent id must not be empty"},
      {"agent: {id: " + std::string(256, 'a') + "}", "agent.id",
       "an agent id has at most 255 characters; this one has 256"},
      {"agent: {id: 'my host'}", "agent.id",
       "'my host' contains ' '; an agent id may only contain A-Z a-z 0-9 . _ -"},
      {"agent: {id: 'sensor-ü'}", "agent.id",
       "'sensor-ü' contains 'ü'; an agent id may only contain A-Z a-z 0-9 . _ -"},
      {"agent: {data_dir: ''}", "agent.data_dir", "must not be empty"},
  };
  for (const auto& c : cases) {
    const auto d = onlyProblem(c.text);
    CHECK(d.key == c.key);
    CHECK(d.message == c.message);
    CHECK(d.line == 1);
  }
  // The edges themselves are allowed.
  const Config edges = parseValid(
      "agent: {id: " + std::string(255, 'a') +
      "}\nbuffer: {compression_level: 19, max_size: 1MiB, commit_max_bytes: 64KiB, "
      "frame_max_bytes: 4KiB, commit_interval: 10s, ingest_max_bytes: 1MiB, map_size: 2MiB}");
  CHECK(edges.buffer.max_size == kMiB);
  CHECK(edges.buffer.commit_interval == 10s);
}

TEST_CASE("rules across keys are checked and explained", "[unit]") {
  SECTION("a frame must fit in a commit") {
    const auto d = onlyProblem("buffer:\n  frame_max_bytes: 16MiB\n");
    CHECK(d.key == "buffer.frame_max_bytes");
    CHECK(d.line == 2);
    CHECK(d.column == 20);
    CHECK(d.message ==
          "frame_max_bytes (16MiB) must not be larger than commit_max_bytes (4MiB, the default): "
          "a frame is written within one commit");
  }
  SECTION("a commit must be at most a quarter of the ring, reported where the file sets it") {
    const auto small_ring = onlyProblem("buffer:\n  sync: none\n  max_size: 8MiB\n");
    CHECK(small_ring.key == "buffer.max_size");
    CHECK(small_ring.line == 3);
    CHECK(contains(small_ring.message,
                   "commit_max_bytes (4MiB, the default) must be at most a "
                   "quarter of max_size (8MiB), that is 2MiB"));
    CHECK(contains(small_ring.message, "eviction must be able to free room for a whole commit"));

    const auto both = onlyProblem("buffer:\n  max_size: 16MiB\n  commit_max_bytes: 5MiB\n");
    CHECK(both.key == "buffer.commit_max_bytes");
    CHECK(both.line == 3);
    CHECK(parseValid("buffer: {max_size: 16MiB, commit_max_bytes: 4MiB}").buffer.max_size ==
          16 * kMiB);
  }
  SECTION("an explicit map size must hold the ring and a commit in flight") {
    const auto d = onlyProblem("buffer:\n  map_size: 1GiB\n");
    CHECK(d.key == "buffer.map_size");
    CHECK(d.message ==
          "map_size (1GiB) must be at least 1.08GiB for max_size (1GiB, the default) and "
          "commit_max_bytes (4MiB, the default): LMDB needs room besides the frames (two commits "
          "in flight, the trees, the free list); or use 0 to derive it");
    CHECK(parseValid("buffer: {map_size: 1102MiB}").buffer.map_size == 1102 * kMiB);
    CHECK_FALSE(parseConfig("buffer: {map_size: 1101MiB}", "t.yaml"));
    CHECK(parseValid("buffer: {map_size: 0}").buffer.map_size == 0);
  }
  SECTION("a frame must fit in the ingest queue") {
    const auto d = onlyProblem(
        "buffer:\n  commit_max_bytes: 32MiB\n  frame_max_bytes: 4MiB\n  ingest_max_bytes: 2MiB\n");
    CHECK(d.key == "buffer.ingest_max_bytes");
    CHECK(d.line == 4);
    CHECK(d.message ==
          "ingest_max_bytes (2MiB) must be at least frame_max_bytes (4MiB): a frame's worth of "
          "records must fit in the ingest queue");
  }
  SECTION("a rule is skipped when one of its keys is already wrong") {
    const auto d = onlyProblem("buffer:\n  max_size: 16MB/s\n");
    CHECK(d.key == "buffer.max_size");
    CHECK(contains(d.message, "unknown size unit"));
  }
}

TEST_CASE("duplicate keys are errors that point at both places", "[unit]") {
  const auto d = onlyProblem("buffer:\n  sync: none\n  max_size: 2GiB\n  sync: always\n");
  CHECK(d.key == "buffer.sync");
  CHECK(d.line == 4);
  CHECK(d.column == 3);
  CHECK(d.message == "duplicate key: it is already set on line 2; keep one");

  const auto section = onlyProblem("log: {level: warn}\nbuffer: {}\nlog: {level: info}\n");
  CHECK(section.key == "log");
  CHECK(section.line == 3);
  CHECK(onlyProblem("buffer: {sync: none, sync: none}").column == 22);
  // The repeated value is still checked, so one run shows its problems too.
  const auto both = parseInvalid(
      "buffer:\n  sync: none\n  sync: sometimes\nlog: {level: info}\n"
      "log:\n  level: loud\n");
  REQUIRE(both.size() == 4);
  CHECK(both[0].line == 3);
  CHECK(both[0].message == "duplicate key: it is already set on line 2; keep one");
  CHECK(both[1].line == 3);
  CHECK(both[1].message == "'sometimes' is not one of batch, always, none");
  CHECK(both[2].key == "log");
  CHECK(both[3].key == "log.level");
  CHECK(both[3].line == 6);
}

TEST_CASE("YAML syntax errors carry their line and column", "[unit]") {
  const auto colon = onlyProblem("log:\n  level: info\nbuffer:\n  sync: batch: none\n");
  CHECK(colon.line == 4);
  CHECK(colon.column == 14);
  CHECK(colon.key == "buffer");
  CHECK(contains(colon.message, "invalid YAML: "));

  const auto bracket = onlyProblem("log: {level: info}\nbuffer:\n  max_size: [1GiB\n");
  CHECK(bracket.line == 3);
  CHECK(bracket.column == 13);
  CHECK(bracket.message == "invalid YAML: this '[' is never closed");

  // yaml-cpp would end an unclosed quote at the end of the file, swallowing the lines after it.
  const auto quote = onlyProblem("agent:\n  data_dir: \"/srv/cistern\nlog: {level: info}\n");
  CHECK(quote.line == 2);
  CHECK(quote.column == 13);
  CHECK(quote.message == "invalid YAML: this '\"' is never closed");
  CHECK(onlyProblem("agent: {id: 'x}").message == "invalid YAML: this \"'\" is never closed");
  // A quote inside plain text is text.
  CHECK(parseValid("agent:\n  data_dir: /srv/it's\n").agent.data_dir == "/srv/it's");

  const auto alias = onlyProblem("buffer: *nowhere\n");
  CHECK(alias.line == 1);
  CHECK(alias.column == 9);
  CHECK(contains(alias.message, "anchor"));
}

TEST_CASE("an empty file or a top level that is no mapping is an error", "[unit]") {
  for (const char* text : {"", "\n\n", "# just a comment\n", "---\n", "~\n", "null"}) {
    INFO(text);
    const auto d = onlyProblem(text);
    CHECK(d.line == 1);
    CHECK(d.key.empty());
    CHECK(d.message ==
          "the file has no settings; write a mapping of sections ('agent', 'log', "
          "'buffer', 'inputs', 'outputs', 'opamp', 'status')");
  }
  CHECK(onlyProblem("- agent\n- log\n").message ==
        "the top level must be a mapping of sections ('agent', 'log', 'buffer', 'inputs', "
        "'outputs', 'opamp', 'status'), not a list");
  CHECK(contains(onlyProblem("hello").message, "not a single value"));
  const auto second = onlyProblem("log: {}\n---\nbuffer: {}\n");
  CHECK(second.line == 2);
  CHECK(contains(second.message, "second YAML document"));
}

TEST_CASE("text over the size limit is refused before parsing", "[unit]") {
  std::string text = "log: {level: debug}\n";
  text += std::string(cistern::agent::kMaxConfigBytes - text.size() - 1, '#') + "\n";
  REQUIRE(text.size() == cistern::agent::kMaxConfigBytes);
  CHECK(parseValid(text).log.level == LogLevel::kDebug);

  text += "\n";
  const auto d = onlyProblem(text);
  CHECK(d.line == 0);
  CHECK(d.column == 0);
  CHECK(d.message == "the file is larger than 1MiB, the limit for a config file");
  CHECK(d.describe() == "test.yaml: the file is larger than 1MiB, the limit for a config file");
}

TEST_CASE("nesting over the depth limit is refused before yaml-cpp recurses", "[unit]") {
  const auto nested = [](std::size_t levels) {  // the top-level mapping is the first level
    return "deep: " + std::string(levels - 1, '[') + std::string(levels - 1, ']') + "\n";
  };
  // 32 levels are fine as YAML; the key is unknown, so that is the only complaint.
  CHECK(onlyProblem(nested(32)).key == "deep");
  for (const std::size_t levels : {std::size_t{33}, std::size_t{100}, std::size_t{500000}}) {
    INFO(levels);
    const auto d = onlyProblem(nested(levels));
    CHECK(d.line == 1);
    CHECK(d.message ==
          "lists and mappings nest deeper than 32 levels, the limit for a config file");
  }
  // Block collections nest without brackets: indentation, and "- - -" on one line.
  std::string indented;
  for (int i = 0; i < 40; ++i) {
    indented += std::string(static_cast<std::size_t>(2 * i), ' ') + "k:\n";
  }
  CHECK(contains(onlyProblem(indented).message, "nest deeper than 32 levels"));
  std::string dashes;
  for (int i = 0; i < 200'000; ++i) dashes += "- ";
  CHECK(contains(onlyProblem(dashes + "x\n").message, "nest deeper than 32 levels"));
  CHECK(contains(onlyProblem(std::string(300'000, '{')).message, "nest deeper than 32 levels"));
}

TEST_CASE("every problem in a file is reported in one run", "[unit]") {
  const auto diagnostics = parseInvalid(R"(agent:
  id: "bad id"
log:
  level: loud
buffer:
  max_sise: 2GiB
  commit_interval: 10GB/s
  frame_max_bytes: 1MiB
)");
  REQUIRE(diagnostics.size() == 4);
  CHECK(diagnostics[0].line == 2);
  CHECK(diagnostics[0].key == "agent.id");
  CHECK(diagnostics[1].line == 4);
  CHECK(diagnostics[1].key == "log.level");
  CHECK(diagnostics[2].line == 6);
  CHECK(diagnostics[2].key == "buffer.max_sise");
  CHECK(diagnostics[2].suggestion == "max_size");
  CHECK(diagnostics[3].line == 7);
  CHECK(diagnostics[3].key == "buffer.commit_interval");
  for (const auto& d : diagnostics) CHECK(d.file == "test.yaml");
}

TEST_CASE("a flood of problems keeps the first hundred by position and counts the rest", "[unit]") {
  std::string text = "log:\n  level: loud\n";
  for (int i = 0; i < 5000; ++i) text += "  level: loud\n";
  const auto diagnostics = parseInvalid(text);
  REQUIRE(diagnostics.size() == 101);
  CHECK(diagnostics[0].line == 2);  // the first value is reported, though found last
  CHECK(diagnostics[0].message == "'loud' is not one of trace, debug, info, warn, error, off");
  CHECK(diagnostics[99].line == 52);  // each repeat: "duplicate key" and the bad value
  CHECK(diagnostics[100].line == 0);
  CHECK(diagnostics[100].message == "9901 more problems not shown; fix the ones above first");
}

TEST_CASE("tabs used for indentation are reported on every line", "[unit]") {
  const auto diagnostics = parseInvalid("buffer:\n\tmax_size: 1GiB\n  \tsync: none\nlog: {}\n");
  REQUIRE(diagnostics.size() == 2);
  CHECK(diagnostics[0].line == 2);
  CHECK(diagnostics[0].column == 1);
  CHECK(diagnostics[1].line == 3);
  CHECK(diagnostics[1].column == 3);
  CHECK(diagnostics[0].message == "a tab is used for indentation; YAML indents with spaces only");
  // Tabs elsewhere are fine: after a colon, before a comment, inside quotes.
  CHECK(parseValid("log:\n  level:\tdebug \t# tab\nagent: {id: \"a\"}\n").log.level ==
        LogLevel::kDebug);
}

TEST_CASE("bytes that are no UTF-8 text are refused with their position", "[unit]") {
  const auto nul = onlyProblem(std::string_view("log:\n  level: de\0bug\n", 20));
  CHECK(nul.line == 2);
  CHECK(nul.column == 12);
  CHECK(contains(nul.message, "NUL byte"));
  CHECK(contains(onlyProblem("log: {}\x01").message, "control character \\x01"));
  CHECK(contains(onlyProblem("log: {level: \xff}").message, "not valid UTF-8"));
  CHECK(contains(onlyProblem("agent: {id: \"\\e[31m\"}").message, "control character \\x1b"));
  // A UTF-8 byte order mark is text.
  CHECK(parseValid("\xEF\xBB\xBFlog: {level: warn}").log.level == LogLevel::kWarn);
  // Control characters from the file never reach a message unescaped.
  const auto escaped = onlyProblem(R"("\x1b[2J": 1)");
  CHECK(escaped.key == "\\x1b[2J");
}

TEST_CASE("anchors and aliases work and cannot loop or blow up", "[unit]") {
  const Config config =
      parseValid("buffer:\n  commit_max_bytes: &commit 16MiB\n  frame_max_bytes: *commit\n");
  CHECK(config.buffer.frame_max_bytes == 16 * kMiB);

  const auto loop = onlyProblem("log: &self {level: *self}\n");
  CHECK(loop.key == "log.level");
  CHECK(contains(loop.message, "refers to a collection that contains it"));

  // Nine levels of nine aliases each stand for 9^9 values; they are shared, never expanded.
  std::string laughs = "l0: &l0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    laughs += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) laughs += (j == 0 ? "*l" : ", *l") + std::to_string(i - 1);
    laughs += "]\n";
  }
  CHECK(parseInvalid(laughs + "buffer: {max_size: *l9}\n").size() == 11);

  CHECK(onlyProblem("log: {<<: {level: info}}").message ==
        "YAML merge keys ('<<') are not supported; write the keys out");
  const auto tagged = parseInvalid("buffer: {max_size: !env SIZE}");
  CHECK(std::any_of(tagged.begin(), tagged.end(), [](const ConfigDiagnostic& d) {
    return d.message == "the tag '!env' is not supported in a config file";
  }));
}

TEST_CASE("parseConfig fills the diagnostics vector only on failure, and clears it", "[unit]") {
  std::vector<ConfigDiagnostic> diagnostics(3);
  REQUIRE(parseConfig("log: {}", "a.yaml", &diagnostics));
  CHECK(diagnostics.empty());
  REQUIRE_FALSE(parseConfig("log: {lvl: x}", "", &diagnostics));
  REQUIRE(diagnostics.size() == 1);
  CHECK(diagnostics[0].file == "<config>");
  CHECK_FALSE(parseConfig("log: {lvl: x}", "a.yaml"));
}

TEST_CASE("random damage to a valid file never crashes, hangs or throws", "[unit]") {
  const std::string flow = R"({agent: {id: "a\tb", data_dir: '/x'}, buffer: [1, {2: 3}], "k": ~})";
  const std::string base = R"(agent:
  id: sensor-1
  data_dir: /var/lib/cistern
log: {level: info}
buffer:
  max_size: 1GiB
  sync: [batch, "x", 'y']
  when_full: &a {k: v}
  other: *a
  ? complex
  : |
    text
)";
  std::mt19937 random(20261121);  // fixed: a failure must reproduce
  const std::string alphabet = "[]{}:-?,'\"|>&*!#%@` \t\n\r\\x0aZ~.";
  for (int round = 0; round < 3000; ++round) {
    std::string text = round % 3 == 0 ? flow : base;
    const int edits = 1 + static_cast<int>(random() % 8);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = random() % text.size();
      switch (random() % 4) {
        case 0:
          text[at] = alphabet[random() % alphabet.size()];
          break;
        case 1:
          text.insert(at, 1, static_cast<char>(random() % 256));
          break;
        case 2:
          text.erase(at, 1 + random() % 4);
          break;
        default:
          text.insert(at, text.substr(random() % text.size(), random() % 16));
          break;
      }
    }
    INFO(text);
    std::vector<ConfigDiagnostic> diagnostics;
    cistern::Result<Config> result;
    REQUIRE_NOTHROW(result = parseConfig(text, "fuzz.yaml", &diagnostics));
    CHECK(result.has_value() == diagnostics.empty());
    for (const auto& d : diagnostics) {
      CHECK_FALSE(d.message.empty());
      CHECK(d.line >= 0);
      CHECK(std::none_of(d.message.begin(), d.message.end(),
                         [](char c) { return static_cast<unsigned char>(c) < 0x20U; }));
    }
  }
}

TEST_CASE("docs/config.md embeds the generated schema reference", "[unit][docs]") {
  const std::string docs = readFile(kDocsPath);
  REQUIRE_FALSE(docs.empty());
  const std::string begin = "<!-- schema:begin -->\n";
  const std::string end = "<!-- schema:end -->";
  const std::size_t from = docs.find(begin);
  REQUIRE(from != std::string::npos);
  const std::size_t to = docs.find(end, from);
  REQUIRE(to != std::string::npos);
  const std::string embedded = docs.substr(from + begin.size(), to - from - begin.size());
  const std::string generated = cistern::agent::renderSchemaMarkdown();
  if (embedded != generated && std::getenv("CISTERN_UPDATE_DOCS") != nullptr) {
    std::ofstream(kDocsPath, std::ios::binary | std::ios::trunc)
        << docs.substr(0, from + begin.size()) << generated << docs.substr(to);
    WARN("rewrote " << kDocsPath);
    return;
  }
  INFO("run with CISTERN_UPDATE_DOCS=1 to rewrite the reference in docs/config.md");
  CHECK(embedded == generated);
  for (const char* key :
       {"`agent.id`", "`agent.data_dir`", "`log.level`", "`buffer.max_size`", "`buffer.map_size`",
        "`buffer.sync`", "`buffer.when_full`", "`buffer.commit_interval`",
        "`buffer.commit_max_bytes`", "`buffer.frame_max_bytes`", "`buffer.compression`",
        "`buffer.compression_level`", "`buffer.ingest_max_bytes`"}) {
    CHECK(contains(generated, key));
  }
}

TEST_CASE("the example in docs/config.md is a valid config of the defaults", "[unit][docs]") {
  const std::string docs = readFile(kDocsPath);
  const Config example = parseValid(docsBlock(docs, "## Example", "yaml"));
  const Config defaults = parseValid("agent: {}");
  CHECK(example.agent.id != defaults.agent.id);
  CHECK(example.agent.data_dir == defaults.agent.data_dir);
  CHECK(example.log.level == defaults.log.level);
  CHECK(example.buffer.max_size == defaults.buffer.max_size);
  CHECK(example.buffer.map_size == defaults.buffer.map_size);
  CHECK(example.buffer.sync == defaults.buffer.sync);
  CHECK(example.buffer.when_full == defaults.buffer.when_full);
  CHECK(example.buffer.commit_interval == defaults.buffer.commit_interval);
  CHECK(example.buffer.commit_max_bytes == defaults.buffer.commit_max_bytes);
  CHECK(example.buffer.frame_max_bytes == defaults.buffer.frame_max_bytes);
  CHECK(example.buffer.codec == defaults.buffer.codec);
  CHECK(example.buffer.zstd_level == defaults.buffer.zstd_level);
  CHECK(example.buffer.ingest_max_bytes == defaults.buffer.ingest_max_bytes);
}

TEST_CASE("the errors shown in docs/config.md are what the parser prints", "[unit][docs]") {
  const std::string docs = readFile(kDocsPath);
  const std::string broken = docsBlock(docs, "## Errors", "yaml");
  const std::string shown = docsBlock(docs, "## Errors", "text");
  const auto result = parseConfig(broken, "/etc/cistern/cistern.yaml");
  REQUIRE_FALSE(result);
  CHECK(result.error().message + "\n" == shown);
}

TEST_CASE("loadConfigFile reads a file and names it in every diagnostic", "[component]") {
  const cistern::testing::TempDir dir;
  const auto path = dir / "cistern.yaml";
  std::ofstream(path) << "log:\n  level: warn\nbuffer:\n  max_sise: 1GiB\n";
  std::vector<ConfigDiagnostic> diagnostics;
  const auto bad = cistern::agent::loadConfigFile(path, &diagnostics);
  REQUIRE_FALSE(bad);
  REQUIRE(diagnostics.size() == 1);
  CHECK(diagnostics[0].file == path.string());
  CHECK(bad.error().message == path.string() +
                                   ":4:3: buffer.max_sise: unknown key (did you "
                                   "mean 'max_size'?)");

  std::ofstream(path, std::ios::trunc) << "log:\n  level: warn\n";
  const auto good = cistern::agent::loadConfigFile(path, &diagnostics);
  REQUIRE(good);
  CHECK(good->log.level == LogLevel::kWarn);
  CHECK(diagnostics.empty());

  std::ofstream(path, std::ios::trunc) << std::string(cistern::agent::kMaxConfigBytes + 10, '#');
  const auto huge = cistern::agent::loadConfigFile(path);
  REQUIRE_FALSE(huge);
  CHECK(contains(huge.error().message, "larger than 1MiB"));
}

TEST_CASE("loadConfigFile names the path and the system's reason when it cannot read",
          "[component]") {
  const cistern::testing::TempDir dir;
  std::vector<ConfigDiagnostic> diagnostics;
  const auto missing = cistern::agent::loadConfigFile(dir / "nope.yaml", &diagnostics);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ErrorCode::kNotFound);
  CHECK(missing.error().message ==
        (dir / "nope.yaml").string() + ": cannot open the config file: No such file or directory");
  REQUIRE(diagnostics.size() == 1);
  CHECK(diagnostics[0].line == 0);

  const auto directory = cistern::agent::loadConfigFile(dir.path());
  REQUIRE_FALSE(directory);
  CHECK(directory.error().code == ErrorCode::kIo);
  CHECK(contains(directory.error().message, dir.path().string()));
  CHECK(contains(directory.error().message, "Is a directory"));
}

TEST_CASE("inputs of every type are parsed with their defaults", "[unit]") {
  using cistern::capture::FileTailOptions;
  using cistern::capture::PcapOptions;
  using cistern::capture::SyslogOptions;
  const Config c = parseValid(R"(
inputs:
  - type: pcap
    name: tap
    interface: eth1
    filter: "udp port 53"
  - type: pcap
    name: replay
    file: /data/x.pcap
    replay: realtime
    snaplen: 1500
  - type: file
    name: app
    paths: [/var/log/app.log*, "/var/log/other/*.log"]
    start_at: beginning
    max_line_bytes: 1KiB
    long_lines: truncate
  - type: file
    name: one
    paths: /var/log/one.log
  - type: syslog
    name: tls
    listen: tls://0.0.0.0:6514
    tls_cert_file: /etc/c.pem
    tls_key_file: /etc/k.pem
    max_connections: 10
)");
  REQUIRE(c.inputs.size() == 5);
  const auto& tap = std::get<PcapOptions>(c.inputs[0]);
  CHECK(tap.name == "tap");
  CHECK(tap.interface == "eth1");
  CHECK(tap.filter == "udp port 53");
  CHECK(tap.snaplen == 262144);
  CHECK(tap.promiscuous);
  CHECK(tap.buffer_size == 32 * kMiB);
  CHECK(tap.block_timeout == 100ms);
  const auto& replay = std::get<PcapOptions>(c.inputs[1]);
  CHECK(replay.replay == cistern::capture::Replay::kRealtime);
  CHECK(replay.snaplen == 1500);
  const auto& app = std::get<FileTailOptions>(c.inputs[2]);
  CHECK(app.paths == std::vector<std::string>{"/var/log/app.log*", "/var/log/other/*.log"});
  CHECK(app.start_at == cistern::capture::StartAt::kBeginning);
  CHECK(app.max_line_bytes == kKiB);
  CHECK(app.long_lines == cistern::capture::LongLines::kTruncate);
  const auto& one = std::get<FileTailOptions>(c.inputs[3]);
  CHECK(one.paths == std::vector<std::string>{"/var/log/one.log"});
  CHECK(one.start_at == cistern::capture::StartAt::kEnd);
  CHECK(one.poll_interval == 250ms);
  const auto& tls = std::get<SyslogOptions>(c.inputs[4]);
  CHECK(tls.listen == "tls://0.0.0.0:6514");
  CHECK(tls.max_connections == 10);
  CHECK(tls.max_message_bytes == 64 * kKiB);
  CHECK(cistern::agent::inputName(c.inputs[4]) == "tls");
  CHECK(std::string(cistern::agent::inputType(c.inputs[4])) == "syslog");
}

TEST_CASE("bad inputs are all reported in one run", "[unit]") {
  const auto found = parseInvalid(R"(
inputs:
  - type: pcapp
    name: a
  - type: pcap
    name: b
  - type: pcap
    name: c
    interface: eth0
    file: /x.pcap
  - type: file
    name: d
    paths: []
  - type: syslog
    name: e
    listen: http://0.0.0.0:514
  - type: syslog
    name: f
    listen: tls://0.0.0.0:6514
  - type: syslog
    name: f
    listen: udp://0.0.0.0:514
    snaplen: 5
  - name: g
)");
  auto has = [&](const std::string& key, const std::string& part) {
    for (const auto& d : found) {
      if (d.key == key && contains(d.message, part)) return true;
    }
    return false;
  };
  CHECK(has("inputs[0].type", "unknown type 'pcapp'"));
  CHECK(has("inputs[1].interface", "exactly one of 'interface'"));
  CHECK(has("inputs[2].interface", "exactly one of 'interface'"));
  CHECK(has("inputs[3].paths", "the list is empty"));
  CHECK(has("inputs[4].listen", "must start with udp://, tcp:// or tls://"));
  CHECK(has("inputs[5].listen", "needs 'tls_cert_file' and 'tls_key_file'"));
  CHECK(has("inputs[6].name", "duplicate input name 'f'"));
  CHECK(has("inputs[6].snaplen", "unknown key"));
  CHECK(has("inputs[7]", "has no 'type' key"));
  for (const auto& d : found) CHECK(d.line > 0);
}

TEST_CASE("the inputs example in docs/config.md is valid", "[unit][docs]") {
  const std::string docs = readFile(kDocsPath);
  const Config c = parseValid(docsBlock(docs, "## Inputs", "yaml"));
  CHECK(c.inputs.size() == 4);
}

TEST_CASE("outputs of every type are parsed with their defaults", "[unit]") {
  using cistern::transport::Compression;
  using cistern::transport::FileOutputOptions;
  using cistern::transport::OtlpOutputOptions;
  using cistern::transport::SyslogOutputOptions;
  const Config c = parseValid(R"(
outputs:
  - type: otlp
    name: processor
    endpoints: [https://proc-a:4318, https://proc-b:4318/prefix]
    headers: ["Authorization: Bearer abc"]
    compression: none
    max_in_flight: 8
    retry_max: 1m
    tls:
      ca_file: /etc/cistern/ca.pem
      cert_file: /etc/cistern/client.pem
      key_file: /etc/cistern/client.key
  - type: syslog
    name: siem
    endpoints: relp+tls://siem:2514
    ack_timeout: 5s
  - type: file
    name: archive
    path: /var/lib/cistern/archive
    max_file_bytes: 1GiB
)");
  REQUIRE(c.outputs.size() == 3);
  const auto& otlp = std::get<OtlpOutputOptions>(c.outputs[0]);
  CHECK(otlp.endpoints ==
        std::vector<std::string>{"https://proc-a:4318", "https://proc-b:4318/prefix"});
  CHECK(otlp.headers == std::vector<std::string>{"Authorization: Bearer abc"});
  CHECK(otlp.compression == Compression::kNone);
  CHECK(otlp.timeout == 10s);
  CHECK(otlp.batch.max_in_flight == 8);
  CHECK(otlp.batch.max_bytes == kMiB);
  CHECK(otlp.retry.initial_backoff == 500ms);
  CHECK(otlp.retry.max_backoff == 60s);
  CHECK(otlp.retry.failover_after == 3);
  CHECK(otlp.tls.ca_file == "/etc/cistern/ca.pem");
  CHECK(otlp.tls.key_file == "/etc/cistern/client.key");
  CHECK_FALSE(otlp.tls.insecure_skip_verify);
  const auto& siem = std::get<SyslogOutputOptions>(c.outputs[1]);
  CHECK(siem.endpoints == std::vector<std::string>{"relp+tls://siem:2514"});
  CHECK(siem.ack_timeout == 5s);
  CHECK(siem.batch.max_in_flight == 8);
  CHECK(siem.max_message_bytes == 64 * kKiB);
  const auto& archive = std::get<FileOutputOptions>(c.outputs[2]);
  CHECK(archive.path == "/var/lib/cistern/archive");
  CHECK(archive.max_file_bytes == kGiB);
  CHECK(archive.max_files == 10);
  CHECK(cistern::transport::outputName(c.outputs[2]) == "archive");
  CHECK(std::string(cistern::transport::outputType(c.outputs[1])) == "syslog");
}

TEST_CASE("bad outputs are all reported in one run", "[unit]") {
  const auto found = parseInvalid(R"(
outputs:
  - type: otlp
    name: a
    endpoints: [ftp://x:21]
  - type: otlp
    name: b
    endpoints: http://x:4318
    headers: ["no colon here"]
    tls:
      cert_file: /c.pem
  - type: syslog
    name: c
    endpoints: [tcp://host, udp://host:514]
  - type: file
    name: c
    path: ""
    max_files: 0
  - type: otlp
    name: e
    endpoints: http://x:4318
    retry_inital: 1s
)");
  auto has = [&](const std::string& key, const std::string& part) {
    for (const auto& d : found) {
      if (d.key == key && contains(d.message, part)) return true;
    }
    return false;
  };
  CHECK(has("outputs[0].endpoints[0]", "must start with http:// or https://"));
  CHECK(has("outputs[1].headers[0]", "must be 'Name: value'"));
  CHECK(has("outputs[1].tls.cert_file", "give both 'cert_file' and 'key_file'"));
  CHECK(has("outputs[2].endpoints[0]", "has no HOST:PORT"));
  CHECK(has("outputs[2].endpoints[1]", "must start with tcp://, tls://, relp://, relp+tls://"));
  CHECK(has("outputs[3].name", "duplicate output name 'c'"));
  CHECK(has("outputs[3].path", "must not be empty"));
  CHECK(has("outputs[3].max_files", ""));
  bool suggested = false;
  for (const auto& d : found) {
    if (d.key == "outputs[4].retry_inital") suggested = d.suggestion == "retry_initial";
  }
  CHECK(suggested);
  for (const auto& d : found) CHECK(d.line > 0);
}

TEST_CASE("the outputs example in docs/config.md is valid", "[unit][docs]") {
  const std::string docs = readFile(kDocsPath);
  const Config c = parseValid(docsBlock(docs, "## Outputs", "yaml"));
  CHECK(c.outputs.size() == 3);
}
