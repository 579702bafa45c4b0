// SyslogSource: one thread running a libuv loop that owns the listening socket and every
// connection. Everything below the "loop thread" markers runs on that thread only; other threads
// reach it through stop_async_ (stop) and the atomic counters.
//
// Choices the header leaves open:
// - An empty message (a blank line, a datagram of only LF/CR/NUL) is ignored, not counted.
// - Trailing LF, CR and NUL bytes are removed from every message (UDP, octet-counted and
//   LF-framed alike): they are terminators senders add, not content.
// - A connection that ends (peer closed, read error, idle timeout) inside a frame loses that
//   partial frame: it is counted in framing_errors and not stored, since a half message with no
//   way to tell it is half would mislead whoever reads it. The tail of a frame whose first
//   max_message_bytes were already stored is not counted again.
// - A TLS connection that ends or times out before its handshake completes counts as a
//   handshake failure.
// - For TLS, bytes_received counts decrypted bytes (what was framed), not ciphertext.
// - stop() delivers what was already read; messages a full sink still refuses after
//   kStopGraceMs are counted in messages_dropped_agent.
#include "cistern/capture/syslog_source.h"

#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <mutex>
#include <span>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cistern/core/record.h"
#include "cistern/core/record_meta.h"
#include "cistern/platform/clock.h"
#include "input_error.h"
#include "syslog_parse.h"
#include "syslog_tls.h"

namespace cistern::capture {
namespace {

// Records stay well below kMaxRecordBytes with the input name and metadata added.
constexpr std::uint64_t kMaxMessageBytesLimit = 32ULL << 20U;
constexpr std::size_t kReadBufferBytes = std::size_t{64} << 10U;
// An append carries at most this much, so a fast sender cannot make one append huge.
constexpr std::size_t kBatchMaxMessages = 256;
constexpr std::size_t kBatchMaxBytes = 1U << 20U;
// How soon a connection paused by a full sink tries again.
constexpr std::uint64_t kRetryMs = 20;
// How long stop() keeps offering already-read messages to a full sink (Source::stop promises
// to return within about a second).
constexpr std::uint64_t kStopGraceMs = 750;
constexpr int kListenBacklog = 128;
constexpr auto kLogInterval = std::chrono::seconds(10);

enum class Transport { kUdp, kTcp, kTls };

const char* schemeOf(Transport t) {
  switch (t) {
    case Transport::kUdp:
      return "udp";
    case Transport::kTcp:
      return "tcp";
    case Transport::kTls:
      return "tls";
  }
  return "?";
}

std::shared_ptr<spdlog::logger> logger() {
  static const std::shared_ptr<spdlog::logger> instance = [] {
    if (auto existing = spdlog::get("capture")) return existing;
    try {
      return spdlog::stderr_color_mt("capture");
    } catch (const spdlog::spdlog_ex&) {
      // Another input registered it in the meantime.
      auto existing = spdlog::get("capture");
      return existing ? existing : spdlog::default_logger();
    }
  }();
  return instance;
}

// At most one message per interval for one kind of event: a flood of bad input must not flood
// the log. Loop thread only.
class LogLimiter {
 public:
  bool allow() {
    const auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < kLogInterval) return false;
    logged_ = true;
    last_ = now;
    return true;
  }

