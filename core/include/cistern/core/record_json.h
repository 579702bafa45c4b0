// A record as one JSON object, for NDJSON export and the file output.
//
// Fields: "time" (RFC 3339, ns), "ts_ns", "input", "kind", then by kind:
//   log:    "path", "offset", "message", and "truncated"/"split"/"no_newline" when set;
//   syslog: "format", "facility", "severity" (absent when the message had none), "timestamp"
//           (the message's own, when it had one), "host", "app", "procid", "msgid", "peer",
//           "message" (the MSG part), "raw" (the message as received);
//   packet: "link_type", "captured_length", "original_length", "data_base64".
// Metadata that does not decode adds "meta_error" and the payload as "raw" (text) or
// "data_base64". Invalid UTF-8 is replaced by U+FFFD, so every line is valid JSON.
#pragma once

#include <string>

#include "cistern/core/record.h"

namespace cistern {

// The JSON text, without a trailing newline.
std::string recordToJson(const RecordView& record);

// "2026-11-21T09:53:22.435123456Z" (UTC), or "-" for 0.
std::string formatTimestamp(std::int64_t ns);

}  // namespace cistern
