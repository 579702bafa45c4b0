// SyslogSource: syslog messages received over UDP, TCP or TLS.
//
// `listen` is udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (IPv6 hosts in brackets; port
// 0 picks a free port, see localAddress()). TCP and TLS streams are framed by octet counting
// (RFC 6587 3.4.1, "LEN SP MSG") or by LF, detected per message. TLS runs on mbedTLS with the
// configured certificate and key; with a client CA, clients must present a certificate it signed.
//
// Each message becomes one RecordKind::kSyslog record whose payload is the message as received
// and whose SyslogMeta holds what RFC 5424 or RFC 3164 parsing found (timestamp, host, app,
// procid, msgid, facility, severity, where MSG starts) and the peer's address. A message that
// parses as neither is kept raw (format kRaw) and counted, never dropped.
//
// Counters: messages_received, messages_stored, messages_unparsed (kept raw),
// messages_truncated (longer than max_message_bytes: the first max_message_bytes are kept),
// messages_dropped_agent (UDP: the sink had no room; TCP/TLS apply backpressure instead),
// framing_errors, connections_accepted, connections_active, connections_rejected (over
// max_connections), tls_handshake_failures, bytes_received.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "cistern/capture/source.h"
#include "cistern/core/sink.h"

namespace cistern::capture {

struct SyslogOptions {
  std::string name;    // the input's name, 1..255 bytes
  std::string listen;  // udp://HOST:PORT | tcp://HOST:PORT | tls://HOST:PORT
  std::uint64_t max_message_bytes = 64U << 10U;
  std::uint64_t max_connections = 256;
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes(5);  // TCP/TLS; 0 = never
  std::string tls_cert_file;       // tls: the server's certificate chain (PEM); required for tls
  std::string tls_key_file;        // tls: its private key (PEM); required for tls
  std::string tls_client_ca_file;  // tls: when set, client certificates are required

  bool operator==(const SyslogOptions&) const = default;
};

// Checks the options, loads the TLS material and binds the socket, so a bad address, a port in
// use or an unreadable certificate surfaces here. Errors: kConfig, kIo; messages start with
// "input 'NAME': ".
Result<std::unique_ptr<Source>> makeSyslogSource(const SyslogOptions& options, RecordSink& sink);

}  // namespace cistern::capture
