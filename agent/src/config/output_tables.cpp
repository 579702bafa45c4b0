#include "output_tables.h"

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "cistern/core/record.h"

namespace cistern::agent::config {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using transport::BatchOptions;
using transport::DrainOptions;
using transport::FileOutputOptions;
using transport::HeartbeatOptions;
using transport::OtlpOutputOptions;
using transport::OutputOptions;
using transport::ProbeKind;
using transport::RetryOptions;
using transport::SyslogOutputOptions;
using transport::TlsClientOptions;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

std::optional<std::string> checkOutputName(const Value& value) {
  if (value.text.empty()) return "an output name must not be empty";
  if (value.text.size() > kMaxInputNameBytes) {
    return fmt::format("an output name has at most {} bytes; this one has {}", kMaxInputNameBytes,
                       value.text.size());
  }
  return std::nullopt;
}

// "SCHEME://HOST:PORT" with one of `schemes`; HOST may be a [bracketed] IPv6 address.
std::optional<std::string> checkHostPortUrl(const std::string& url,
                                            std::initializer_list<std::string_view> schemes) {
  for (std::string_view scheme : schemes) {
    if (url.rfind(scheme, 0) != 0) continue;
    const std::string_view rest = std::string_view(url).substr(scheme.size());
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
      return fmt::format("{} has no HOST:PORT after the scheme", quoteText(url));
    }
    const std::string_view port = rest.substr(colon + 1);
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535) {
      return fmt::format("{} has an invalid port", quoteText(url));
    }
    return std::nullopt;
  }
  std::string names;
  for (std::string_view scheme : schemes) {
    if (!names.empty()) names += ", ";
    names += scheme;
  }
  return fmt::format("{} must start with {}", quoteText(url), names);
}

std::optional<std::string> checkHttpUrl(const Value& value) {
  const std::string& url = value.text;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.rfind(scheme, 0) != 0) continue;
    const std::string_view rest = std::string_view(url).substr(scheme.size());
    if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
      return fmt::format("{} has no host after the scheme", quoteText(url));
    }
    if (url.find_first_of(" \t\r\n") != std::string::npos) {
      return fmt::format("{} contains white space", quoteText(url));
    }
    return std::nullopt;
  }
  return fmt::format("{} must start with http:// or https://", quoteText(url));
}

std::optional<std::string> checkSyslogUrl(const Value& value) {
  return checkHostPortUrl(value.text, {"tcp://", "tls://", "relp://", "relp+tls://"});
}

std::optional<std::string> checkHeader(const Value& value) {
  const std::string& h = value.text;
  const std::size_t colon = h.find(':');
  if (colon == std::string::npos || colon == 0) {
    return fmt::format("{} must be 'Name: value'", quoteText(h));
  }
  for (std::size_t i = 0; i < colon; ++i) {
    const auto c = static_cast<unsigned char>(h[i]);
    if (c <= 0x20 || c >= 0x7F) {
      return fmt::format("{}: a header name has no spaces or control characters", quoteText(h));
    }
  }
  if (h.find_first_of("\r\n") != std::string::npos) {
    return fmt::format("{} contains a line break", quoteText(h));
  }
  return std::nullopt;
}

std::optional<std::string> checkPath(const Value& value) {
  if (value.text.empty()) return "must not be empty";
  return std::nullopt;
}

