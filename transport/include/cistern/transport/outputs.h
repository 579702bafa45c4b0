// Outputs: what delivers the buffered records to receivers, and their options.
//
// Each output reads the buffer through its own cursor (named after the output), groups whole
// frames into batches, sends them to the first healthy endpoint of its list, and acknowledges
// frames in the buffer only once the receiver confirmed them (or refused them for good, which is
// counted). Transient failures are retried with jittered exponential backoff, honouring the
// receiver's Retry-After; after `failover_after` consecutive failures the output moves to the next
// endpoint and, while not on the first, probes it every `failback_interval` to return to it.
//
// Every output runs on the agent's event loop (platform::EventLoop); a dead output never blocks
// another, because each has its own cursor and its own batches in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/frames.h"
#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/tls.h"

namespace cistern::transport {

// How an output groups frames into requests and how many it keeps in flight.
struct BatchOptions {
  std::size_t max_bytes = 1U << 20U;  // decoded record bytes per request (at least one frame)
  std::size_t max_frames = 64;        // frames per request
  std::size_t max_in_flight = 4;      // requests sent and not yet answered

  bool operator==(const BatchOptions&) const = default;
};

struct RetryOptions {
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  // Consecutive failures on one endpoint before moving to the next one of the list.
  std::uint32_t failover_after = 3;
  // While not on the first endpoint: how often it is probed to fail back to it.
  std::chrono::milliseconds failback_interval{30000};

  bool operator==(const RetryOptions&) const = default;
};

// How an output checks that an endpoint answers, without sending records: while it is DOWN, and
// when it has been idle for heartbeat.interval.
enum class ProbeKind {
  kExport,   // otlp: an empty ExportLogsServiceRequest (the default)
  kHttpGet,  // otlp: GET health_url, expecting 200 (load balancers, Cribl-style leaders)
  kConnect,  // syslog: a TCP connect, the TLS handshake, and RELP's open (the only kind)
};

struct HeartbeatOptions {
  std::chrono::milliseconds interval{5000};       // idle and DOWN outputs are probed this often
  std::chrono::milliseconds max_interval{30000};  // DOWN: probes back off up to this
  std::uint32_t failures = 3;  // consecutive failed requests (all endpoints tried) -> DOWN
  ProbeKind probe = ProbeKind::kExport;
  std::string health_url;  // kHttpGet

  bool operator==(const HeartbeatOptions&) const = default;
};

// The backlog's drain (see transport/src/drain_control.h). Rates count record bytes: the
// records' size as stored in the buffer, before OTLP encoding or gzip.
struct DrainOptions {
  std::uint64_t rate = 0;                 // bytes per second; 0: the backlog is not limited
  std::uint32_t initial_percent = 10;     // the backlog starts at this share of `rate`...
  std::chrono::milliseconds ramp{30000};  // ...and reaches it linearly over this
  std::uint32_t live_share_percent = 50;  // of max_in_flight, for live data while a backlog exists
  std::chrono::milliseconds latency_target{2000};  // slower responses are pushback
  std::uint32_t backoff_percent = 50;              // pushback multiplies the backlog rate by this
  std::uint32_t increase_percent = 5;  // each run of clean responses adds this share of `rate`
  std::uint32_t clean_responses = 10;  // responses in such a run

  bool operator==(const DrainOptions&) const = default;
};

enum class Compression { kNone, kGzip };

// `type: otlp`: OTLP/HTTP logs, binary protobuf, POST {endpoint}/v1/logs.
struct OtlpOutputOptions {
  std::string name;
  // Base URLs, http:// or https:// ("https://proc.example:4318"); "/v1/logs" is appended.
  std::vector<std::string> endpoints;
  std::vector<std::string> headers;  // extra "Name: value" request headers (auth tokens)
  Compression compression = Compression::kGzip;
  TlsClientOptions tls;
  std::chrono::milliseconds timeout{10000};  // one request, connection included
  std::size_t max_connections = 8;
  BatchOptions batch;
  RetryOptions retry;
  HeartbeatOptions heartbeat;
  DrainOptions drain;

