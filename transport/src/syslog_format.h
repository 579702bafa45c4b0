// RFC 5424 formatting of records for the syslog output, and RFC 6587 octet-counted framing.
//
// What each record kind becomes:
// - syslog received as RFC 5424: the message as received (the payload), unchanged.
// - syslog received as RFC 3164 or unparsed ("raw"): rewritten as RFC 5424 from the fields the
//   input parsed: PRI from facility and severity (13, user.notice, when the message had no PRI,
//   as RFC 3164 section 4.3.3 prescribes for relays), the message's own timestamp or else the
//   receive time, HOSTNAME (or the peer's address when the message named no host, as an RFC 3164
//   relay does), APP-NAME, PROCID, MSGID, no structured data, and MSG.
// - log line: PRI 14 (user.info), the read time, HOSTNAME = the agent's host name, APP-NAME = the
//   input's name, structured data [cistern@32473 path="..." offset="..."], MSG = the line.
// - packet (and any other kind): not carried by syslog; reported as skipped.
//
// Header fields are reduced to what RFC 5424 allows (PRINTUSASCII, the RFC's length caps, '-'
// when empty), so a hostile input cannot inject spaces or line breaks into the header; with
// octet counting (and RELP's length-prefixed frames) nothing inside a message can break framing.
// Timestamps are RFC 3339 in UTC with microseconds ("2024-05-01T12:00:00.123456Z").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/core/record.h"

namespace cistern::transport {

// The SD-ID of Cistern's structured data: "cistern" at IANA private enterprise number 32473,
// the number RFC 5612 reserves for documentation. A deployment with its own enterprise number
// changes it here.
inline constexpr std::string_view kCisternSdId = "cistern@32473";

// RFC 5424 section 6.1: every receiver accepts messages of this size; a smaller
// max_message_bytes is raised to it, so that a rewritten header always fits.
inline constexpr std::size_t kMinMessageBytes = 480;

struct SyslogFormatOptions {
  std::string_view host_name;  // the agent's host name: HOSTNAME of log lines
  // Longer messages are cut to this many bytes (at a UTF-8 character boundary inside MSG).
  std::size_t max_message_bytes = std::size_t{64} << 10U;
};

enum class FormatOutcome {
  kFormatted,  // `out` holds the message
  kSkipped,    // a kind syslog does not carry (packets); `out` is empty
  kCorrupt,    // the record's metadata did not decode; `error` says why, `out` is empty
};

struct FormatResult {
  FormatOutcome outcome = FormatOutcome::kFormatted;
  bool truncated = false;  // the message was cut to max_message_bytes
  std::string error;       // kCorrupt only
};

// Formats `record` as one RFC 5424 message (no framing) into `out`, which is cleared first.
// Pure: no I/O, no clock; any thread.
FormatResult formatRfc5424(const RecordView& record, const SyslogFormatOptions& options,
                           std::string& out);

// Appends "LEN SP MSG" (RFC 6587 octet counting; RFC 5425 over TLS) to `out`.
void appendOctetCounted(std::string& out, std::string_view message);

// `ns` (since the Unix epoch) as RFC 3339 UTC with microseconds, e.g.
// "2024-05-01T12:00:00.123456Z". Every int64 value is a four-digit year (1677..2262).
std::string rfc3339Micros(std::int64_t ns);

}  // namespace cistern::transport