Table<TlsClientOptions> tlsTable() {
  Table<TlsClientOptions> table;
  table.add(stringKey("ca_file", &TlsClientOptions::ca_file)
                .byDefault("")
                .describe("CAs (PEM) that sign the receiver's certificate; empty uses the "
                          "system's CAs."));
  table.add(stringKey("cert_file", &TlsClientOptions::cert_file)
                .byDefault("")
                .describe("Client certificate (PEM) for mutual TLS."));
  table.add(stringKey("key_file", &TlsClientOptions::key_file)
                .byDefault("")
                .describe("The client certificate's private key (PEM)."));
  table.add(stringKey("server_name", &TlsClientOptions::server_name)
                .byDefault("")
                .describe("Name the receiver's certificate must carry (and SNI); empty uses the "
                          "endpoint's host."));
  table.add(boolKey("insecure_skip_verify", &TlsClientOptions::insecure_skip_verify)
                .byDefault("false")
                .describe("Accept any certificate from the receiver. For tests only: anyone on "
                          "the path can read and change the data. Logged as a warning."));
  table.check({"cert_file", "key_file"}, "`cert_file` and `key_file` go together.",
              [](const TlsClientOptions& o, const CheckContext&) -> std::optional<std::string> {
                if (o.cert_file.empty() != o.key_file.empty()) {
                  return "give both 'cert_file' and 'key_file' for a client certificate, or "
                         "neither";
                }
                return std::nullopt;
              });
  return table;
}

template <typename T>
void addName(Table<T>& table) {
  table.add(stringKey("name", &T::name)
                .check(checkOutputName, "1 to 255 bytes, unique among the outputs")
                .describe("The output's name; its position in the buffer (which frames it "
                          "acknowledged) is kept under this name, so renaming an output starts "
                          "it again from the oldest frame."));
}

void addBatchKeys(Table<BatchOptions>& table, const char* in_flight_default) {
  table.add(sizeKey("max_batch_bytes", &BatchOptions::max_bytes, 4 * kKiB, 256 * kMiB)
                .byDefault("1MiB")
                .describe("Records per request, in bytes (a request holds whole frames, at "
                          "least one)."));
  table.add(integerKey("max_batch_frames", &BatchOptions::max_frames, 1, 4096)
                .byDefault("64")
                .unit("frames")
                .describe("Frames per request."));
  table.add(integerKey("max_in_flight", &BatchOptions::max_in_flight, 1, 1024)
                .byDefault(in_flight_default)
                .unit("requests")
                .describe("Requests sent and not yet answered; also bounds the memory an output "
                          "holds (`max_in_flight` x `max_batch_bytes`)."));
}

// The batch and retry keys fill T::batch and T::retry but sit at the output's own level.
template <typename T>
Table<T> withBatchKeys(Table<T> table, const char* in_flight_default) {
  Table<BatchOptions> batch;
  addBatchKeys(batch, in_flight_default);
  for (const auto& key : batch.keys()) table.add(nested(&T::batch, key));
  return table;
}

template <typename T>
Table<T> withRetryKeys(Table<T> table) {
  Table<RetryOptions> retry;
  retry.add(durationKey("retry_initial", &RetryOptions::initial_backoff, milliseconds(1),
                        std::chrono::hours(1))
                .byDefault("500ms")
                .describe("Backoff after the first failure; doubled after each further one, "
                          "with jitter, up to `retry_max`."));
  retry.add(
      durationKey("retry_max", &RetryOptions::max_backoff, milliseconds(1), std::chrono::hours(24))
          .byDefault("30s")
          .describe("The longest backoff between attempts. A receiver's Retry-After is "
                    "obeyed even when longer."));
  retry.add(integerKey("failover_after", &RetryOptions::failover_after, 1, 1000)
                .byDefault("3")
                .unit("failures")
                .describe("Consecutive failures on one endpoint before the next one of "
                          "`endpoints` is used (at once for a certificate error)."));
  retry.add(durationKey("failback_interval", &RetryOptions::failback_interval, milliseconds(100),
                        std::chrono::hours(24))
                .byDefault("30s")
                .describe("While not on the first endpoint, how often it is probed to return "
                          "to it."));
  for (const auto& key : retry.keys()) table.add(nested(&T::retry, key));
  return table;
}

std::optional<std::string> checkHealthUrl(const Value& value) {
  if (value.text.empty()) return std::nullopt;
  return checkHttpUrl(value);
}

