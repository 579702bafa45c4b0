// The agent's config schema, one table per section, and the public entry points.
#include "cistern/agent/config.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <system_error>

#include <fmt/format.h>

#include "cistern/core/record.h"
#include "cistern/core/units.h"
#include "cistern/platform/process.h"
#include "diagnostics.h"
#include "output_tables.h"
#include "schema.h"
#include "yaml_document.h"

namespace cistern::agent {
namespace {

using config::Choice;
using config::Table;
using config::Value;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;
constexpr std::size_t kMaxAgentIdLength = 255;

bool isAgentIdCharacter(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// The whole UTF-8 character at text[i], so a message never shows half of one.
std::string_view characterAt(std::string_view text, std::size_t i) {
  std::size_t end = i + 1;
  while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) ++end;
  return text.substr(i, end - i);
}

std::optional<std::string> checkAgentId(const Value& value) {
  const std::string& id = value.text;
  if (id.empty()) return "an agent id must not be empty";
  if (id.size() > kMaxAgentIdLength) {
    return fmt::format("an agent id has at most {} characters; this one has {}", kMaxAgentIdLength,
                       id.size());
  }
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (!isAgentIdCharacter(id[i])) {
      return fmt::format("{} contains {}; an agent id may only contain A-Z a-z 0-9 . _ -",
                         config::quoteText(id), config::quoteText(characterAt(id, i)));
    }
  }
  return std::nullopt;
}

std::optional<std::string> checkNotEmpty(const Value& value) {
  if (value.text.empty()) return "must not be empty";
  return std::nullopt;
}

Table<AgentSection> agentTable() {
  Table<AgentSection> table;
  table.add(config::stringKey("id", &AgentSection::id)
                .computedDefault(&platform::hostName, "the host name")
                .check(checkAgentId, "1 to 255 characters of `A-Z a-z 0-9 . _ -`")
                .describe("The sensor's identity, as everything it sends names it."));
  table.add(config::stringKey("data_dir", &AgentSection::data_dir)
                .byDefault("/var/lib/cistern")
                .check(checkNotEmpty, "a non-empty path")
                .describe("Directory for the agent's state; the ring buffer is kept under it."));
  return table;
}

Table<LogSection> logTable() {
  Table<LogSection> table;
  table.add(config::enumKey("level", &LogSection::level,
                            {
                                {"trace", LogLevel::kTrace, ""},
                                {"debug", LogLevel::kDebug, ""},
                                {"info", LogLevel::kInfo, ""},
                                {"warn", LogLevel::kWarn, ""},
                                {"error", LogLevel::kError, ""},
                                {"off", LogLevel::kOff, ""},
                            })
                .byDefault("info")
                .describe("The least severe messages that are logged; `off` logs nothing."));
  return table;
}

Table<buffer::RingOptions> bufferTable() {
  using buffer::Codec;
  using buffer::FullPolicy;
  using buffer::RingOptions;
  using buffer::SyncMode;
  using config::CheckContext;
  Table<RingOptions> table;
  table.add(config::sizeKey("max_size", &RingOptions::max_size, kMiB)
                .byDefault("1GiB")
                .describe("Upper bound on the bytes the ring's frames occupy on disk, counted in "
                          "LMDB pages. When a new frame does not fit, `when_full` decides."));
  table.add(config::sizeKey("map_size", &RingOptions::map_size, kMiB)
                .zeroMeans("derived from max_size")
                .byDefault("0")
                .describe("LMDB map size, the most the data file may grow to. 0 derives it from "
                          "`max_size` with room for a commit in flight and the B-tree."));
  table.add(config::enumKey("sync", &RingOptions::sync,
                            {
                                {"batch", SyncMode::kBatch,
                                 "fsync data at every group commit. A process crash loses nothing "
                                 "committed; power loss loses at most the last commit."},
                                {"always", SyncMode::kAlways,
                                 "fsync data and meta page at every commit, committing as soon as "
                                 "records are queued."},
                                {"none", SyncMode::kNone,
                                 "never fsync; the OS writes back. A process crash loses nothing "
                                 "committed; power loss may lose anything not yet written back."},
                            })
                .byDefault("batch")
                .describe("When a group commit is made durable."));
  table.add(config::enumKey("when_full", &RingOptions::when_full,
                            {
                                {"drop_oldest", FullPolicy::kDropOldest,
                                 "evict the oldest frames in the same transaction, counted per "
                                 "consumer."},
                                {"block", FullPolicy::kBlock,
                                 "stop committing until consumers acknowledge enough to make "
                                 "room."},
                            })
                .byDefault("drop_oldest")
                .describe("What the writer does when a new frame does not fit in `max_size`."));
  table.add(config::durationKey("commit_interval", &RingOptions::commit_interval,
                                std::chrono::nanoseconds(0), seconds(10))
                .byDefault("20ms")
                .describe("Group commit: the longest records wait before they are committed "
                          "(less under load, see `commit_max_bytes`)."));
  table.add(config::sizeKey("commit_max_bytes", &RingOptions::commit_max_bytes, 64 * kKiB, kGiB)
                .byDefault("4MiB")
                .describe("Group commit: a transaction carries at most this many bytes of "
                          "frames, and a commit starts early once a quarter of it is pending."));
  table.add(config::sizeKey("frame_max_bytes", &RingOptions::frame_max_bytes, 4 * kKiB, 64 * kMiB)
                .byDefault("256KiB")
                .describe("A frame is sealed once its records reach this size; a single larger "
                          "record gets a frame of its own."));
  table.add(config::enumKey("compression", &RingOptions::codec,
                            {
                                {"none", Codec::kNone, "frames are stored as they are."},
                                {"zstd", Codec::kZstd,
                                 "frames are compressed with zstd at `compression_level`."},
                            })
                .byDefault("none")
                .describe("How frames are compressed on disk."));
  table.add(config::integerKey("compression_level", &RingOptions::zstd_level, 1, 19)
                .byDefault("1")
                .describe("zstd level when `compression` is `zstd`: higher compresses more and "
                          "costs more CPU."));
  table.add(config::sizeKey("ingest_max_bytes", &RingOptions::ingest_max_bytes, kMiB, 16 * kGiB)
                .byDefault("16MiB")
                .describe("Bytes of encoded records that may wait for the writer before new "
                          "records are refused or wait."));

  table.check({"frame_max_bytes", "commit_max_bytes"},
              "`frame_max_bytes` <= `commit_max_bytes`: a frame is written within one commit.",
              [](const RingOptions& o, const CheckContext& c) -> std::optional<std::string> {
                if (o.frame_max_bytes <= o.commit_max_bytes) return std::nullopt;
                return fmt::format(
                    "{} must not be larger than {}: a frame is written within one commit",
                    c.show("frame_max_bytes"), c.show("commit_max_bytes"));
              });
  table.check({"commit_max_bytes", "max_size"},
              "`commit_max_bytes` <= `max_size` / 4: when the ring is full, eviction must be able "
              "to free room for a whole commit.",
              [](const RingOptions& o, const CheckContext& c) -> std::optional<std::string> {
                if (o.commit_max_bytes <= o.max_size / 4) return std::nullopt;
                return fmt::format(
                    "{} must be at most a quarter of {}, that is {}: when the ring is full, "
                    "eviction must be able to free room for a whole commit",
                    c.show("commit_max_bytes"), c.show("max_size"), formatSize(o.max_size / 4));
              });
  table.check({"ingest_max_bytes", "frame_max_bytes"},
              "`ingest_max_bytes` >= `frame_max_bytes`: a frame's worth of records must fit in "
              "the ingest queue.",
              [](const RingOptions& o, const CheckContext& c) -> std::optional<std::string> {
                if (o.ingest_max_bytes >= o.frame_max_bytes) return std::nullopt;
                return fmt::format(
                    "{} must be at least {}: a frame's worth of records must fit in the ingest "
                    "queue",
                    c.show("ingest_max_bytes"), c.show("frame_max_bytes"));
              });
  table.check({"map_size", "max_size", "commit_max_bytes"},
              "`map_size`, unless 0, >= (`max_size` + 2 × `commit_max_bytes` + 256KiB) × 16/15: "
              "LMDB needs room besides the frames (two commits in flight, the trees, the free "
              "list), or the ring evicts before `max_size`.",
              [](const RingOptions& o, const CheckContext& c) -> std::optional<std::string> {
                if (o.max_size > (1ULL << 60U)) return std::nullopt;  // max_size reports it
                const std::uint64_t needed = buffer::minimumMapSize(o.max_size, o.commit_max_bytes);
                if (o.map_size == 0 || o.map_size >= needed) return std::nullopt;
                return fmt::format(
                    "{} must be at least {} for {} and {}: LMDB needs room besides the frames "
                    "(two commits in flight, the trees, the free list); or use 0 to derive it",
                    c.show("map_size"), formatSize(needed), c.show("max_size"),
                    c.show("commit_max_bytes"));
              });
  return table;
}

std::optional<std::string> checkInputName(const Value& value) {
  if (value.text.empty()) return "an input name must not be empty";
  if (value.text.size() > kMaxInputNameBytes) {
    return fmt::format("an input name has at most {} bytes; this one has {}", kMaxInputNameBytes,
                       value.text.size());
  }
  return std::nullopt;
}

std::optional<std::string> checkListen(const Value& value) {
  for (const char* scheme : {"udp://", "tcp://", "tls://"}) {
    if (value.text.rfind(scheme, 0) == 0) {
      const std::string_view rest = std::string_view(value.text).substr(6);
      const std::size_t colon = rest.rfind(':');
      if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
        return fmt::format("{} has no HOST:PORT after the scheme", config::quoteText(value.text));
      }
      return std::nullopt;
    }
  }
  return fmt::format("{} must start with udp://, tcp:// or tls://", config::quoteText(value.text));
}

