// StreamConnection: one TCP client connection on the event loop, optionally with TLS, for the
// stream outputs (syslog over TCP, TLS and RELP).
//
// It resolves the host with uv_getaddrinfo (on libuv's thread pool, never blocking the loop),
// tries each address in turn, runs the TLS handshake (TlsClientSession over memory buffers; libuv
// owns the socket), writes in order and hands every byte read (decrypted) to its handler. The
// connect timeout covers resolution, connection and handshake together.
//
// Acknowledgement by the peer's TCP stack: every byte handed to write() gets a wire offset
// (ciphertext bytes for TLS). wireBytesAcked() is what the peer's kernel acknowledged: bytes
// that reached our kernel (queued minus libuv's own write queue) minus the socket's unsent and
// unacknowledged bytes (ioctl SIOCOUTQ). A byte acknowledged that way reached the receiver's
// kernel, not necessarily the receiver's process.
//
// Lifetime: libuv handles and requests live in a separate block freed only after their close
// callbacks ran, so a StreamConnection may be destroyed at any time on the loop thread (even
// inside one of its handler's callbacks); its destructor closes it. After close() the handler
// is never called again. Loop thread only.
//
// SIGPIPE: libuv writes with write(2), so a write to a connection the peer closed raises
// SIGPIPE. The first StreamConnection made on a thread blocks SIGPIPE on that thread (the loop's)
// so that the write fails with EPIPE instead of ending the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cistern/core/result.h"
#include "tls_client.h"

namespace cistern::transport {

struct ConnectionError {
  std::string message;        // names the endpoint and gives libuv's or mbedTLS's text
  bool config_error = false;  // the server's certificate was refused: retrying will not help
};

class StreamConnection {
 public:
  struct Options {
    std::string host;  // name or IP literal (IPv6 without brackets)
    std::uint16_t port = 0;
    std::string endpoint;  // as configured, for messages ("tls://siem:6514")
    std::chrono::milliseconds connect_timeout{10000};
    std::shared_ptr<const TlsClientConfig> tls;  // null: plain TCP
  };

  class Handler {
   public:
    virtual ~Handler() = default;
    // Connected (and, with TLS, the handshake completed): write() may be called.
    virtual void onConnected() = 0;
    // Bytes from the peer (plaintext with TLS).
    virtual void onData(std::string_view data) = 0;
    // The connection failed or ended (resolution, connect, timeout, TLS, read or write error,
    // closed by the peer). Called at most once; nothing is read or written afterwards and the
    // owner closes (or destroys) the connection.
    virtual void onFailed(const ConnectionError& error) = 0;
  };

  // Nothing happens before connect(). `uv_loop` is the loop's uv_loop_t*.
  StreamConnection(void* uv_loop, Options options, Handler& handler);
  ~StreamConnection();
  StreamConnection(const StreamConnection&) = delete;
  StreamConnection& operator=(const StreamConnection&) = delete;

  // Starts resolving and connecting; the outcome arrives as onConnected() or onFailed(), never
  // inside this call. Call once.
  void connect();

  // Sends `data` after everything written before, once connected (before onConnected() it is
  // a programming error). Returns the wire offset just past it: the total bytes (ciphertext
  // with TLS) handed to the connection so far. A failure is reported through onFailed(), never
  // inside this call.
  std::uint64_t write(std::string_view data);

  // The total wire bytes handed to write() so far.
  [[nodiscard]] std::uint64_t wireBytesWritten() const noexcept;

  // Wire bytes the peer's TCP stack acknowledged (see the file comment). Errors: kIo when the
  // socket cannot be asked (not connected, already closed), with the system's text.
  [[nodiscard]] Result<std::uint64_t> wireBytesAcked() const;

  [[nodiscard]] bool connected() const noexcept;

  // Closes the connection: `last_words` (plaintext, e.g. a RELP "close") and, with TLS, a
  // close_notify are sent first when they can go to the kernel at once (nothing else is
  // queued); nothing waits for the peer. `closed` runs on the loop thread once every handle is
  // freed. Later calls only add nothing; the destructor calls close() when it was not called.
  void close(std::function<void()> closed = {}, std::string_view last_words = {});

  struct Core;

 private:
  Core* core_;  // freed by itself once closed and its handles are gone
};

// A uv_timer_t whose memory outlives the owner until libuv's close callback: stop it, restart
// it, destroy it whenever. Loop thread only.
class UvTimer {
 public:
  explicit UvTimer(void* uv_loop);
  ~UvTimer();
  UvTimer(const UvTimer&) = delete;
  UvTimer& operator=(const UvTimer&) = delete;

  // Calls `fn` after `delay` and then every `repeat` (zero: once). Replaces an earlier start.
  void start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
             std::function<void()> fn);
  void stop();
  [[nodiscard]] bool active() const noexcept;
  // Closes the timer; `closed` runs once libuv released it. The destructor closes it too.
  void close(std::function<void()> closed = {});

  struct Handle;

 private:
  Handle* handle_;
};

}  // namespace cistern::transport
