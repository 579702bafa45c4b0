// The cistern CLI's commands, as functions the executable and the tests both call.
//
// Each writes its report to `out`, problems to `err`, and returns the process exit status:
// 0 success, 1 the check failed (bad config, damaged buffer), 2 the command could not run
// (missing directory, unreadable file, LMDB error).
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

namespace cistern::agent {

inline constexpr int kExitOk = 0;
inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitCannotRun = 2;

// Where the ring lives inside an agent's data directory.
std::filesystem::path bufferDirOf(const std::filesystem::path& data_dir);

// `cistern check-config -c FILE`: every problem at once, with file, line, column and key.
int checkConfigCommand(const std::filesystem::path& file, std::FILE* out, std::FILE* err);

struct BufferToolOptions {
  // The agent's data directory or the ring directory itself (the one holding data.mdb).
  std::filesystem::path data_dir;
  bool json = false;
};

// `cistern buffer inspect`: contents, limits, totals and every consumer's cursor and counters.
int bufferInspectCommand(const BufferToolOptions& options, std::FILE* out, std::FILE* err);

// `cistern buffer verify`: checks every frame and invariant; exit 1 and the bad frame ids when
// anything is wrong.
int bufferVerifyCommand(const BufferToolOptions& options, std::FILE* out, std::FILE* err);

struct RemoveConsumerOptions {
  std::filesystem::path config_file;  // the agent's config: its data directory and buffer limits
  std::string name;                   // the consumer: the name of the removed output
  std::string version;
};

// `cistern buffer remove-consumer NAME -c CONFIG`: deletes the cursor of an output no longer in
// the config (the local file with the stored remote config, as `run` would start), so the ring
// stops keeping frames for it. Needs the agent stopped: the ring opens for writing with the
// config's buffer limits. Exit 1 for a bad config; 2 when the output is still configured, the
// ring has no such consumer, or the ring cannot be opened (another agent holds it).
int bufferRemoveConsumerCommand(const RemoveConsumerOptions& options, std::FILE* out,
                                std::FILE* err);

struct RunOptions {
  std::filesystem::path config_file;
  // Exit once every input has finished (pcap files read to the end) and every output has
  // delivered everything in the buffer; live inputs never finish.
  bool exit_when_done = false;
  std::string version;                      // sent to receivers with the agent's identity
  bool verbose = false;                     // -v given: keep the log level the CLI set
  std::chrono::seconds stats_interval{60};  // log every input's counters this often; 0 never
};

// `cistern run -c FILE`: captures every configured input into the ring and delivers it through
// every configured output until SIGINT/SIGTERM, then prints every input's and output's counters
// and the buffer's totals as one JSON line on `out`. Exit 1 for a bad config, 2 when the buffer,
// an input or an output cannot start (every such input and output is reported).
int runCommand(const RunOptions& options, std::FILE* out, std::FILE* err);

enum class ExportFormat { kPcapng, kNdjson };

struct ExportOptions {
  std::filesystem::path data_dir;  // as BufferToolOptions::data_dir
  ExportFormat format = ExportFormat::kNdjson;
  std::filesystem::path output;  // empty or "-": standard output
  std::string input;             // only this input's records; empty: all
  std::string version;           // written into the pcapng section header
};

// `cistern buffer export`: every buffered record, oldest first, without consuming anything:
// packets as pcapng, or every record as one JSON object per line. A summary goes to `err`.
// Exit 1 when damaged records or corrupt frames were skipped (the rest is exported).
int bufferExportCommand(const ExportOptions& options, std::FILE* out, std::FILE* err);

struct StatusOptions {
  // HOST:PORT of the agent's status API ("127.0.0.1:8780", "[::1]:8780"). Empty: `status.listen`
  // of `config_file`, or 127.0.0.1:8780 (the default) when no config file is given either. A
  // wildcard address (0.0.0.0, [::]) is reached on loopback.
  std::string address;
  std::filesystem::path config_file;
  bool json = false;   // print the agent's JSON as received, not the table
  bool watch = false;  // redraw every `interval` (clearing the screen) until interrupted
  std::chrono::milliseconds interval{1000};
  int watch_count = 0;  // with `watch`, return after this many redraws; 0: never
  std::chrono::milliseconds timeout{3000};  // for each request, connecting included
};

// `cistern status`: fetches GET /status from a running agent and prints it as a table (agent,
// buffer, inputs, outputs, OpAMP; status/status_table.h) or, with `json`, as received. Exit 2
// when the agent cannot be reached, answers with an error or with something that is not a JSON
// object, or the config gives no address. With `watch`, an unreachable agent is shown on the
// screen and retried at the next refresh instead; it returns 0 after `watch_count` refreshes.
int statusCommand(const StatusOptions& options, std::FILE* out, std::FILE* err);

}  // namespace cistern::agent