template <typename T>
void addInputName(Table<T>& table) {
  table.add(config::stringKey("name", &T::name)
                .check(checkInputName, "1 to 255 bytes, unique among the inputs")
                .describe("The input's name; every record it captures carries it."));
}

Table<capture::PcapOptions> pcapTable() {
  using capture::PcapOptions;
  using capture::Replay;
  Table<PcapOptions> table;
  addInputName(table);
  table.add(config::stringKey("interface", &PcapOptions::interface)
                .byDefault("")
                .describe("Live capture on this interface (`eth0`, `any`)."));
  table.add(config::stringKey("file", &PcapOptions::file)
                .byDefault("")
                .describe("Read this pcap or pcapng file instead of an interface."));
  table.add(config::enumKey(
                "replay", &PcapOptions::replay,
                {
                    {"fast", Replay::kFast, "as fast as the buffer takes it; nothing is dropped."},
                    {"realtime", Replay::kRealtime, "at the pace of the packets' timestamps."},
                })
                .byDefault("fast")
                .describe("How a `file` is replayed."));
  table.add(config::stringKey("filter", &PcapOptions::filter)
                .byDefault("")
                .describe("BPF filter expression (tcpdump syntax); empty captures everything."));
  table.add(config::integerKey("snaplen", &PcapOptions::snaplen, 64, 262144)
                .byDefault("262144")
                .unit("bytes")
                .describe("Bytes kept of each packet."));
  table.add(config::boolKey("promiscuous", &PcapOptions::promiscuous)
                .byDefault("true")
                .describe("Live: put the interface in promiscuous mode."));
  table.add(config::sizeKey("buffer_size", &PcapOptions::buffer_size, kMiB, 2 * kGiB)
                .byDefault("32MiB")
                .describe("Live: the kernel's capture ring (TPACKET_V3)."));
  table.add(config::durationKey("block_timeout", &PcapOptions::block_timeout, milliseconds(1),
                                seconds(10))
                .byDefault("100ms")
                .describe("Live: the longest the kernel holds a block of packets before handing "
                          "it over."));
  table.check({"interface", "file"}, "Exactly one of `interface` and `file`.",
              [](const PcapOptions& o, const config::CheckContext&) -> std::optional<std::string> {
                if (o.interface.empty() == o.file.empty()) {
                  return "give exactly one of 'interface' (live capture) and 'file'";
                }
                return std::nullopt;
              });
  return table;
}