 private:
  bool logged_ = false;
  std::chrono::steady_clock::time_point last_;
};

std::string uvError(int rc) { return fmt::format("{} ({})", uv_strerror(rc), uv_err_name(rc)); }

std::string formatAddress(Transport t, const sockaddr* sa) {
  std::array<char, 64> host{};
  std::array<unsigned char, 2> port{};  // network byte order
  if (sa->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    uv_ip4_name(&in, host.data(), host.size());
    std::memcpy(port.data(), &in.sin_port, port.size());
    return fmt::format("{}://{}:{}", schemeOf(t), host.data(), port[0] * 256 + port[1]);
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    uv_ip6_name(&in6, host.data(), host.size());
    std::memcpy(port.data(), &in6.sin6_port, port.size());
    return fmt::format("{}://[{}]:{}", schemeOf(t), host.data(), port[0] * 256 + port[1]);
  }
  return fmt::format("{}://(family {})", schemeOf(t), sa->sa_family);
}

struct ListenAddress {
  Transport transport = Transport::kTcp;
  sockaddr_storage addr{};
};

// udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT; IPv6 hosts in brackets. Errors are plain
// messages; the caller adds the input's name.
Result<ListenAddress> parseListen(std::string_view listen) {
  ListenAddress out;
  const auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kConfig, fmt::format("listen '{}': {}", listen, why));
  };
  const std::size_t sep = listen.find("://");
  if (sep == std::string_view::npos) return bad("expected udp://, tcp:// or tls://HOST:PORT");
  const std::string_view scheme = listen.substr(0, sep);
  if (scheme == "udp") {
    out.transport = Transport::kUdp;
  } else if (scheme == "tcp") {
    out.transport = Transport::kTcp;
  } else if (scheme == "tls") {
    out.transport = Transport::kTls;
  } else {
    return bad("the scheme must be udp, tcp or tls");
  }
  const std::string_view rest = listen.substr(sep + 3);
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return bad("expected [IPV6]:PORT");
    }
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
    bracketed = true;
  } else {
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("has no port");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("IPv6 hosts go in brackets");
  }
  if (host.empty()) return bad("has no host (use 0.0.0.0 or [::] for every address)");
  unsigned port_value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_value);
  if (port.empty() || port.size() > 5 || ec != std::errc() || end != port.data() + port.size() ||
      port_value > 65535) {
    return bad("the port must be a number from 0 to 65535");
  }

  addrinfo hints{};
  hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = out.transport == Transport::kUdp ? SOCK_DGRAM : SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0);
  addrinfo* found = nullptr;
  const std::string host_str(host);
  const std::string port_str(port);
  if (const int rc = ::getaddrinfo(host_str.c_str(), port_str.c_str(), &hints, &found); rc != 0) {
    return bad(fmt::format("cannot resolve '{}': {}", host, ::gai_strerror(rc)));
  }
  std::memcpy(&out.addr, found->ai_addr, std::min<std::size_t>(found->ai_addrlen, sizeof out.addr));
  ::freeaddrinfo(found);
  return out;
}

struct PendingMessage {
  std::size_t offset = 0;  // in the connection's framer
  std::size_t size = 0;
  std::uint64_t received_ns = 0;
  std::vector<std::byte> meta;
};

struct WriteRequest {
  uv_write_t req{};
  std::string data;
};

