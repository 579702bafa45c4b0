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

struct RunOptions {
  std::filesystem::path config_file;
  // Exit once every input has finished (pcap files read to the end) and every output has
  // delivered everything in the buffer; live inputs never finish.
  bool exit_when_done = false;
  std::string version;  // sent to receivers with the agent's identity
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

}  // namespace cistern::agent