Table<capture::FileTailOptions> fileTable() {
  using capture::FileTailOptions;
  using capture::LongLines;
  using capture::StartAt;
  Table<FileTailOptions> table;
  addInputName(table);
  table.add(config::stringListKey("paths", &FileTailOptions::paths)
                .check(checkNotEmpty, "a glob pattern")
                .describe("Files to tail: glob patterns, re-evaluated at every poll so files that "
                          "appear later are picked up. Include rotated names (`app.log*`) so a "
                          "restart right after a rotation finishes the old file."));
  table.add(config::enumKey("start_at", &FileTailOptions::start_at,
                            {
                                {"beginning", StartAt::kBeginning, "read existing content."},
                                {"end", StartAt::kEnd, "only what is appended from now on."},
                            })
                .byDefault("end")
                .describe("Where to start in a file found at startup that has no saved offset. "
                          "Files that appear later are always read from their beginning."));
  table.add(config::sizeKey("max_line_bytes", &FileTailOptions::max_line_bytes, 256, 16 * kMiB)
                .byDefault("64KiB")
                .describe("The longest line kept as one record; see `long_lines`."));
  table.add(config::enumKey("long_lines", &FileTailOptions::long_lines,
                            {
                                {"split", LongLines::kSplit,
                                 "into records of `max_line_bytes`, flagged as continued."},
                                {"truncate", LongLines::kTruncate,
                                 "keep the first `max_line_bytes`; the rest is counted."},
                            })
                .byDefault("split")
                .describe("What happens to a line longer than `max_line_bytes`."));
  table.add(config::durationKey("poll_interval", &FileTailOptions::poll_interval, milliseconds(10),
                                seconds(60))
                .byDefault("250ms")
                .describe("How often files are checked for new data, rotation and new matches."));
  table.add(config::sizeKey("fingerprint_bytes", &FileTailOptions::fingerprint_bytes, 16, 64 * kKiB)
                .byDefault("256")
                .describe("Bytes at a file's start that identify it with its device and inode, "
                          "so a reused inode is not mistaken for the old file."));
  return table;
}