// `heartbeat:` of an output; `probes` lists the probe kinds its protocol has, the first being the
// default.
Table<HeartbeatOptions> heartbeatTable(std::vector<Choice<ProbeKind>> probes) {
  const std::string default_probe = probes.front().name;
  Table<HeartbeatOptions> table;
  table.add(
      durationKey("interval", &HeartbeatOptions::interval, milliseconds(100), std::chrono::hours(1))
          .byDefault("5s")
          .describe("An output idle this long is probed (a heartbeat; deliveries count as "
                    "heartbeats too), and a DOWN output is probed this often at first."));
  table.add(durationKey("max_interval", &HeartbeatOptions::max_interval, milliseconds(100),
                        std::chrono::hours(24))
                .byDefault("30s")
                .describe("While DOWN, probes back off (doubling, with jitter) up to this. A "
                          "receiver that returns is noticed within the interval in effect."));
  table.add(integerKey("failures", &HeartbeatOptions::failures, 1, 1000)
                .byDefault("3")
                .unit("requests")
                .describe("Consecutive failed requests, with every endpoint tried, that make the "
                          "output DOWN: it then sends nothing and probes until a receiver is "
                          "back. A busy receiver (429, 503) is not a failure here."));
  table.add(enumKey("probe", &HeartbeatOptions::probe, std::move(probes))
                .byDefault(default_probe)
                .describe("How an endpoint is checked without sending records."));
  table.add(stringKey("health_url", &HeartbeatOptions::health_url)
                .byDefault("")
                .check(checkHealthUrl, "an http:// or https:// URL")
                .describe("`probe: http_get`: the URL that must answer 2xx."));
  table.check({"probe", "health_url"}, "`probe: http_get` needs `health_url`.",
              [](const HeartbeatOptions& o, const CheckContext&) -> std::optional<std::string> {
                if ((o.probe == ProbeKind::kHttpGet) == o.health_url.empty()) {
                  return "give 'health_url' with 'probe: http_get', and only then";
                }
                return std::nullopt;
              });
  table.check({"interval", "max_interval"}, "`interval` <= `max_interval`.",
              [](const HeartbeatOptions& o, const CheckContext& c) -> std::optional<std::string> {
                if (o.interval <= o.max_interval) return std::nullopt;
                return fmt::format("{} must not be longer than {}", c.show("interval"),
                                   c.show("max_interval"));
              });
  return table;
}

Table<DrainOptions> drainTable() {
  Table<DrainOptions> table;
  table.add(sizeKey("rate", &DrainOptions::rate, 0, 100 * kGiB)
                .byDefault("0")
                .zeroMeans("the backlog is not limited")
                .describe("Bytes per second of records (their size in the buffer, before "
                          "encoding or compression) the backlog is sent at, once ramped up. "
                          "Live data is not limited."));
  table.add(integerKey("initial_percent", &DrainOptions::initial_percent, 1, 100)
                .byDefault("10")
                .unit("%")
                .describe("The backlog starts at this share of `rate`..."));
  table.add(durationKey("ramp", &DrainOptions::ramp, milliseconds(0), std::chrono::hours(24))
                .byDefault("30s")
                .describe("...and reaches `rate` linearly over this, after a start with a "
                          "backlog or a recovery."));
  table.add(integerKey("live_share_percent", &DrainOptions::live_share_percent, 0, 100)
                .byDefault("50")
                .unit("%")
                .describe("While a backlog exists, live batches hold at most this share of "
                          "`max_in_flight` (at least one, and one is left for the backlog)."));
  table.add(durationKey("latency_target", &DrainOptions::latency_target, milliseconds(0),
                        std::chrono::hours(1))
                .byDefault("2s")
                .describe("A response slower than this is pushback; 0 ignores latency."));
  table.add(integerKey("backoff_percent", &DrainOptions::backoff_percent, 1, 99)
                .byDefault("50")
                .unit("%")
                .describe("Pushback (429, 503, a timeout, a slow response) multiplies the "
                          "backlog rate by this."));
  table.add(integerKey("increase_percent", &DrainOptions::increase_percent, 1, 100)
                .byDefault("5")
                .unit("%")
                .describe("Each run of `clean_responses` clean responses adds this share of "
                          "`rate` back."));
  table.add(integerKey("clean_responses", &DrainOptions::clean_responses, 1, 100000)
                .byDefault("10")
                .unit("responses")
                .describe("Responses in such a run."));
  return table;
}