std::span<const std::byte> bytesOf(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

class SyslogSource;

// A TCP or TLS connection. Owned by the loop: freed in the close callback of the last of its
// two handles.
struct Connection {
  Connection(SyslogSource* s, std::size_t max_message_bytes)
      : source(s), framer(max_message_bytes) {}

  SyslogSource* source;
  uv_tcp_t tcp{};
  uv_timer_t timer{};  // idle timeout while reading, retry while paused by a full sink
  int open_handles = 0;
  bool admitted = false;  // counted in connections_active
  bool closing = false;
  bool reading = false;
  bool paused = false;  // a full sink refused the batch; reading stopped, timer retries
  bool eof = false;     // no more input will come (peer closed, read error, close_notify)
  bool failed = false;  // framing error: close once the batch is delivered
  bool tls_ended = false;
  std::string peer;
  StreamFramer framer;
  // Messages framed but not yet accepted by the sink: entries [0, batch_count) of `batch`,
  // whose storage is reused.
  std::vector<PendingMessage> batch;
  std::size_t batch_count = 0;
  std::size_t batch_bytes = 0;
  std::unique_ptr<TlsSession> tls;

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
};

class SyslogSource final : public Source {
 public:
  SyslogSource(SyslogOptions options, RecordSink& sink)
      : options_(std::move(options)), sink_(sink) {}
  ~SyslogSource() override { stop(); }
  SyslogSource(const SyslogSource&) = delete;
  SyslogSource& operator=(const SyslogSource&) = delete;

  Status open();

  [[nodiscard]] const std::string& name() const override { return options_.name; }
  Status start() override;
  void stop() override;
  [[nodiscard]] bool finished() const override { return false; }
  [[nodiscard]] std::vector<Counter> counters() const override;
  [[nodiscard]] std::string localAddress() const override { return local_address_; }

 private:
  enum class Delivery { kDelivered, kFull, kDropped };

  Status checkOptions();
  Status bindSocket(const ListenAddress& listen);

  // ---- loop thread ----
  static void onStopAsync(uv_async_t* handle);
  static void onGraceTimer(uv_timer_t* handle);
  static void onAlloc(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buf);
  static void onUdpRecv(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                        unsigned flags);
  static void onConnection(uv_stream_t* server, int status);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onConnectionTimer(uv_timer_t* handle);
  static void onConnectionHandleClosed(uv_handle_t* handle);
  static void onWriteDone(uv_write_t* req, int status);

  void beginStop();
  void closeGraceTimer();
  void receiveDatagram(std::string_view datagram, const sockaddr* addr, bool partial);
  void accept(uv_stream_t* server);
  void onData(Connection* c, std::string_view data);
  void onPeerEnd(Connection* c, ssize_t status);
  void onTimer(Connection* c);
  void pump(Connection* c);
  void collect(Connection* c);
  bool readTls(Connection* c);
  Delivery deliver(Connection* c);
  void pause(Connection* c);
  void startReading(Connection* c);
  void armIdleTimer(Connection* c);
  void flushTls(Connection* c);
  void handshakeFailed(Connection* c, std::string_view why);
  void giveUp(Connection* c);
  void closeConnection(Connection* c);
  void encodeMeta(std::string_view message, std::string_view peer, std::uint64_t now_ns,
                  std::vector<std::byte>& out);

  const SyslogOptions options_;
  RecordSink& sink_;
  Transport transport_ = Transport::kTcp;
  std::uint64_t idle_ms_ = 0;
  std::unique_ptr<TlsServerConfig> tls_;
  std::string local_address_;

  std::unique_ptr<uv_loop_t> loop_;
  bool loop_ready_ = false;
  uv_async_t stop_async_{};
  uv_timer_t grace_timer_{};
  bool grace_closed_ = false;
  uv_tcp_t tcp_server_{};
  uv_udp_t udp_{};
  bool server_ready_ = false;

  std::mutex lifecycle_mu_;
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;

  // Loop thread state.
  bool stopping_ = false;
  std::unordered_set<Connection*> connections_;
  std::array<char, kReadBufferBytes> read_buf_{};
  std::array<char, kReadBufferBytes> plain_buf_{};
  std::vector<RecordInput> records_;
  std::vector<std::byte> udp_meta_;
  LogLimiter framing_log_;
  LogLimiter tls_log_;
  LogLimiter sink_log_;
  LogLimiter conn_log_;

  std::atomic<std::uint64_t> messages_received_{0};
  std::atomic<std::uint64_t> messages_stored_{0};
  std::atomic<std::uint64_t> messages_unparsed_{0};
  std::atomic<std::uint64_t> messages_truncated_{0};
  std::atomic<std::uint64_t> messages_dropped_agent_{0};
  std::atomic<std::uint64_t> framing_errors_{0};
  std::atomic<std::uint64_t> connections_accepted_{0};
  std::atomic<std::uint64_t> connections_active_{0};
  std::atomic<std::uint64_t> connections_rejected_{0};
  std::atomic<std::uint64_t> tls_handshake_failures_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
};

void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
}

Status SyslogSource::checkOptions() {
  const auto& o = options_;
  const auto bad = [&](std::string_view why) {
    return inputError(ErrorCode::kConfig, o.name, why);
  };
  if (auto s = checkInputName(o.name); !s) return bad(s.error().message);
  if (o.max_message_bytes == 0 || o.max_message_bytes > kMaxMessageBytesLimit) {
    return bad(fmt::format("max_message_bytes must be 1 to {}; got {}", kMaxMessageBytesLimit,
                           o.max_message_bytes));
  }
  if (o.max_connections == 0) return bad("max_connections must be at least 1");
  if (o.idle_timeout.count() < 0) return bad("idle_timeout must not be negative");
  const auto ns = static_cast<std::uint64_t>(o.idle_timeout.count());
  idle_ms_ = ns == 0 ? 0 : (ns + 999'999) / 1'000'000;
  return ok();
}

Status SyslogSource::open() {
  const auto& o = options_;
  if (auto s = checkOptions(); !s) return s;
  auto listen = parseListen(o.listen);
  if (!listen) return inputError(ErrorCode::kConfig, o.name, listen.error().message);
  transport_ = listen->transport;

  const bool tls_files =
      !o.tls_cert_file.empty() || !o.tls_key_file.empty() || !o.tls_client_ca_file.empty();
  if (transport_ == Transport::kTls) {
    if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
      return inputError(ErrorCode::kConfig, o.name,
                        fmt::format("listen '{}' needs tls_cert_file and tls_key_file", o.listen));
    }
    auto config = TlsServerConfig::load(o.tls_cert_file, o.tls_key_file, o.tls_client_ca_file);
    if (!config) return inputError(config.error().code, o.name, config.error().message);
    tls_ = std::move(*config);
  } else if (tls_files) {
    return inputError(ErrorCode::kConfig, o.name,
                      fmt::format("tls_* files are set but listen '{}' is not tls://", o.listen));
  }

  loop_ = std::make_unique<uv_loop_t>();
  if (const int rc = uv_loop_init(loop_.get()); rc != 0) {
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot create its loop: {}", uvError(rc)));
  }
  if (const int rc = uv_async_init(loop_.get(), &stop_async_, &SyslogSource::onStopAsync);
      rc != 0) {
    uv_loop_close(loop_.get());
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot create its loop: {}", uvError(rc)));
  }
  // From here on stop() tears everything down through stop_async_, also when open() fails.
  loop_ready_ = true;
  stop_async_.data = this;
  uv_timer_init(loop_.get(), &grace_timer_);
  grace_timer_.data = this;
  return bindSocket(*listen);
}

