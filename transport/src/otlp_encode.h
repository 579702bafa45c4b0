// OTLP/HTTP logs encoding: a batch of frames as one ExportLogsServiceRequest body (binary
// protobuf), written by hand in the protobuf wire format (no libprotobuf objects on this path),
// and the decoding of the ExportLogsServiceResponse.
//
// Request layout: one ResourceLogs whose resource names the sender (host.name, service.name
// "cistern", service.version, service.instance.id and cistern.agent.id = the agent id) and the
// frames the request carries (cistern.frame.first, cistern.frame.last, cistern.frame.count), so
// a receiver can drop the duplicates that at-least-once delivery produces; one ScopeLogs (scope
// "cistern" and the agent version) holding one LogRecord per record, in buffer order. The input
// is an attribute of each record (cistern.input) rather than a ScopeLogs per input: a scope is
// the instrumentation that produced the records, which is Cistern for all of them, and one scope
// keeps records from several inputs in the order they were captured.
//
// Per record (observed_time_unix_nano is always the record's capture or receive time):
//   packet   time = capture time; body bytes_value = the captured bytes; network.link_type,
//            packet.captured_length, packet.original_length (int)
//   log line time = read time; body = the line; log.file.path, cistern.log.offset (int);
//            cistern.log.truncated, cistern.log.split, cistern.log.no_newline (bool, when set)
//   syslog   time = the message's own timestamp when it had one, else the receive time;
//            body = the MSG part; severity_number (see syslogSeverityNumber), severity_text (the
//            syslog keyword), syslog.facility and syslog.severity (int, when the message had a
//            PRI), syslog.format, syslog.hostname, syslog.appname, syslog.procid, syslog.msgid,
//            syslog.structured_data (RFC 5424, when not "-"), client.address (the peer); empty
//            strings are left out
//   test     body bytes_value = the payload; cistern.kind "test"
// Every record has cistern.input. Log line and syslog bodies are string_value when valid UTF-8
// and bytes_value otherwise (counted), so nothing is replaced or lost. A record whose metadata
// does not decode (or of an unknown kind) is still sent: body bytes_value = the payload, with
// cistern.kind and cistern.meta_error (counted).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/core/frames.h"
#include "cistern/core/result.h"
#include "cistern/transport/outputs.h"

namespace cistern::transport {

// Figures of one encoded request.
struct OtlpEncodeStats {
  std::uint64_t records = 0;  // LogRecords in the request
  // Log line and syslog bodies sent as bytes_value because they were not valid UTF-8.
  std::uint64_t bytes_bodies = 0;
  // Attribute values (paths, syslog header fields) sent as bytes_value for the same reason.
  std::uint64_t bytes_attributes = 0;
  // Records whose metadata did not decode, or of an unknown kind: sent with the payload as
  // bytes_value and cistern.meta_error.
  std::uint64_t malformed = 0;
  // Records a frame announced (record_count) that its body did not yield because it is
  // malformed: not sent. Frames are checksummed in the buffer, so this is a defect or damage
  // that escaped the checksum.
  std::uint64_t unreadable = 0;
};

struct OtlpRequestBody {
  std::string body;  // a serialized ExportLogsServiceRequest
  OtlpEncodeStats stats;
};

// Encodes requests for one sender identity. Immutable after construction: encode() may run on
// several threads at once.
class OtlpLogsEncoder {
 public:
  explicit OtlpLogsEncoder(Identity identity);

  // The request for every record of every frame of `batch`, frame by frame in the batch's
  // order. Never fails: what cannot be decoded is encoded as bytes or counted (see stats). An
  // empty batch gives encodeEmptyRequest().
  [[nodiscard]] OtlpRequestBody encode(const ReadBatch& batch) const;

  // The same request written into `body`, whose contents are replaced. Its size is reused: a
  // string kept from an earlier request of about the same size is overwritten in place, without
  // the zero-filling (and, for fresh memory, the page faults) of growing an empty string. Returns
  // the request's figures.
  OtlpEncodeStats encodeInto(const ReadBatch& batch, std::string& body) const;

  // A request with the resource (identity) and no log records, for probes. Not zero bytes on
  // purpose: some receivers refuse an empty body, and this one tells them who is probing.
  [[nodiscard]] std::string encodeEmptyRequest() const;

  [[nodiscard]] const Identity& identity() const { return identity_; }

 private:
  Identity identity_;
};

// The decoded ExportLogsServiceResponse (partial_success).
struct OtlpExportResponse {
  std::int64_t rejected_log_records = 0;
  std::string error_message;  // may be set with 0 rejections (a warning from the receiver)
};

// Decodes a 2xx response body. An empty body is full success (no partial_success). Unknown
// fields are skipped, as protobuf requires. Errors: kCorrupt naming what is malformed (a
// truncated field, a bad wire type, a negative count). The caller decides what a garbage 2xx
// means; OtlpSender treats it as delivered (the status code is the acknowledgement).
Result<OtlpExportResponse> parseExportResponse(std::string_view body);

// True when `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF).
bool isValidUtf8(std::string_view text) noexcept;

// OTLP SeverityNumber for a syslog severity (0 emerg .. 7 debug), the mapping of the
// OpenTelemetry Collector's syslog parser: emerg FATAL(21), alert ERROR3(19), crit ERROR2(18),
// err ERROR(17), warning WARN(13), notice INFO2(10), info INFO(9), debug DEBUG(5). 0
// (UNSPECIFIED) for anything else (no PRI).
int syslogSeverityNumber(std::uint8_t severity) noexcept;

// The syslog keyword of a severity ("emerg", "alert", "crit", "err", "warning", "notice",
// "info", "debug"), or "" for anything else.
const char* syslogSeverityName(std::uint8_t severity) noexcept;

}  // namespace cistern::transport
