// StatusServer: the local status API, HTTP/1.1 over libmicrohttpd, serving a StatusSource.
//
//   GET /health   200 "ok\n" and the reason when StatusSource::health().ok, else 503 and the
//                 reason (text/plain): what a load balancer or systemd watchdog polls.
//   GET /metrics  every metric in Prometheus text format 0.0.4 (prometheus.h).
//   GET /status   StatusSource::statusJson() (application/json): what `cistern status` shows.
//
// HEAD is answered as GET without the body (HTTP requires both). Any other path is 404; another
// method on one of these paths is 405 with `Allow: GET, HEAD`; a request that carries a body is
// 413, answered before the body is read. Responses carry `Cache-Control: no-store`. Malformed
// requests (400) and oversized request lines or headers (414, 431) are answered by
// libmicrohttpd; an exception from the StatusSource is a 500, logged and counted.
//
// Bounds: at most `max_connections` connections (more are accepted and closed at once), each
// closed after `timeout` without progress, each with `kConnectionMemory` for its request and
// headers. Nothing a client sends makes the server allocate more or wait longer.
//
// Threads: start() launches one libmicrohttpd thread that accepts connections and calls the
// StatusSource; stop() joins it. The StatusSource answers quickly (it reads counters), so one
// thread serves every client in turn without the pool a slow handler would need.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "cistern/core/result.h"
#include "status_source.h"

struct MHD_Daemon;

namespace cistern::agent {

struct StatusServerOptions {
  // HOST:PORT (listen_address.h): an IPv4 literal or a bracketed IPv6 one; port 0 lets the
  // kernel choose (port() tells which). [::] also accepts IPv4 clients, as Linux does by default.
  std::string listen = "127.0.0.1:8780";
  unsigned max_connections = 32;
  std::chrono::seconds timeout{10};  // an idle or stalled connection is closed after this
};

class StatusServer {
 public:
  // Memory for one connection's request line, headers and response headers.
  static constexpr std::size_t kConnectionMemory = std::size_t{32} << 10U;

  // `source` must outlive the server (or its stop()). Nothing listens before start().
  StatusServer(StatusServerOptions options, const StatusSource& source);
  // stop().
  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // Binds the address and starts serving on the server's thread. Once per server, from the
  // thread that owns it. Errors: kConfig when `listen` is not HOST:PORT with an IP literal;
  // kIo, naming the address and the system's reason, when it cannot be bound (in use, not an
  // address of this host) or libmicrohttpd cannot start.
  Status start();

  // Closes the listening socket and every connection, open or mid-request, and joins the
  // server's thread (after the StatusSource call in progress, if any, returns). Idempotent; from
  // the owner's thread, not concurrently with start().
  void stop();

  // The port bound by start() (the kernel's choice when the configured port was 0); 0 before
  // start() succeeded.
  [[nodiscard]] std::uint16_t port() const { return port_; }

  // HOST:PORT actually bound ("127.0.0.1:43817", "[::1]:8780"); empty before start().
  [[nodiscard]] const std::string& address() const { return bound_; }

  struct Counters {
    std::uint64_t requests = 0;       // answered by the server (not those libmicrohttpd refused)
    std::uint64_t source_errors = 0;  // 500s: the StatusSource threw
  };
  // Any thread.
  [[nodiscard]] Counters counters() const;

 private:
  struct Callbacks;  // libmicrohttpd's C callbacks, defined with the implementation

  StatusServerOptions options_;
  const StatusSource& source_;
  MHD_Daemon* daemon_ = nullptr;
  std::uint16_t port_ = 0;
  std::string bound_;
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> source_errors_{0};
  // libmicrohttpd's messages: kept while start() runs (for its Error), logged afterwards.
  std::mutex log_mutex_;
  bool capture_log_ = false;
  std::string start_log_;
};

}  // namespace cistern::agent