// Binds (and for TCP listens) now, so that a port in use is reported by the factory. Connections
// and datagrams that arrive before start() wait in the kernel.
Status SyslogSource::bindSocket(const ListenAddress& listen) {
  const auto& o = options_;
  const auto* addr = reinterpret_cast<const sockaddr*>(&listen.addr);
  const auto cannot = [&](int rc) {
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot listen on {}: {}", o.listen, uvError(rc)));
  };
  sockaddr_storage bound{};
  int bound_len = sizeof bound;
  if (transport_ == Transport::kUdp) {
    if (const int rc = uv_udp_init(loop_.get(), &udp_); rc != 0) return cannot(rc);
    server_ready_ = true;
    udp_.data = this;
    if (const int rc = uv_udp_bind(&udp_, addr, 0); rc != 0) return cannot(rc);
    if (const int rc = uv_udp_recv_start(&udp_, &SyslogSource::onAlloc, &SyslogSource::onUdpRecv);
        rc != 0) {
      return cannot(rc);
    }
    if (const int rc = uv_udp_getsockname(&udp_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
        rc != 0) {
      return cannot(rc);
    }
  } else {
    if (const int rc = uv_tcp_init(loop_.get(), &tcp_server_); rc != 0) return cannot(rc);
    server_ready_ = true;
    tcp_server_.data = this;
    // libuv reports EADDRINUSE from listen, not bind.
    if (const int rc = uv_tcp_bind(&tcp_server_, addr, 0); rc != 0) return cannot(rc);
    if (const int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_server_), kListenBacklog,
                                 &SyslogSource::onConnection);
        rc != 0) {
      return cannot(rc);
    }
    if (const int rc =
            uv_tcp_getsockname(&tcp_server_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
        rc != 0) {
      return cannot(rc);
    }
  }
  local_address_ = formatAddress(transport_, reinterpret_cast<const sockaddr*>(&bound));
  return ok();
}

Status SyslogSource::start() {
  std::lock_guard lk(lifecycle_mu_);
  if (started_ || stopped_) {
    return inputError(ErrorCode::kInvalidArgument, options_.name,
                      started_ ? "start() called twice" : "start() called after stop()");
  }
  try {
    thread_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "cistern-syslog");
      uv_run(loop_.get(), UV_RUN_DEFAULT);
    });
  } catch (const std::system_error& e) {
    return inputError(ErrorCode::kIo, options_.name,
                      fmt::format("cannot start its thread: {}", e.what()));
  }
  started_ = true;
  return ok();
}

void SyslogSource::stop() {
  std::lock_guard lk(lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!loop_ready_) return;
  uv_async_send(&stop_async_);
  if (thread_.joinable()) {
    thread_.join();
  } else {
    // Never started: run the loop here just long enough to close the handles.
    uv_run(loop_.get(), UV_RUN_DEFAULT);
  }
  if (const int rc = uv_loop_close(loop_.get()); rc != 0) {
    logger()->error("syslog loop did not close input={} error=\"{}\"", options_.name, uvError(rc));
  }
}

