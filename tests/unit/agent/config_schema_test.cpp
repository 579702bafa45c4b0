// The schema framework on a small test schema: a nested section, a list of mappings whose `type`
// key selects each entry's table, booleans, required keys, computed defaults and rules.
#include <chrono>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

// The framework is internal to the agent module; its tests reach into agent/src.
#include "../../../agent/src/config/schema.h"

namespace config = cistern::agent::config;
using cistern::agent::ConfigDiagnostic;
using namespace std::chrono_literals;

namespace {

enum class Mode { kFast, kSafe };

struct Server {
  std::string host;
  std::int64_t port = 0;
  bool tls = false;
  std::chrono::nanoseconds connect_timeout{};
  std::chrono::nanoseconds request_timeout{};
};

struct PcapInput {
  std::string name;
  std::string interface;
  std::uint32_t snaplen = 0;
  std::uint64_t buffer_size = 0;
  bool promiscuous = false;
};

struct FileInput {
  std::string name;
  std::string path;
};

using Input = std::variant<PcapInput, FileInput>;

struct TestConfig {
  Mode mode = Mode::kFast;
  Server server;
  std::vector<Input> inputs;
};

std::string fixedHost() { return "localhost"; }

config::Table<Server> serverTable() {
  config::Table<Server> table;
  table.add(config::stringKey("host", &Server::host)
                .computedDefault(&fixedHost, "this machine")
                .describe("Where to connect."));
  table.add(config::integerKey("port", &Server::port, 1, 65535)
                .byDefault("443")
                .unit("TCP port")
                .describe("The port."));
  table.add(config::boolKey("tls", &Server::tls).byDefault("true").describe("Use TLS."));
  table.add(config::durationKey("connect_timeout", &Server::connect_timeout, 1ms, 1min)
                .byDefault("5s")
                .describe("Connect timeout."));
  table.add(config::durationKey("request_timeout", &Server::request_timeout, 1ms, 10min)
                .byDefault("30s")
                .describe("Request timeout."));
  table.check({"connect_timeout", "request_timeout"}, "`connect_timeout` <= `request_timeout`.",
              [](const Server& s, const config::CheckContext& c) -> std::optional<std::string> {
                if (s.connect_timeout <= s.request_timeout) return std::nullopt;
                return c.show("connect_timeout") + " must not exceed " + c.show("request_timeout");
              });
  return table;
}

config::Table<PcapInput> pcapTable() {
  config::Table<PcapInput> table;
  table.add(config::stringKey("name", &PcapInput::name).describe("Name of the input."));
  table.add(config::stringKey("interface", &PcapInput::interface).describe("Interface."));
  table.add(config::sizeKey("snaplen", &PcapInput::snaplen, 64, 262144)
                .byDefault("65535")
                .describe("Bytes kept of each packet."));
  table.add(config::sizeKey("buffer_size", &PcapInput::buffer_size, 1024)
                .byDefault("2MiB")
                .describe("Kernel buffer."));
  table.add(config::boolKey("promiscuous", &PcapInput::promiscuous)
                .byDefault("false")
                .describe("Promiscuous mode."));
  table.check({"snaplen", "buffer_size"}, "`snaplen` <= `buffer_size`.",
              [](const PcapInput& p, const config::CheckContext& c) -> std::optional<std::string> {
                if (p.snaplen <= p.buffer_size) return std::nullopt;
                return c.show("snaplen") + " does not fit in " + c.show("buffer_size");
              });
  return table;
}

config::Table<FileInput> fileTable() {
  config::Table<FileInput> table;
  table.add(config::stringKey("name", &FileInput::name).describe("Name of the input."));
  table.add(config::stringKey("path", &FileInput::path).describe("File to follow."));
  return table;
}

const config::Table<TestConfig>& testSchema() {
  static const config::Table<TestConfig> kSchema = [] {
    config::Table<TestConfig> table;
    table.add(config::enumKey("mode", &TestConfig::mode,
                              {{"fast", Mode::kFast, "quick"}, {"safe", Mode::kSafe, "careful"}})
                  .byDefault("fast")
                  .describe("How to run."));
    table.add(config::section("server", &TestConfig::server, serverTable(), "The server."));
    table.add(config::listOf("inputs", &TestConfig::inputs, "type",
                             {config::alternative<Input>("pcap", pcapTable(), "Packets."),
                              config::alternative<Input>("file", fileTable(), "Lines of a file.")},
                             "Where records come from."));
    return table;
  }();
  return kSchema;
}

struct Outcome {
  TestConfig config;
  std::vector<ConfigDiagnostic> diagnostics;
};

Outcome run(std::string_view text) {
  config::DiagnosticSink sink("t.yaml");
  Outcome outcome;
  const auto document = config::parseDocument(text, sink);
  REQUIRE(document);
  REQUIRE(document->root() != nullptr);
  std::vector<std::string> paths;
  testSchema().collectPaths("", paths);
  config::ParseContext context{sink, paths};
  testSchema().parse(outcome.config, document->root(), "", document->root()->mark, context);
  outcome.diagnostics = sink.sorted();
  return outcome;
}

std::string describeAll(const std::vector<ConfigDiagnostic>& diagnostics) {
  std::string out;
  for (const auto& d : diagnostics) out += d.describe() + "\n";
  return out;
}

}  // namespace

