// The agent's configuration: what a config file may say, and how it is read and checked.
//
// The keys, their types, defaults, limits and descriptions live in one table per section
// (agent/src/config/config.cpp). That table drives parsing, defaults, validation, the suggestions
// in error messages and the reference in docs/config.md, so none of them can drift from another.
//
// Reading a config is a pure function of its text: parseConfig() does no I/O beyond asking the
// platform for the host name (the default agent.id), never throws and reports every problem it
// finds in one run.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "cistern/buffer/options.h"
#include "cistern/capture/file_tail_source.h"
#include "cistern/capture/pcap_source.h"
#include "cistern/capture/syslog_source.h"
#include "cistern/core/result.h"
#include "cistern/heartbeat/opamp.h"
#include "cistern/transport/outputs.h"

namespace cistern::agent {

// The `log:` section's `level`, most verbose first.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// `agent:`: who this sensor is and where it keeps its state.
struct AgentSection {
  // The sensor's identity: 1 to 255 characters of A-Z a-z 0-9 . _ -. Defaults to the host name.
  std::string id;
  // Directory for the agent's state, the ring buffer among it. Never empty after parsing.
  std::filesystem::path data_dir;

  bool operator==(const AgentSection&) const = default;
};

// `log:`
struct LogSection {
  LogLevel level = LogLevel::kInfo;

  bool operator==(const LogSection&) const = default;
};

// `status:`: the local status API.
struct StatusSection {
  std::string listen = "127.0.0.1:8780";  // HOST:PORT; empty: disabled

  bool operator==(const StatusSection&) const = default;
};

// One entry of `inputs:`, by its `type`: pcap, file or syslog.
using InputConfig =
    std::variant<capture::PcapOptions, capture::FileTailOptions, capture::SyslogOptions>;

// The entry's `name` and `type` ("pcap", "file", "syslog").
const std::string& inputName(const InputConfig& input);
const char* inputType(const InputConfig& input);

// A parsed and validated configuration. parseConfig() sets every field the schema knows, from the
// file or from the schema's default; buffer.dir and buffer.read_only are not config keys and stay
// empty/false (the agent derives the buffer directory from agent.data_dir).
struct Config {
  AgentSection agent;
  LogSection log;
  buffer::RingOptions buffer;
  std::vector<InputConfig> inputs;  // names are unique
  // Where the records go; names are unique (each names the output's cursor in the buffer).
  std::vector<transport::OutputOptions> outputs;
  heartbeat::OpampOptions opamp;
  StatusSection status;

  bool operator==(const Config&) const = default;
};

// One problem found in a config file.
struct ConfigDiagnostic {
  std::string file;  // the file name given to parseConfig (or "<config>" when none was given)
  int line = 0;      // 1-based; 0 when the problem concerns the whole file (e.g. its size)
  int column = 0;    // 1-based; 0 when line is 0
  // Dotted path of the key concerned: "buffer.max_size", "inputs[0].type". Empty when the problem
  // is not about one key (a syntax error outside any mapping, an empty file, ...).
  std::string key;
  std::string message;  // what is wrong and what would be right; user text is quoted and escaped
  // The nearest valid key (or enum value) when the file's one looks like a typo of it, else empty.
  // A key in the same mapping is given by its name ("max_size"); a key that belongs to another
  // section by its dotted path ("log.level").
  std::string suggestion;

  // "FILE:LINE:COL: KEY: MESSAGE (did you mean 'X'?)". ":LINE:COL" is left out when line is 0,
  // "KEY: " when key is empty and the parenthesis when suggestion is empty.
  [[nodiscard]] std::string describe() const;
};

// Limits checked before the text reaches the YAML parser.
inline constexpr std::size_t kMaxConfigBytes = std::size_t{1} << 20U;  // 1 MiB
inline constexpr int kMaxConfigDepth = 32;  // nested mappings and lists, the top-level one is 1

// Parses and validates a config from YAML text; `file_name` is only used in diagnostics.
// May be called from any thread.
// Returns the Config, or an Error (code kConfig) whose message holds every diagnostic's
// describe(), one per line, sorted by position. When `diagnostics` is not null it is cleared and
// then receives the same diagnostics (it stays empty on success).
// Reported, all in one run: unknown keys (with the nearest valid key), values of the wrong type,
// bad units, out-of-range values, duplicate keys, rules across keys, an empty file or a top level
// that is not a mapping. Stop the run early: text over kMaxConfigBytes, NUL bytes and other
// control characters, invalid UTF-8, tabs used for indentation, nesting over kMaxConfigDepth,
// YAML syntax errors (with their line and column) and more than one YAML document.
// Never throws.
Result<Config> parseConfig(std::string_view text, std::string_view file_name,
                           std::vector<ConfigDiagnostic>* diagnostics = nullptr);

// Reads `path` and parses it with parseConfig(). A file that cannot be opened or read yields an
// Error (kNotFound when it does not exist, else kIo) naming the path and the system's reason, and
// one diagnostic with line 0. Reads at most kMaxConfigBytes + 1 bytes, so a huge file or a
// device is refused, not slurped. Never throws.
Result<Config> loadConfigFile(const std::filesystem::path& path,
                              std::vector<ConfigDiagnostic>* diagnostics = nullptr);

// The config in force when a remote config arrives on top of the local one: the remote text is
// parsed and validated like a local file (every problem reported at once); the sections it has
// (log, inputs, outputs) replace the local ones. The local-only sections (agent: who the sensor
// is and where it keeps its state; buffer: it stays open across a reload; opamp: how the sensor
// reaches its management server, TLS material included; status: its local API) may appear only
// with the local values, or the whole remote config is refused with an error naming the section.
// Sections the remote text leaves out keep their local values. Errors: kConfig. Any thread.
Result<Config> mergeRemoteConfig(const Config& local, std::string_view remote_text,
                                 std::string_view file_name);

// The reference of every section and key as Markdown tables (key, type, default, allowed values,
// description) followed by each section's rules across keys. docs/config.md embeds this text
// verbatim between `<!-- schema:begin -->` and `<!-- schema:end -->`; a unit test keeps it so.
std::string renderSchemaMarkdown();

}  // namespace cistern::agent