Table<OtlpOutputOptions> otlpTable() {
  Table<OtlpOutputOptions> table;
  addName(table);
  table.add(stringListKey("endpoints", &OtlpOutputOptions::endpoints)
                .check(checkHttpUrl, "http:// or https:// base URLs")
                .describe("Receivers, in order of preference: base URLs such as "
                          "`https://collector:4318`; `/v1/logs` is appended."));
  table.add(stringListKey("headers", &OtlpOutputOptions::headers)
                .byDefault("[]")
                .check(checkHeader, "`Name: value`")
                .describe("Extra request headers, such as an authorization token."));
  table.add(enumKey("compression", &OtlpOutputOptions::compression,
                    {
                        {"gzip", transport::Compression::kGzip, "request bodies gzipped."},
                        {"none", transport::Compression::kNone, "sent as they are."},
                    })
                .byDefault("gzip")
                .describe("Compression of request bodies."));
  table.add(
      durationKey("timeout", &OtlpOutputOptions::timeout, milliseconds(100), std::chrono::hours(1))
          .byDefault("10s")
          .describe("The longest one request may take, connecting included."));
  table.add(integerKey("max_connections", &OtlpOutputOptions::max_connections, 1, 256)
                .byDefault("8")
                .unit("connections")
                .describe("Keep-alive connections to one receiver."));
  table.add(section("tls", &OtlpOutputOptions::tls, tlsTable(),
                    "TLS for https:// endpoints. The receiver's certificate is always verified "
                    "unless `insecure_skip_verify` says otherwise."));
  table.add(section(
      "heartbeat", &OtlpOutputOptions::heartbeat,
      heartbeatTable(
          {{"export", ProbeKind::kExport, "an empty ExportLogsServiceRequest to the endpoint."},
           {"http_get", ProbeKind::kHttpGet, "GET `health_url`, expecting 2xx."}}),
      "How the output notices that its receiver left and came back."));
  table.add(section("drain", &OtlpOutputOptions::drain, drainTable(),
                    "How the backlog is sent to a receiver that came back."));
  return withRetryKeys(withBatchKeys(std::move(table), "4"));
}

Table<SyslogOutputOptions> syslogTable() {
  Table<SyslogOutputOptions> table;
  addName(table);
  table.add(stringListKey("endpoints", &SyslogOutputOptions::endpoints)
                .check(checkSyslogUrl,
                       "`tcp://HOST:PORT`, `tls://HOST:PORT`, `relp://HOST:PORT` or "
                       "`relp+tls://HOST:PORT`")
                .describe("Receivers, in order of preference. RFC 5424 messages, octet-counted "
                          "over TCP or TLS (RFC 5425), or over RELP, which acknowledges each "
                          "message."));
  table.add(durationKey("connect_timeout", &SyslogOutputOptions::connect_timeout, milliseconds(100),
                        std::chrono::minutes(10))
                .byDefault("10s")
                .describe("The longest connecting (TLS handshake included) may take."));
  table.add(durationKey("ack_timeout", &SyslogOutputOptions::ack_timeout, milliseconds(100),
                        std::chrono::hours(1))
                .byDefault("30s")
                .describe("A batch the receiver has not acknowledged in this time fails and the "
                          "connection is reset (RELP: the receiver's answers; TCP, TLS: its TCP "
                          "acknowledgements)."));
  table.add(sizeKey("max_message_bytes", &SyslogOutputOptions::max_message_bytes, 480, 16 * kMiB)
                .byDefault("64KiB")
                .describe("Longer messages are truncated to this and counted."));
  table.add(section("tls", &SyslogOutputOptions::tls, tlsTable(),
                    "TLS for tls:// and relp+tls:// endpoints."));
  table.add(section("heartbeat", &SyslogOutputOptions::heartbeat,
                    heartbeatTable({{"connect", ProbeKind::kConnect,
                                     "a TCP connect, the TLS handshake and RELP's open."}}),
                    "How the output notices that its receiver left and came back."));
  table.add(section("drain", &SyslogOutputOptions::drain, drainTable(),
                    "How the backlog is sent to a receiver that came back."));
  return withRetryKeys(withBatchKeys(std::move(table), "8"));
}