TEST_CASE("schema: defaults fill keys, nested sections and lists", "[unit]") {
  const Outcome outcome = run("{}");
  REQUIRE(outcome.diagnostics.empty());
  CHECK(outcome.config.mode == Mode::kFast);
  CHECK(outcome.config.server.host == "localhost");
  CHECK(outcome.config.server.port == 443);
  CHECK(outcome.config.server.tls);
  CHECK(outcome.config.server.connect_timeout == 5s);
  CHECK(outcome.config.server.request_timeout == 30s);
  CHECK(outcome.config.inputs.empty());
}

TEST_CASE("schema: a list entry's type key selects its table", "[unit]") {
  const Outcome outcome = run(R"(mode: safe
server: {host: example.org, port: 8443, tls: False}
inputs:
  - name: uplink
    type: pcap
    interface: eth0
    promiscuous: true
  - {type: file, name: auth, path: /var/log/auth.log}
  - type: pcap
    name: lan
    interface: eth1
    snaplen: 128
)");
  INFO(describeAll(outcome.diagnostics));
  REQUIRE(outcome.diagnostics.empty());
  CHECK(outcome.config.mode == Mode::kSafe);
  CHECK(outcome.config.server.host == "example.org");
  CHECK(outcome.config.server.port == 8443);
  CHECK_FALSE(outcome.config.server.tls);
  REQUIRE(outcome.config.inputs.size() == 3);
  const auto& uplink = std::get<PcapInput>(outcome.config.inputs[0]);
  CHECK(uplink.name == "uplink");
  CHECK(uplink.interface == "eth0");
  CHECK(uplink.promiscuous);
  CHECK(uplink.snaplen == 65535);  // each entry gets its own table's defaults
  const auto& auth = std::get<FileInput>(outcome.config.inputs[1]);
  CHECK(auth.path == "/var/log/auth.log");
  const auto& lan = std::get<PcapInput>(outcome.config.inputs[2]);
  CHECK(lan.snaplen == 128);
  CHECK_FALSE(lan.promiscuous);
}