Table<capture::SyslogOptions> syslogTable() {
  using capture::SyslogOptions;
  Table<SyslogOptions> table;
  addInputName(table);
  table.add(config::stringKey("listen", &SyslogOptions::listen)
                .check(checkListen, "`udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT`")
                .describe("Where to receive syslog messages (RFC 5424 or RFC 3164). TCP and TLS "
                          "accept octet-counted and LF-terminated framing."));
  table.add(config::sizeKey("max_message_bytes", &SyslogOptions::max_message_bytes, 480, 16 * kMiB)
                .byDefault("64KiB")
                .describe("Longer messages are truncated to this and counted."));
  table.add(config::integerKey("max_connections", &SyslogOptions::max_connections, 1, 100000)
                .byDefault("256")
                .unit("connections")
                .describe("TCP/TLS: connections beyond this are closed at once and counted."));
  table.add(config::durationKey("idle_timeout", &SyslogOptions::idle_timeout,
                                std::chrono::nanoseconds(0), std::chrono::hours(24))
                .byDefault("5m")
                .describe("TCP/TLS: close a connection idle this long; 0 never does."));
  table.add(config::stringKey("tls_cert_file", &SyslogOptions::tls_cert_file)
                .byDefault("")
                .describe("TLS: the server certificate chain (PEM)."));
  table.add(config::stringKey("tls_key_file", &SyslogOptions::tls_key_file)
                .byDefault("")
                .describe("TLS: the server's private key (PEM)."));
  table.add(config::stringKey("tls_client_ca_file", &SyslogOptions::tls_client_ca_file)
                .byDefault("")
                .describe("TLS: when set, clients must present a certificate signed by this CA "
                          "(PEM)."));
  table.check(
      {"listen", "tls_cert_file", "tls_key_file"},
      "`tls://` needs `tls_cert_file` and `tls_key_file`; the TLS keys need `tls://`.",
      [](const SyslogOptions& o, const config::CheckContext&) -> std::optional<std::string> {
        const bool tls = o.listen.rfind("tls://", 0) == 0;
        if (tls && (o.tls_cert_file.empty() || o.tls_key_file.empty())) {
          return "a tls:// listener needs 'tls_cert_file' and 'tls_key_file'";
        }
        if (!tls && (!o.tls_cert_file.empty() || !o.tls_key_file.empty() ||
                     !o.tls_client_ca_file.empty())) {
          return "the tls_* keys only apply to a tls:// listener";
        }
        return std::nullopt;
      });
  return table;
}

