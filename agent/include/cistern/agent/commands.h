// The cistern CLI's commands, as functions the executable and the tests both call.
//
// Each writes its report to `out`, problems to `err`, and returns the process exit status:
// 0 success, 1 the check failed (bad config, damaged buffer), 2 the command could not run
// (missing directory, unreadable file, LMDB error).
#pragma once

#include <cstdio>
#include <filesystem>

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

}  // namespace cistern::agent