TEST_CASE("schema: problems in list entries carry an indexed path", "[unit]") {
  const Outcome outcome = run(R"(inputs:
  - {type: pcp, name: a, interface: eth0}
  - {name: b, interface: eth0}
  - {type: pcap, name: c, interfce: eth0}
  - {type: pcap, name: d, path: /x}
  - {type: file, type: pcap, name: e}
  - just-a-name
  - {type: [pcap], name: f}
  - {type: pcap, name: g, interface: eth0, snaplen: 4096, buffer_size: 2KiB}
)");
  const auto& d = outcome.diagnostics;
  INFO(describeAll(d));
  REQUIRE(d.size() == 11);
  CHECK(d[0].key == "inputs[0].type");
  CHECK(d[0].message == "unknown type 'pcp'; use one of 'pcap', 'file'");
  CHECK(d[0].suggestion == "pcap");
  CHECK(d[1].key == "inputs[1]");
  CHECK(d[1].message == "has no 'type' key; it must be one of 'pcap', 'file'");
  CHECK(d[2].line == 4);
  CHECK(d[2].key == "inputs[2].interface");
  CHECK(d[2].message == "is missing; it is required (a string)");
  CHECK(d[3].key == "inputs[2].interfce");
  CHECK(d[3].suggestion == "interface");
  CHECK(d[4].key == "inputs[3].interface");
  CHECK(d[5].key == "inputs[3].path");
  CHECK(d[5].message ==
        "unknown key; valid keys are 'name', 'interface', 'snaplen', 'buffer_size', 'promiscuous'");
  CHECK(d[6].key == "inputs[4].path");  // the first `type` counts: a file entry needs a path
  CHECK(d[7].key == "inputs[4].type");
  CHECK(d[7].message == "duplicate key: it is already set on line 6; keep one");
  CHECK(d[8].key == "inputs[5]");
  CHECK(d[8].message == "expected a mapping with a 'type' key, got a single value");
  CHECK(d[9].key == "inputs[6].type");
  CHECK(d[9].message == "expected one of 'pcap', 'file', got a list");
  CHECK(d[10].key == "inputs[7].snaplen");
  CHECK(d[10].message == "snaplen (4096) does not fit in buffer_size (2KiB)");
  // Entries whose type is known are kept (the one with two `type` keys by its first), so that
  // rules across entries could still run; the caller discards the config on any diagnostic.
  CHECK(outcome.config.inputs.size() == 4);
}

TEST_CASE("schema: a list that is no list is reported", "[unit]") {
  const Outcome outcome = run("inputs: {type: pcap}\n");
  REQUIRE(outcome.diagnostics.size() == 1);
  CHECK(outcome.diagnostics[0].key == "inputs");
  CHECK(outcome.diagnostics[0].message == "expected a list of entries, got a mapping");
  CHECK(run("inputs:\n").diagnostics.empty());
  CHECK(run("inputs: []\n").diagnostics.empty());
}

TEST_CASE("schema: booleans are true or false, nothing else", "[unit]") {
  for (const char* yes : {"true", "True", "TRUE", "'true'"}) {
    INFO(yes);
    const Outcome outcome = run(std::string("server: {tls: ") + yes + "}");
    CHECK(outcome.diagnostics.empty());
    CHECK(outcome.config.server.tls);
  }
  const Outcome word = run("server:\n  tls: yes\n");
  REQUIRE(word.diagnostics.size() == 1);
  CHECK(word.diagnostics[0].key == "server.tls");
  CHECK(word.diagnostics[0].line == 2);
  CHECK(word.diagnostics[0].message == "'yes' is not a boolean; use true or false");
  const Outcome list = run("server: {tls: [true]}");
  REQUIRE(list.diagnostics.size() == 1);
  CHECK(list.diagnostics[0].message == "expected true or false, got a list");
}

TEST_CASE("schema: rules across keys of a section", "[unit]") {
  const Outcome outcome = run("server:\n  connect_timeout: 1m\n");
  REQUIRE(outcome.diagnostics.size() == 1);
  CHECK(outcome.diagnostics[0].key == "server.connect_timeout");
  CHECK(outcome.diagnostics[0].message ==
        "connect_timeout (1m) must not exceed request_timeout (30s, the default)");
}