std::vector<Counter> SyslogSource::counters() const {
  const auto get = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  return {
      {"messages_received", get(messages_received_)},
      {"messages_stored", get(messages_stored_)},
      {"messages_unparsed", get(messages_unparsed_)},
      {"messages_truncated", get(messages_truncated_)},
      {"messages_dropped_agent", get(messages_dropped_agent_)},
      {"framing_errors", get(framing_errors_)},
      {"connections_accepted", get(connections_accepted_)},
      {"connections_active", get(connections_active_)},
      {"connections_rejected", get(connections_rejected_)},
      {"tls_handshake_failures", get(tls_handshake_failures_)},
      {"bytes_received", get(bytes_received_)},
  };
}

// ---- loop thread ----

void SyslogSource::onStopAsync(uv_async_t* handle) {
  static_cast<SyslogSource*>(handle->data)->beginStop();
}

void SyslogSource::beginStop() {
  stopping_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&stop_async_), nullptr);
  if (server_ready_) {
    uv_handle_t* server = transport_ == Transport::kUdp
                              ? reinterpret_cast<uv_handle_t*>(&udp_)
                              : reinterpret_cast<uv_handle_t*>(&tcp_server_);
    uv_close(server, nullptr);
  }
  const std::vector<Connection*> open(connections_.begin(), connections_.end());
  for (Connection* c : open) {
    if (c->reading) {
      uv_read_stop(c->stream());
      c->reading = false;
    }
    // A paused connection retries on its timer; pump() closes it once its messages are in.
    if (!c->paused) pump(c);
  }
  if (connections_.empty()) {
    closeGraceTimer();
  } else {
    uv_timer_start(&grace_timer_, &SyslogSource::onGraceTimer, kStopGraceMs, 0);
  }
}

void SyslogSource::closeGraceTimer() {
  if (grace_closed_) return;
  grace_closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
}

void SyslogSource::onGraceTimer(uv_timer_t* handle) {
  auto* self = static_cast<SyslogSource*>(handle->data);
  const std::vector<Connection*> open(self->connections_.begin(), self->connections_.end());
  for (Connection* c : open) self->giveUp(c);
  self->closeGraceTimer();
}

void SyslogSource::onAlloc(uv_handle_t* handle, std::size_t /*suggested*/, uv_buf_t* buf) {
  // One buffer serves every handle: each read is consumed (copied into a framer or a TLS
  // session, or appended) before the loop reads again.
  SyslogSource* self = handle->type == UV_UDP ? static_cast<SyslogSource*>(handle->data)
                                              : static_cast<Connection*>(handle->data)->source;
  *buf = uv_buf_init(self->read_buf_.data(), static_cast<unsigned>(self->read_buf_.size()));
}

void SyslogSource::onUdpRecv(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                             const sockaddr* addr, unsigned flags) {
  auto* self = static_cast<SyslogSource*>(handle->data);
  if (nread < 0) {
    if (self->conn_log_.allow()) {
      logger()->warn("syslog udp receive failed input={} error=\"{}\"", self->options_.name,
                     uvError(static_cast<int>(nread)));
    }
    return;
  }
  if (addr == nullptr) return;  // nothing more to read now
  self->receiveDatagram(std::string_view(buf->base, static_cast<std::size_t>(nread)), addr,
                        (flags & UV_UDP_PARTIAL) != 0);
}

void SyslogSource::receiveDatagram(std::string_view datagram, const sockaddr* addr, bool partial) {
  bump(bytes_received_, datagram.size());
  std::string_view msg = trimMessage(datagram);
  if (msg.empty()) return;
  bump(messages_received_);
  if (partial || msg.size() > options_.max_message_bytes) {
    bump(messages_truncated_);
    msg = msg.substr(0, std::min<std::size_t>(msg.size(), options_.max_message_bytes));
  }
  const std::uint64_t now = platform::SystemClock::instance().wallNanos();
  const std::string peer = formatAddress(Transport::kUdp, addr);
  encodeMeta(msg, peer, now, udp_meta_);
  const RecordInput record{RecordKind::kSyslog, now, options_.name, udp_meta_, bytesOf(msg)};
  auto r = sink_.append(std::span<const RecordInput>(&record, 1), {}, Wait::kNo);
  if (r) {
    bump(messages_stored_);
    return;
  }
  // UDP cannot push back on its senders: a message the sink refuses is lost, and counted.
  bump(messages_dropped_agent_);
  if (r.error().code != ErrorCode::kFull && sink_log_.allow()) {
    logger()->warn("syslog sink refused a message input={} error=\"{}\"", options_.name,
                   r.error().describe());
  }
}

