// FileSender: the `file` output's Sender, a local archive. Packets are appended to pcapng files
// and every other record (log lines, syslog messages) to NDJSON files, in the output's directory:
//
//   <dir>/<output>.<n>.pcapng    <dir>/<output>.<n>.ndjson
//
// n increases with every file this output ever opened (a restart continues after the highest n
// present), a file is closed and the next opened once it holds max_file_bytes, and only the newest
// max_files files of each format are kept. Files are only appended to, never rewritten, so
// another program may read them while they grow.
//
// A worker thread does the writing, so the loop never waits for the disk: it takes every batch
// queued, writes them, syncs the files they touched (fdatasync) once for all, and only then
// reports them delivered, which lets the dispatcher acknowledge their frames. A batch whose write
// or sync fails is cut off the files again (ftruncate to where it began) and reported kRetry, so
// the archive never holds half a batch, and a retry does not duplicate it.
#pragma once

#include <memory>

#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/outputs.h"
#include "sender.h"

namespace cistern::transport {

// Creates the directory when missing and checks it is writable; the files are opened lazily.
// Errors: kConfig naming the output and the directory, with the system's reason.
Result<std::unique_ptr<Sender>> makeFileSender(platform::EventLoop& loop,
                                               const FileOutputOptions& options,
                                               const std::string& version);

}  // namespace cistern::transport
