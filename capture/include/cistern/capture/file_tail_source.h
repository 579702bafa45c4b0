// FileTailSource: lines appended to files, found by glob patterns, surviving rotation and
// restarts without losing or repeating a line.
//
// Each line becomes one RecordKind::kLogLine record: the input's name, the time it was read (ns),
// LogLineMeta (path, offset of the line in the file, flags) and the line without its terminator
// ("\n" or "\r\n").
//
// A file is identified by device + inode + a fingerprint (hash of its first fingerprint_bytes
// bytes, once it has that many), so a reused inode is recognised as a new file. The read offset
// of every file is written as sink state ("tail/<input>/<identity>") in the same append as the
// lines up to it, hence committed in the same transaction: after a crash the tail resumes exactly
// after the last committed line.
//
// Rotation: rename + create (the old file is read to its end, then the new one from its start),
// copytruncate (a file that shrinks below the read offset is read again from the start), files
// that appear later (the globs are re-evaluated every poll), files deleted while open (read to the
// end, then closed).
//
// Counters: files_watched, files_rotated, files_truncated, lines_read, lines_stored,
// lines_truncated, lines_split, bytes_read, read_errors.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cistern/capture/source.h"
#include "cistern/core/sink.h"

namespace cistern::capture {

enum class StartAt { kBeginning, kEnd };
enum class LongLines { kSplit, kTruncate };

struct FileTailOptions {
  std::string name;                  // the input's name, 1..255 bytes
  std::vector<std::string> paths;    // glob patterns (glob(3)); at least one
  StartAt start_at = StartAt::kEnd;  // for files with no committed offset
  std::uint64_t max_line_bytes = 64U << 10U;
  LongLines long_lines = LongLines::kSplit;
  std::chrono::nanoseconds poll_interval = std::chrono::milliseconds(250);
  std::uint64_t fingerprint_bytes = 256;

  bool operator==(const FileTailOptions&) const = default;
};

// Checks the options (a pattern whose directory cannot be read is an error; a pattern matching
// nothing yet is not). Errors: kConfig, kIo, messages start with "input 'NAME': ".
Result<std::unique_ptr<Source>> makeFileTailSource(const FileTailOptions& options,
                                                   RecordSink& sink);

}  // namespace cistern::capture