void SyslogSource::encodeMeta(std::string_view message, std::string_view peer, std::uint64_t now_ns,
                              std::vector<std::byte>& out) {
  const ParsedSyslog p = parseSyslog(message, static_cast<std::int64_t>(now_ns));
  if (p.format == SyslogFormat::kRaw) bump(messages_unparsed_);
  SyslogMeta meta;
  meta.format = p.format;
  meta.facility = p.facility;
  meta.severity = p.severity;
  meta.timestamp_ns = p.timestamp_ns;
  // Messages are at most kMaxMessageBytesLimit long, so the offset fits.
  meta.message_offset = static_cast<std::uint32_t>(p.message_offset);
  meta.host = p.host;
  meta.app = p.app;
  meta.procid = p.procid;
  meta.msgid = p.msgid;
  meta.peer = peer;
  encodeSyslogMeta(meta, out);
}

void SyslogSource::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<SyslogSource*>(server->data);
  if (status < 0) {
    if (self->conn_log_.allow()) {
      logger()->warn("syslog accept failed input={} error=\"{}\"", self->options_.name,
                     uvError(status));
    }
    return;
  }
  self->accept(server);
}

void SyslogSource::accept(uv_stream_t* server) {
  auto* c = new Connection(this, options_.max_message_bytes);
  uv_tcp_init(loop_.get(), &c->tcp);
  uv_timer_init(loop_.get(), &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  if (const int rc = uv_accept(server, c->stream()); rc != 0) {
    if (conn_log_.allow()) {
      logger()->warn("syslog accept failed input={} error=\"{}\"", options_.name, uvError(rc));
    }
    closeConnection(c);
    return;
  }
  sockaddr_storage peer{};
  int peer_len = sizeof peer;
  if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
    c->peer = formatAddress(transport_, reinterpret_cast<const sockaddr*>(&peer));
  }
  // Accepting and closing at once (rather than leaving the connection in the backlog) tells an
  // extra client right away that it is not served.
  if (connections_.size() >= options_.max_connections) {
    bump(connections_rejected_);
    if (conn_log_.allow()) {
      logger()->warn("syslog connection rejected input={} peer={} max_connections={}",
                     options_.name, c->peer, options_.max_connections);
    }
    closeConnection(c);
    return;
  }
  bump(connections_accepted_);
  bump(connections_active_);
  c->admitted = true;
  connections_.insert(c);
  if (tls_ != nullptr) {
    c->tls = std::make_unique<TlsSession>();
    if (auto s = c->tls->setup(*tls_); !s) {
      logger()->error("syslog tls session failed input={} error=\"{}\"", options_.name,
                      s.error().message);
      closeConnection(c);
      return;
    }
  }
  startReading(c);
}

void SyslogSource::onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  if (nread == 0 || c->closing) return;
  if (nread < 0) {
    c->source->onPeerEnd(c, nread);
    return;
  }
  c->source->onData(c, std::string_view(buf->base, static_cast<std::size_t>(nread)));
}

void SyslogSource::onData(Connection* c, std::string_view data) {
  armIdleTimer(c);
  if (c->tls != nullptr) {
    c->tls->feed(data);
    if (!c->tls->handshakeDone()) {
      const auto r = c->tls->handshake();
      flushTls(c);
      if (r == TlsSession::Io::kError) {
        handshakeFailed(c, c->tls->errorText());
        return;
      }
      if (r != TlsSession::Io::kOk) return;
    }
  } else {
    bump(bytes_received_, data.size());
    if (c->batch_count == 0) c->framer.compact();
    c->framer.append(data);
  }
  if (!c->paused) pump(c);
}

void SyslogSource::onPeerEnd(Connection* c, ssize_t status) {
  c->eof = true;
  if (c->reading) {
    uv_read_stop(c->stream());
    c->reading = false;
  }
  if (status != UV_EOF && conn_log_.allow()) {
    logger()->info("syslog connection read failed input={} peer={} error=\"{}\"", options_.name,
                   c->peer, uvError(static_cast<int>(status)));
  }
  if (c->tls != nullptr && !c->tls->handshakeDone()) {
    handshakeFailed(c, "the connection ended during the handshake");
    return;
  }
  if (!c->paused) pump(c);
}