  bool operator==(const OtlpOutputOptions&) const = default;
};

// `type: syslog`: RFC 5424 messages, octet-counted (RFC 6587), over tcp://, tls:// (RFC 5425),
// relp:// or relp+tls:// (acknowledged by the receiver).
struct SyslogOutputOptions {
  std::string name;
  std::vector<std::string> endpoints;  // "tls://siem.example:6514", "relp://10.0.0.5:2514"
  TlsClientOptions tls;
  std::chrono::milliseconds connect_timeout{10000};
  // A message the receiver has not acknowledged within this time fails its batch (RELP; for
  // TCP and TLS: bytes the receiver's TCP stack has not acknowledged).
  std::chrono::milliseconds ack_timeout{30000};
  std::size_t max_message_bytes = 64U << 10U;  // longer messages are truncated and counted
  BatchOptions batch;
  RetryOptions retry;
  HeartbeatOptions heartbeat{std::chrono::milliseconds(5000),
                             std::chrono::milliseconds(30000),
                             3,
                             ProbeKind::kConnect,
                             {}};
  DrainOptions drain;

  bool operator==(const SyslogOutputOptions&) const = default;
};

// `type: file`: a local archive. Packets go to pcapng files, log lines and syslog messages to
// NDJSON files, in `path`, rotated by size and count; frames are acknowledged once the file
// holding them is synced to disk.
struct FileOutputOptions {
  std::string name;
  std::string path;  // directory, created if missing
  // A file is closed and a new one opened past this, between batches (a file may exceed it by
  // up to one batch).
  std::uint64_t max_file_bytes = 100U << 20U;
  std::uint32_t max_files = 10;  // per format; the oldest are deleted
  BatchOptions batch;

  bool operator==(const FileOutputOptions&) const = default;
};

using OutputOptions = std::variant<OtlpOutputOptions, SyslogOutputOptions, FileOutputOptions>;

// The entry's `name` and `type` ("otlp", "syslog", "file").
const std::string& outputName(const OutputOptions& output);
const char* outputType(const OutputOptions& output);

// Who is sending: carried in every request so a receiver can tell sensors apart and, with the
// frame ids, drop duplicates.
struct Identity {
  std::string agent_id;
  std::string host_name;
  std::string version;
};

struct OutputStatus {
  std::string name;
  std::string type;
  std::string state;       // "healthy", "down", "recovering"
  std::string endpoint;    // the endpoint in use
  std::string last_error;  // empty when the last attempt succeeded
  // In a stable order: records_sent, bytes_sent, records_acked, frames_acked, records_rejected,
  // records_skipped, records_retried, batches_in_flight, records_in_flight, requests_ok,
  // requests_failed, failovers, failbacks, read_errors, endpoint_index, state (0 healthy, 1 down,
  // 2 recovering), state_changes, down_ms, probes, probes_failed, drain_rate (bytes/s, 0 when
  // no backlog is draining or it is not limited), live_bytes_sent, backlog_bytes_sent,
  // pushbacks; then the protocol's own (summed over the endpoints).
  std::vector<Counter> counters;
};

// Every configured output, on one event loop.
class Transport {
 public:
  // Gives the cursor of the output with this name (created when new). Called from create().
  using CursorFor = std::function<Result<FrameCursor*>(const std::string& output_name)>;

  // Checks every output's options (URLs, TLS files) and builds them; nothing is sent before
  // start(). Every problem is reported in one Error (kConfig), one line per output, each naming
  // it. Not from the loop thread; `loop` must outlive the Transport.
  static Result<std::unique_ptr<Transport>> create(platform::EventLoop& loop,
                                                   const std::vector<OutputOptions>& outputs,
                                                   const CursorFor& cursors,
                                                   const Identity& identity);

  virtual ~Transport() = default;

  // Starts every output: each reads its backlog and sends. Not from the loop thread.
  virtual void start() = 0;

  // New frames were committed: outputs read them. Any thread; cheap (for the ring's commit
  // listener, which runs on the writer thread).
  virtual void notifyCommitted() = 0;

  // Replaces the outputs with `outputs` (a reload): an output whose options are unchanged keeps
  // running, with its batches in flight and its connections; a removed or changed one stops
  // (after up to 2 s for what it has in flight; the rest stays unacknowledged and is sent again
  // by its successor on the same cursor, or at a later start); new and changed ones start.
  // Every problem of the new outputs is reported at once (kConfig) and then nothing changes.
  // Not from the loop thread.
  virtual Status update(const std::vector<OutputOptions>& outputs, const CursorFor& cursors) = 0;

  // Stops reading, waits up to `grace` for the batches in flight, abandons the rest (they stay
  // unacknowledged in the buffer and are sent again at the next start), and closes connections.
  // Idempotent; not from the loop thread.
  virtual void stop(std::chrono::milliseconds grace) = 0;

  // Every output's state and counters. Any thread.
  [[nodiscard]] virtual std::vector<OutputStatus> status() const = 0;
};

}  // namespace cistern::transport
