// SyslogSender: the syslog output's Sender for one endpoint, chosen by its scheme:
//
//   tcp://host:port       RFC 5424 messages, octet-counted (RFC 6587: "LEN SP MSG")
//   tls://host:port       the same over TLS (RFC 5425)
//   relp://host:port      RELP (librelp's protocol, rsyslog's imrelp): every message answered
//   relp+tls://host:port  RELP over TLS
//
// Records become messages as syslog_format.h describes; packets are not carried (counted in
// SendResult::skipped_records), a record whose metadata does not decode is counted in
// rejected_records, and messages longer than max_message_bytes are cut (counters()).
//
// ---- What "delivered" means, what can be lost, what can be repeated ----
//
// tcp:// and tls:// have no acknowledgement from the receiving program. A batch completes
// kDelivered once every byte of it was acknowledged by the receiver's TCP stack: the bytes
// handed to the socket minus its unacknowledged bytes (ioctl SIOCOUTQ) reach the batch's end
// offset (for TLS, counted in ciphertext bytes). The sender polls this every 10 ms while batches
// wait and completes them in send order.
//   LOST (reported kDelivered, acknowledged in the buffer, never resent): bytes the receiver's
//   kernel acknowledged but the receiving program never read or never stored: the receiver
//   killed or crashing (rsyslog killed, or stopped while its socket buffer still holds unread
//   bytes, whose kernel then discards them with a reset), the receiver's host losing power, or
//   a receiver that reads and then drops (its own queue full). At most the receiver's socket
//   receive buffer plus what the program held in memory, per connection. Where that matters, use
//   RELP.
//   REPEATED: when the connection breaks (reset, closed by the receiver, a write error, or a
//   batch not acknowledged within ack_timeout), every batch not yet completed fails with kRetry
//   and is sent again whole on a later connection. The receiver may already hold any prefix of
//   those batches: all the bytes its TCP stack had acknowledged since the last poll, and bytes
//   it took but had not acknowledged yet. A message cut by the break arrives as an incomplete
//   frame, which receivers discard at the end of the connection. Before failing the batches the
//   sender polls once more, so batches the receiver fully acknowledged complete as delivered.
//
// relp:// and relp+tls:// acknowledge every message: a "syslog" command answered "rsp 200"
// (rsyslog answers once the message is in its main queue). A batch completes kDelivered when
// every message of it was answered.
//   LOST: only what the receiver acknowledged and then lost itself (rsyslog's in-memory queue
//   when it crashes, unless it runs a disk-assisted queue).
//   REPEATED: when the connection breaks (or a message is not answered within ack_timeout) the
//   batches not yet completed fail with kRetry; messages sent and not answered are sent again
//   (the receiver may have taken them and its answer been lost). Messages of such a batch that
//   were already answered are not sent again when the dispatcher resends the batch to this
//   sender: it remembers, for the last kRememberedBatches failed batches (by seq, frame range
//   and record count), which messages were answered. A batch sent to another endpoint
//   (failover) is repeated whole.
//   REFUSED: an answer other than 200 counts its message in rejected_records, with the
//   receiver's status and text in SendResult::error; the message is acknowledged and not
//   resent, since a receiver that refuses a message would refuse it every time and stall the
//   output. The batch completes kDelivered, or kRejected when the receiver refused every
//   message of it.
//
// Connections: one per sender, opened by the first send() (and, after a failure, by the next
// one), kept open between batches. Batches are written in order and pipelined (the dispatcher
// keeps at most maxInFlight() = batch.max_in_flight outstanding); RELP keeps at most
// kRelpWindow messages unanswered. connect_timeout covers resolution, TCP connect, the TLS
// handshake and RELP's "open".
//
// Threads: the event loop's thread only (send, probe, close and every callback), as sender.h
// requires. makeSyslogSender() and loadSyslogTlsConfig() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/outputs.h"
#include "sender.h"
#include "tls_client.h"

namespace cistern::transport {

// Unanswered RELP messages per connection.
inline constexpr std::size_t kRelpWindow = 1024;
// Failed batches whose answered RELP messages a sender remembers.
inline constexpr std::size_t kRememberedBatches = 256;

enum class SyslogProtocol { kTcp, kTls, kRelp, kRelpTls };

struct SyslogEndpoint {
  SyslogProtocol protocol = SyslogProtocol::kTcp;
  std::string host;  // name or IP literal, IPv6 without brackets
  std::uint16_t port = 0;

  [[nodiscard]] bool tls() const noexcept {
    return protocol == SyslogProtocol::kTls || protocol == SyslogProtocol::kRelpTls;
  }
  [[nodiscard]] bool relp() const noexcept {
    return protocol == SyslogProtocol::kRelp || protocol == SyslogProtocol::kRelpTls;
  }
};

// Parses "scheme://host:port" (IPv6 hosts in brackets; the port is required, 1..65535; no path).
// Errors: kConfig with a message naming the endpoint (the caller adds the output's name).
Result<SyslogEndpoint> parseSyslogEndpoint(std::string_view endpoint);

// Loads the output's TLS material once, to be shared by the senders of all its endpoints;
// nullptr when none of its endpoints uses TLS. Any thread. Errors: kConfig naming the output and
// the file, with the system's or mbedTLS's text.
Result<std::shared_ptr<const TlsClientConfig>> loadSyslogTlsConfig(
    const SyslogOutputOptions& options);

class SyslogSender : public Sender {
 public:
  // In a stable order: messages_truncated (cut to max_message_bytes), records_corrupt (metadata
  // that did not decode), connections_opened, connections_failed. Loop thread.
  [[nodiscard]] std::vector<Counter> counters() const override = 0;
};

// A sender for `endpoint`, one of `options.endpoints`. `tls` comes from loadSyslogTlsConfig()
// (loaded here when it is null and the endpoint needs it). Nothing is connected before the first
// send() or probe(). Any thread; `loop` must outlive the sender. Errors: kConfig naming the
// output and the endpoint (unknown scheme, bad host or port, unreadable TLS files).
Result<std::unique_ptr<SyslogSender>> makeSyslogSender(platform::EventLoop& loop,
                                                       const std::string& endpoint,
                                                       const SyslogOutputOptions& options,
                                                       const Identity& identity,
                                                       std::shared_ptr<const TlsClientConfig> tls);

}  // namespace cistern::transport
