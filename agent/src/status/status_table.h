// The human-readable form of `GET /status`, as `cistern status` prints it.
//
// The JSON is the agent's (StatusSource::statusJson()); the renderer reads it defensively: a
// missing key, null, or a value of an unexpected type is shown as "-", unknown keys are ignored,
// and control characters in strings (an error text relayed from a remote server) are replaced so
// they cannot drive the terminal. The keys it reads, all optional (durations in seconds, sizes
// in bytes, times ISO 8601):
//
//   {
//     "agent":   {"id", "version", "host", "data_dir", "uptime_s"},
//     "health":  {"ok": bool, "reason"},
//     "buffer":  {"frames", "records", "used_bytes", "max_size", "oldest_time", "oldest_age_s",
//                 "evicted_records", "refused_queue_full", "dropped_map_full",
//                 "corrupt_frames_seen", "writer_blocked": bool},
//     "inputs":  [{"name", "type", "finished": bool, "healthy": bool, "problem",
//                  "counters": {NAME: number or null}}],
//     "outputs": [{"name", "type", "state", "endpoint", "last_error",
//                  "counters": {"records_acked", "drain_rate" (bytes/s), ...},
//                  "buffer": {"pending_records", ...}}],
//     "opamp":   {"enabled": bool, "state", "endpoint", "last_report_time", "last_report_age_s",
//                 "remote_config_status", "remote_config_hash", "remote_config_error",
//                 "last_error"}
//   }
//
// An input's row sums its counters by suffix, so every input type fits four columns: RECEIVED
// (`*_received`, `*_read`), STORED (`*_stored`), DROPPED (`*_dropped`, `*_dropped_*`), ERRORS
// (`*_errors`, `*_failures`); byte counters (`bytes_*`) are left out, null counters (not known)
// are skipped, and a column no counter matched shows "-". Its STATE is "finished", "failed"
// (healthy false) or "running".
#pragma once

#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern::agent {

// The status as text: agent, health, buffer, an inputs table, an outputs table, OpAMP. Errors
// (kCorrupt): the text is not JSON or not a JSON object.
Result<std::string> renderStatusTable(std::string_view status_json);

}  // namespace cistern::agent