void SyslogSource::onConnectionTimer(uv_timer_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  c->source->onTimer(c);
}

void SyslogSource::onTimer(Connection* c) {
  if (c->closing) return;
  if (c->paused) {
    pump(c);
    return;
  }
  // Idle timeout.
  if (c->tls != nullptr && !c->tls->handshakeDone()) {
    handshakeFailed(c, "idle timeout during the handshake");
    return;
  }
  if (c->framer.midFrame()) {
    bump(framing_errors_);
    if (framing_log_.allow()) {
      logger()->warn("syslog partial frame discarded input={} peer={} reason=idle_timeout",
                     options_.name, c->peer);
    }
  }
  closeConnection(c);
}

// Moves buffered messages to the sink until it refuses (then the connection pauses), the input
// runs out (then reading resumes) or the connection is finished (then it closes).
void SyslogSource::pump(Connection* c) {
  for (;;) {
    if (c->closing) return;
    if (c->batch_count > 0 && deliver(c) == Delivery::kFull) {
      pause(c);
      return;
    }
    if (c->failed) {
      closeConnection(c);
      return;
    }
    collect(c);
    if (c->batch_count > 0 || c->failed) continue;
    if (!readTls(c)) break;
  }
  if (c->eof || stopping_) {
    // At stop a partial frame is not an error of the peer's.
    if (c->eof && c->framer.midFrame()) {
      bump(framing_errors_);
      if (framing_log_.allow()) {
        logger()->warn("syslog partial frame discarded input={} peer={} reason=end_of_stream",
                       options_.name, c->peer);
      }
    }
    closeConnection(c);
    return;
  }
  c->paused = false;
  startReading(c);
}

void SyslogSource::collect(Connection* c) {
  const std::uint64_t now = platform::SystemClock::instance().wallNanos();
  StreamFramer::Frame frame;
  while (c->batch_count < kBatchMaxMessages && c->batch_bytes < kBatchMaxBytes) {
    const auto next = c->framer.next(frame);
    if (next == StreamFramer::Next::kNeedMore) return;
    if (next == StreamFramer::Next::kError) {
      bump(framing_errors_);
      if (framing_log_.allow()) {
        logger()->warn("syslog framing error, closing input={} peer={} error=\"{}\"", options_.name,
                       c->peer, c->framer.error());
      }
      c->failed = true;
      return;
    }
    const std::string_view msg = trimMessage(c->framer.message(frame));
    if (msg.empty()) continue;
    bump(messages_received_);
    if (frame.truncated) bump(messages_truncated_);
    if (c->batch.size() == c->batch_count) c->batch.emplace_back();
    PendingMessage& m = c->batch[c->batch_count++];
    m.offset = frame.offset;
    m.size = msg.size();
    m.received_ns = now;
    encodeMeta(msg, c->peer, now, m.meta);
    c->batch_bytes += msg.size();
  }
}

// Decrypts what the TLS session holds into the framer; false when nothing was added.
bool SyslogSource::readTls(Connection* c) {
  if (c->tls == nullptr || !c->tls->handshakeDone() || c->tls_ended) return false;
  c->framer.compact();  // the batch is empty here
  std::size_t n = 0;
  const auto r = c->tls->read(plain_buf_.data(), plain_buf_.size(), n);
  flushTls(c);
  if (r == TlsSession::Io::kOk) {
    bump(bytes_received_, n);
    c->framer.append(std::string_view(plain_buf_.data(), n));
    return true;
  }
  if (r == TlsSession::Io::kWantRead) return false;
  if (r == TlsSession::Io::kError && conn_log_.allow()) {
    logger()->info("syslog tls read failed input={} peer={} error=\"{}\"", options_.name, c->peer,
                   c->tls->errorText());
  }
  c->tls_ended = true;
  c->eof = true;
  if (c->reading) {
    uv_read_stop(c->stream());
    c->reading = false;
  }
  return false;
}