Table<Config> buildSchema() {
  Table<Config> table;
  table.add(config::section("agent", &Config::agent, agentTable(),
                            "Who this sensor is and where it keeps its state."));
  table.add(config::section("log", &Config::log, logTable(), "What the agent logs."));
  table.add(config::section("buffer", &Config::buffer, bufferTable(),
                            "The durable ring buffer (LMDB) that keeps records on disk until "
                            "their consumers acknowledge them."));
  table.add(config::listOf<Config, InputConfig>(
      "inputs", &Config::inputs, "type",
      {
          config::alternative<InputConfig>("pcap", pcapTable(),
                                           "Packets from a live interface or a pcap file."),
          config::alternative<InputConfig>("file", fileTable(),
                                           "Lines appended to files, across rotation."),
          config::alternative<InputConfig>("syslog", syslogTable(),
                                           "Syslog messages over UDP, TCP or TLS."),
      },
      "What the agent captures. Each entry's `name` is unique; records carry it."));
  table.add(config::listOf<Config, transport::OutputOptions>(
      "outputs", &Config::outputs, "type", config::outputAlternatives(),
      "Where the agent delivers what it captured. Each output reads the buffer with its own "
      "cursor and acknowledges a frame only once its receiver confirmed it; each entry's `name` "
      "is unique."));
  table.add(config::section("opamp", &Config::opamp, config::opampTable(),
                            "The management server (OpAMP): heartbeats with health and the "
                            "effective config, and remote configuration."));
  table.add(config::section("status", &Config::status, config::statusTable(),
                            "The local status API for load balancers, Prometheus and operators."));
  return table;
}

// Input names are unique: they key each input's counters and its saved file offsets; output
// names too: they name each output's cursor in the buffer. Checked on the document so the message
// points at the repeated entry. `list_name` is "inputs" or "outputs".
void checkUniqueNames(const config::Node* root, const std::string& list_name,
                      config::DiagnosticSink& sink) {
  const config::Node* list = nullptr;
  for (const auto& [key, value] : root->entries) {
    if (key->isScalar() && key->text == list_name) list = value;
  }
  if (list == nullptr || !list->isSequence()) return;
  std::vector<std::pair<std::string, std::size_t>> seen;
  for (std::size_t i = 0; i < list->items.size(); ++i) {
    const config::Node& entry = *list->items[i];
    if (!entry.isMapping()) continue;
    for (const auto& [key, value] : entry.entries) {
      if (!key->isScalar() || key->text != "name" || !value->isScalar()) continue;
      const std::string& name = value->text;  // clang 14 (clang-tidy) cannot capture a binding
      const auto first = std::find_if(seen.begin(), seen.end(),
                                      [&name](const auto& s) { return s.first == name; });
      if (first != seen.end()) {
        const std::string what = list_name == "inputs" ? "input" : "output";
        sink.report(value->mark, fmt::format("{}[{}].name", list_name, i),
                    fmt::format("duplicate {} name {}; {}[{}] has it already", what,
                                config::quoteText(value->text), list_name, first->second));
      } else {
        seen.emplace_back(value->text, i);
      }
      break;
    }
  }
}

const Table<Config>& schema() {
  static const Table<Config> kSchema = buildSchema();
  return kSchema;
}

const std::vector<std::string>& knownPaths() {
  static const std::vector<std::string> kPaths = [] {
    std::vector<std::string> paths;
    schema().collectPaths("", paths);
    return paths;
  }();
  return kPaths;
}

tl::unexpected<Error> failure(ErrorCode code, const std::vector<ConfigDiagnostic>& found,
                              std::vector<ConfigDiagnostic>* diagnostics) {
  std::string message;
  for (const auto& d : found) {
    if (!message.empty()) message += '\n';
    message += d.describe();
  }
  if (diagnostics != nullptr) *diagnostics = found;
  return fail(code, std::move(message));
}

Result<Config> parseOrThrow(std::string_view text, std::string_view file_name,
                            std::vector<ConfigDiagnostic>* diagnostics) {
  config::DiagnosticSink sink(file_name);
  Config result;
  if (const auto document = config::parseDocument(text, sink)) {
    const config::Node* root = document->root();
    const std::string sections = config::joinNames(schema().names(), "'");
    if (root == nullptr || root->isNull()) {
      sink.report(
          {1, 1}, "",
          fmt::format("the file has no settings; write a mapping of sections ({})", sections));
    } else if (!root->isMapping()) {
      sink.report(root->mark, "",
                  fmt::format("the top level must be a mapping of sections ({}), not {}", sections,
                              config::describeKind(root->kind)));
    } else {
      config::ParseContext context{sink, knownPaths()};
      schema().parse(result, root, "", root->mark, context);
      checkUniqueNames(root, "inputs", sink);
      checkUniqueNames(root, "outputs", sink);
    }
  }
  if (sink.empty()) return result;
  return failure(ErrorCode::kConfig, sink.sorted(), diagnostics);
}