TEST_CASE("schema: a computed default is checked like a value", "[unit]") {
  struct Named {
    std::string name;
  };
  config::Table<Named> table;
  table.add(config::stringKey("name", &Named::name)
                .computedDefault([] { return std::string("not valid"); }, "the host name")
                .check(
                    [](const config::Value& v) -> std::optional<std::string> {
                      if (v.text.find(' ') == std::string::npos) {
                        return std::nullopt;
                      }
                      return std::string("has a space");
                    },
                    "no spaces"));
  config::DiagnosticSink sink("t.yaml");
  config::ParseContext context{sink, {}};
  Named named;
  table.parse(named, nullptr, "who", {}, context);
  const auto diagnostics = sink.sorted();
  REQUIRE(diagnostics.size() == 1);
  CHECK(diagnostics[0].line == 0);
  CHECK(diagnostics[0].key == "who.name");
  CHECK(diagnostics[0].message ==
        "is not set and its default (the host name, 'not valid') does not work: has a space; set "
        "it in the file");
}

TEST_CASE("schema: the Markdown reference covers sections, lists and rules", "[unit]") {
  std::string out;
  testSchema().document(out, "", 3, "", "");
  CHECK(out.rfind(config::kMarkdownKeyHeader, 0) == 0);  // the top-level keys come first
  const std::string mode_row = std::string("| `mode` | enum | `fast` | `fast`, `safe` | ") +
                               "How to run.<br>`fast`: quick<br>`safe`: careful |\n";
  const std::string list_intro = std::string("### `inputs`\n\nWhere records come from.\n\n") +
                                 "A list of mappings; the `type` key of each entry selects its " +
                                 "keys: `pcap`, `file`.\n\n";
  const std::vector<std::string> parts{
      mode_row,
      "### `server`\n\nThe server.\n\n",
      "| `server.host` | string | this machine | any text | Where to connect. |\n",
      "| `server.port` | integer (TCP port) | `443` | 1 to 65535 | The port. |\n",
      "| `server.tls` | boolean | `true` | `true`, `false` | Use TLS. |\n",
      "| `server.connect_timeout` | duration | `5s` | 1ms to 1m | Connect timeout. |\n",
      "Rules across keys:\n\n- `connect_timeout` <= `request_timeout`.\n",
      list_intro,
      "#### `inputs` entries with `type: pcap`\n\nPackets.\n\n",
      "| `inputs[].interface` | string | required | any text | Interface. |\n",
      "| `inputs[].snaplen` | size | `65535` | 64B to 256KiB | Bytes kept of each packet. |\n",
      "#### `inputs` entries with `type: file`\n\n",
  };
  for (const auto& part : parts) {
    INFO(part);
    CHECK(out.find(part) != std::string::npos);
  }
}

TEST_CASE("schema: suggestions come from edit distance", "[unit]") {
  CHECK(config::editDistance("max_size", "max_size") == 0);
  CHECK(config::editDistance("Max-Size", "max_size") == 0);
  CHECK(config::editDistance("max_sise", "max_size") == 1);
  CHECK(config::editDistance("mxa_size", "max_size") == 1);
  CHECK(config::editDistance("", "abc") == 3);
  CHECK(config::editDistance("kitten", "sitting") == 3);
  const std::vector<std::string> keys{"max_size", "map_size", "sync"};
  CHECK(config::nearest("max_sise", keys) == "max_size");
  CHECK(config::nearest("mapsize", keys) == "map_size");
  CHECK(config::nearest("snyc", keys) == "sync");
  CHECK(config::nearest("level", keys).empty());
  CHECK(config::nearest(std::string(1000, 'x'), keys).empty());
}

TEST_CASE("schema: user text in messages is quoted, escaped and cut", "[unit]") {
  CHECK(config::quoteText("abc") == "'abc'");
  CHECK(config::quoteText("a\x1b[2Jb") == "'a\\x1b[2Jb'");
  const std::string cut = config::quoteText(std::string(100, 'x'));
  CHECK(cut == "'" + std::string(64, 'x') + "...'");
  // Never half a UTF-8 character.
  const std::string umlauts = config::quoteText(std::string(63, 'x') + "ü" + "tail");
  CHECK(umlauts == "'" + std::string(63, 'x') + "...'");
}