SyslogSource::Delivery SyslogSource::deliver(Connection* c) {
  records_.clear();
  for (std::size_t i = 0; i < c->batch_count; ++i) {
    const PendingMessage& m = c->batch[i];
    const std::string_view payload = c->framer.message({m.offset, m.size, false});
    records_.push_back(
        RecordInput{RecordKind::kSyslog, m.received_ns, options_.name, m.meta, bytesOf(payload)});
  }
  auto r = sink_.append(records_, {}, Wait::kNo);
  if (!r && r.error().code == ErrorCode::kFull) return Delivery::kFull;
  const std::size_t n = c->batch_count;
  c->batch_count = 0;
  c->batch_bytes = 0;
  if (r) {
    bump(messages_stored_, n);
    return Delivery::kDelivered;
  }
  // Not retryable (the sink is closed or refused the records): waiting would not help.
  bump(messages_dropped_agent_, n);
  if (sink_log_.allow()) {
    logger()->warn("syslog sink refused messages input={} count={} error=\"{}\"", options_.name, n,
                   r.error().describe());
  }
  return Delivery::kDropped;
}

// Backpressure: stop reading so the sender's TCP window closes, and retry the sink shortly.
void SyslogSource::pause(Connection* c) {
  c->paused = true;
  if (c->reading) {
    uv_read_stop(c->stream());
    c->reading = false;
  }
  uv_timer_start(&c->timer, &SyslogSource::onConnectionTimer, kRetryMs, 0);
}

void SyslogSource::startReading(Connection* c) {
  if (!c->reading && !c->eof && !c->closing) {
    if (const int rc = uv_read_start(c->stream(), &SyslogSource::onAlloc, &SyslogSource::onRead);
        rc != 0) {
      logger()->warn("syslog read failed input={} peer={} error=\"{}\"", options_.name, c->peer,
                     uvError(rc));
      closeConnection(c);
      return;
    }
    c->reading = true;
  }
  armIdleTimer(c);
}

void SyslogSource::armIdleTimer(Connection* c) {
  if (idle_ms_ == 0) {
    uv_timer_stop(&c->timer);
  } else {
    uv_timer_start(&c->timer, &SyslogSource::onConnectionTimer, idle_ms_, 0);
  }
}

void SyslogSource::flushTls(Connection* c) {
  std::string out = c->tls->takeOutput();
  if (out.empty()) return;
  auto* w = new WriteRequest;
  w->data = std::move(out);
  w->req.data = w;
  const uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  // A failed write leaves the connection to fail on its read side; nothing else to do here.
  if (uv_write(&w->req, c->stream(), &buf, 1, &SyslogSource::onWriteDone) != 0) delete w;
}

void SyslogSource::onWriteDone(uv_write_t* req, int /*status*/) {
  delete static_cast<WriteRequest*>(req->data);
}

void SyslogSource::handshakeFailed(Connection* c, std::string_view why) {
  bump(tls_handshake_failures_);
  if (tls_log_.allow()) {
    logger()->warn("syslog tls handshake failed input={} peer={} error=\"{}\"", options_.name,
                   c->peer, why);
  }
  closeConnection(c);
}

// At stop, once the grace period is over: what the sink still refuses is counted as dropped.
void SyslogSource::giveUp(Connection* c) {
  std::uint64_t lost = c->batch_count;
  c->batch_count = 0;
  c->batch_bytes = 0;
  StreamFramer::Frame frame;
  while (c->framer.next(frame) == StreamFramer::Next::kFrame) {
    if (trimMessage(c->framer.message(frame)).empty()) continue;
    bump(messages_received_);
    ++lost;
  }
  if (lost > 0) {
    bump(messages_dropped_agent_, lost);
    logger()->warn("syslog stopped with messages the sink did not take input={} peer={} count={}",
                   options_.name, c->peer, lost);
  }
  closeConnection(c);
}

void SyslogSource::closeConnection(Connection* c) {
  if (c->closing) return;
  c->closing = true;
  if (c->admitted) {
    connections_.erase(c);
    connections_active_.fetch_sub(1, std::memory_order_relaxed);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &SyslogSource::onConnectionHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), &SyslogSource::onConnectionHandleClosed);
  if (stopping_ && connections_.empty()) closeGraceTimer();
}

void SyslogSource::onConnectionHandleClosed(uv_handle_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  if (--c->open_handles == 0) delete c;
}

}  // namespace

Result<std::unique_ptr<Source>> makeSyslogSource(const SyslogOptions& options, RecordSink& sink) {
  auto source = std::make_unique<SyslogSource>(options, sink);
  if (auto s = source->open(); !s) return tl::unexpected(s.error());
  return std::unique_ptr<Source>(std::move(source));
}

}  // namespace cistern::capture