Table<FileOutputOptions> fileTable() {
  Table<FileOutputOptions> table;
  addName(table);
  table.add(stringKey("path", &FileOutputOptions::path)
                .check(checkPath, "a directory")
                .describe("Directory of the archive, created if missing: packets in "
                          "`NAME.N.pcapng`, other records in `NAME.N.ndjson`."));
  table.add(sizeKey("max_file_bytes", &FileOutputOptions::max_file_bytes, 64 * kKiB, 1024 * kGiB)
                .byDefault("100MiB")
                .describe("A file is closed and the next one opened once it holds this much (a "
                          "batch is never split between files, so a file may exceed this by "
                          "up to `max_batch_bytes`)."));
  table.add(integerKey("max_files", &FileOutputOptions::max_files, 1, 100000)
                .byDefault("10")
                .unit("files")
                .describe("Files kept per format; the oldest are deleted."));
  return withBatchKeys(std::move(table), "4");
}

}  // namespace

std::vector<Alternative<OutputOptions>> outputAlternatives() {
  return {
      alternative<OutputOptions>("otlp", otlpTable(), "OTLP/HTTP logs (binary protobuf)."),
      alternative<OutputOptions>("syslog", syslogTable(), "RFC 5424 syslog over TCP, TLS or RELP."),
      alternative<OutputOptions>("file", fileTable(),
                                 "A local archive: pcapng for packets, NDJSON for logs."),
  };
}

}  // namespace cistern::agent::config

namespace cistern::agent::config {

Table<heartbeat::OpampOptions> opampTable() {
  using heartbeat::OpampOptions;
  Table<OpampOptions> table;
  table.add(stringKey("endpoint", &OpampOptions::endpoint)
                .byDefault("")
                .check(checkHealthUrl, "an http:// or https:// URL")
                .describe("The OpAMP server's URL (`https://fleet.example:4320/v1/opamp`); empty "
                          "disables the client. Local only: a remote config cannot change it."));
  table.add(stringListKey("headers", &OpampOptions::headers)
                .byDefault("[]")
                .check(checkHeader, "`Name: value`")
                .describe("Extra request headers, such as an authorization token."));
  table.add(durationKey("heartbeat_interval", &OpampOptions::heartbeat_interval, milliseconds(100),
                        std::chrono::hours(24))
                .byDefault("30s")
                .describe("How often the agent reports when nothing changed; the server's "
                          "connection settings override it."));
  table.add(durationKey("max_backoff", &OpampOptions::max_backoff, milliseconds(100),
                        std::chrono::hours(24))
                .byDefault("5m")
                .describe("Server unreachable: retries back off (doubling, jittered) up to this. "
                          "Capture and delivery go on regardless."));
  table.add(durationKey("timeout", &OpampOptions::timeout, milliseconds(100), std::chrono::hours(1))
                .byDefault("10s")
                .describe("The longest one request may take."));
  table.add(stringKey("config_public_key_file", &OpampOptions::config_public_key_file)
                .byDefault("")
                .describe("PEM file of an ECDSA P-256 public key: when set, a remote config must "
                          "be signed with its private key, or it is refused."));
  table.add(section("tls", &OpampOptions::tls, tlsTable(), "TLS for an https:// endpoint."));
  return table;
}

Table<StatusSection> statusTable() {
  Table<StatusSection> table;
  table.add(stringKey("listen", &StatusSection::listen)
                .byDefault("127.0.0.1:8780")
                .describe("`HOST:PORT` of the local status API (`/health`, `/metrics`, "
                          "`/status`); empty disables it. Loopback by default: it is not "
                          "authenticated."));
  return table;
}

}  // namespace cistern::agent::config