// A problem outside the file's content (the file itself, or this process), as one diagnostic.
tl::unexpected<Error> fileProblem(ErrorCode code, std::string_view file, std::string_view message,
                                  std::vector<ConfigDiagnostic>* diagnostics) {
  config::DiagnosticSink sink(file);
  sink.report({}, "", message);
  return failure(code, sink.sorted(), diagnostics);
}

}  // namespace

const std::string& inputName(const InputConfig& input) {
  return std::visit([](const auto& o) -> const std::string& { return o.name; }, input);
}

const char* inputType(const InputConfig& input) {
  switch (input.index()) {
    case 0:
      return "pcap";
    case 1:
      return "file";
    default:
      return "syslog";
  }
}

Result<Config> parseConfig(std::string_view text, std::string_view file_name,
                           std::vector<ConfigDiagnostic>* diagnostics) {
  if (diagnostics != nullptr) diagnostics->clear();
  try {
    return parseOrThrow(text, file_name, diagnostics);
  } catch (const std::exception& e) {
    // Only resource exhaustion gets here; yaml-cpp's exceptions are handled where they arise.
    return fileProblem(ErrorCode::kConfig, file_name,
                       fmt::format("internal error while checking the config: {}", e.what()),
                       diagnostics);
  } catch (...) {
    return fileProblem(ErrorCode::kConfig, file_name, "internal error while checking the config",
                       diagnostics);
  }
}

Result<Config> loadConfigFile(const std::filesystem::path& path,
                              std::vector<ConfigDiagnostic>* diagnostics) {
  if (diagnostics != nullptr) diagnostics->clear();
  const std::string name = path.string();
  const auto problem = [&](std::string_view what, int err) {
    return fileProblem(
        err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo, name,
        fmt::format("cannot {} the config file: {}", what, std::generic_category().message(err)),
        diagnostics);
  };
  try {
    std::FILE* file = std::fopen(path.c_str(), "rbe");
    if (file == nullptr) return problem("open", errno);
    // One byte past the limit is enough for parseConfig to refuse the file.
    std::string text;
    std::array<char, std::size_t{64} * 1024> chunk{};
    while (text.size() <= kMaxConfigBytes) {
      const std::size_t want = std::min(chunk.size(), kMaxConfigBytes + 1 - text.size());
      const std::size_t got = std::fread(chunk.data(), 1, want, file);
      text.append(chunk.data(), got);
      if (got == want) continue;
      if (std::ferror(file) != 0) {
        const int err = errno;
        std::fclose(file);
        return problem("read", err);
      }
      break;
    }
    std::fclose(file);
    return parseConfig(text, name, diagnostics);
  } catch (const std::exception& e) {
    return fileProblem(ErrorCode::kIo, name,
                       fmt::format("internal error while reading the config file: {}", e.what()),
                       diagnostics);
  }
}

Result<Config> mergeRemoteConfig(const Config& local, std::string_view remote_text,
                                 std::string_view file_name) {
  auto remote = parseConfig(remote_text, file_name);
  if (!remote) return remote;
  // Which sections the remote text has: those replace the local ones.
  std::vector<std::string> present;
  {
    config::DiagnosticSink sink(file_name);
    const auto document = config::parseDocument(remote_text, sink);
    if (document && document->root() != nullptr && document->root()->isMapping()) {
      for (const auto& [key, value] : document->root()->entries) {
        if (key->isScalar()) present.push_back(key->text);
      }
    }
  }
  const auto has = [&present](std::string_view name) {
    return std::find(present.begin(), present.end(), name) != present.end();
  };
  std::string refused;
  const auto check = [&](std::string_view name, bool same) {
    if (!has(name) || same) return;
    if (!refused.empty()) refused += '\n';
    refused += fmt::format(
        "{}: '{}' is local only: a remote config may not change it (change it in the local "
        "config file and restart)",
        file_name, name);
  };
  check("agent", remote->agent == local.agent);
  check("buffer", remote->buffer == local.buffer);
  check("opamp", remote->opamp == local.opamp);
  check("status", remote->status == local.status);
  if (!refused.empty()) return fail(ErrorCode::kConfig, refused);
  Config merged = local;
  if (has("log")) merged.log = remote->log;
  if (has("inputs")) merged.inputs = remote->inputs;
  if (has("outputs")) merged.outputs = remote->outputs;
  return merged;
}

std::string renderSchemaMarkdown() {
  std::string out;
  schema().document(out, "", 3, "", "");
  return out;
}

}  // namespace cistern::agent
