// The agent's config schema, one table per section, and the public entry points.
#include "cistern/agent/config.h"

#include <array>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <system_error>

#include <fmt/format.h>

#include "cistern/core/units.h"
#include "cistern/platform/process.h"
#include "diagnostics.h"
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

Table<Config> buildSchema() {
  Table<Config> table;
  table.add(config::section("agent", &Config::agent, agentTable(),
                            "Who this sensor is and where it keeps its state."));
  table.add(config::section("log", &Config::log, logTable(), "What the agent logs."));
  table.add(config::section("buffer", &Config::buffer, bufferTable(),
                            "The durable ring buffer (LMDB) that keeps records on disk until "
                            "their consumers acknowledge them."));
  return table;
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

std::string renderSchemaMarkdown() {
  std::string out;
  schema().document(out, "", 3, "", "");
  return out;
}

}  // namespace cistern::agent
