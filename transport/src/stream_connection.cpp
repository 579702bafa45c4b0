#include "stream_connection.h"

#include <linux/sockios.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <uv.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "transport_log.h"

namespace cistern::transport {
namespace {

constexpr std::size_t kReadBufferBytes = std::size_t{64} << 10U;

std::string uvError(int rc) { return fmt::format("{} ({})", uv_strerror(rc), uv_err_name(rc)); }

std::string addressText(const sockaddr* sa) {
  std::array<char, 64> host{};
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    uv_ip6_name(&in6, host.data(), host.size());
    return fmt::format("[{}]:{}", host.data(), ntohs(in6.sin6_port));
  }
  sockaddr_in in{};
  std::memcpy(&in, sa, sizeof in);
  uv_ip4_name(&in, host.data(), host.size());
  return fmt::format("{}:{}", host.data(), ntohs(in.sin_port));
}

// libuv writes with write(2), which raises SIGPIPE when the peer has gone; its default action
// would end the process. Blocked on the writing thread, the signal stays pending (harmlessly) and
// the write fails with EPIPE, which is reported like any other error.
void blockSigpipeOnThisThread() {
  thread_local bool blocked = false;
  if (blocked) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  blocked = true;
}

}  // namespace

// Everything libuv points at. Freed by maybeFree() once close() was called, every handle's close
// callback ran and no resolution is outstanding: never before libuv is done with it.
struct StreamConnection::Core {
  enum class State { kIdle, kResolving, kConnecting, kHandshaking, kConnected, kFailed };

  Core(uv_loop_t* l, Options o, Handler& h) : loop(l), options(std::move(o)), handler(&h) {}

  uv_loop_t* loop;
  Options options;
  Handler* handler;  // null once closed: no callback after close()
  State state = State::kIdle;
  bool closing = false;
  std::function<void()> on_closed;

  uv_timer_t timer{};  // the connect timeout, and failures reported later than they happen
  uv_tcp_t* tcp = nullptr;
  uv_connect_t connect_req{};
  uv_getaddrinfo_t resolve_req{};
  bool resolving = false;
  addrinfo* addresses = nullptr;
  addrinfo* next_address = nullptr;
  std::string current_address;  // "127.0.0.1:514", for messages
  std::string last_connect_error;
  int open_handles = 0;
  bool reading = false;

  std::unique_ptr<TlsClientSession> tls;
  std::uint64_t wire_queued = 0;
  bool write_failed = false;
  std::optional<ConnectionError> deferred_error;
  std::array<char, kReadBufferBytes> read_buf{};
  std::string plaintext;

  struct WriteReq {
    uv_write_t req{};
    std::string bytes;
    Core* core = nullptr;
  };

  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(tcp); }

  std::string failure(std::string_view what) const {
    return fmt::format("{}: {}", options.endpoint, what);
  }

  void start();
  void tryNextAddress();
  void onConnect(int status);
  void onRead(ssize_t nread);
  void onTlsData(std::string_view data);
  bool flushTls();
  std::uint64_t write(std::string_view data);
  void queueWrite(std::string bytes);
  void failNow(const ConnectionError& error);
  void failLater(ConnectionError error);
  void closeTcp();
  void close(std::function<void()> closed, std::string_view last_words);
  void freeAddresses();
  void maybeFree();
  Result<std::uint64_t> acked() const;

  static void onTimer(uv_timer_t* t);
  static void onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void onConnectCb(uv_connect_t* req, int status);
  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWrite(uv_write_t* req, int status);
  static void onHandleClosed(uv_handle_t* h);
};

void StreamConnection::Core::start() {
  state = State::kResolving;
  uv_timer_start(&timer, &Core::onTimer,
                 static_cast<std::uint64_t>(options.connect_timeout.count()), 0);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  resolve_req.data = this;
  const std::string port = std::to_string(options.port);
  const int rc = uv_getaddrinfo(loop, &resolve_req, &Core::onResolved, options.host.c_str(),
                                port.c_str(), &hints);
  if (rc != 0) {
    failLater({failure(fmt::format("cannot resolve '{}': {}", options.host, uvError(rc)))});
    return;
  }
  resolving = true;
}

void StreamConnection::Core::onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* core = static_cast<Core*>(req->data);
  core->resolving = false;
  if (core->closing || core->state != State::kResolving) {
    if (res != nullptr) uv_freeaddrinfo(res);
    core->maybeFree();
    return;
  }
  if (status != 0) {
    core->failNow({core->failure(
        fmt::format("cannot resolve '{}': {}", core->options.host, uvError(status)))});
    return;
  }
  core->addresses = res;
  core->next_address = res;
  core->state = State::kConnecting;
  core->tryNextAddress();
}

void StreamConnection::Core::tryNextAddress() {
  while (next_address != nullptr) {
    const addrinfo* ai = next_address;
    next_address = ai->ai_next;
    tcp = new uv_tcp_t{};
    uv_tcp_init(loop, tcp);
    tcp->data = this;
    ++open_handles;
    // Frames are written whole, in large writes; Nagle would only delay RELP's small ones.
    uv_tcp_nodelay(tcp, 1);
    connect_req.data = this;
    current_address = addressText(ai->ai_addr);
    const int rc = uv_tcp_connect(&connect_req, tcp, ai->ai_addr, &Core::onConnectCb);
    if (rc == 0) return;
    last_connect_error = fmt::format("cannot connect to {}: {}", current_address, uvError(rc));
    closeTcp();
  }
  freeAddresses();
  failNow({failure(last_connect_error.empty() ? std::string("no address to connect to")
                                              : last_connect_error)});
}

void StreamConnection::Core::onConnectCb(uv_connect_t* req, int status) {
  static_cast<Core*>(req->data)->onConnect(status);
}

void StreamConnection::Core::onConnect(int status) {
  if (closing || state != State::kConnecting) return;
  if (status != 0) {
    last_connect_error = fmt::format("cannot connect to {}: {}", current_address, uvError(status));
    closeTcp();
    tryNextAddress();
    return;
  }
  freeAddresses();
  if (const int rc = uv_read_start(stream(), &Core::onAlloc, &Core::onReadCb); rc != 0) {
    failNow({failure(fmt::format("cannot read from the connection: {}", uvError(rc)))});
    return;
  }
  reading = true;
  if (!options.tls) {
    state = State::kConnected;
    uv_timer_stop(&timer);
    handler->onConnected();
    return;
  }
  state = State::kHandshaking;
  tls = std::make_unique<TlsClientSession>();
  if (auto s = tls->setup(*options.tls, options.host); !s) {
    failNow({failure(s.error().message), s.error().code == ErrorCode::kConfig});
    return;
  }
  if (options.tls->options().insecure_skip_verify) {
    transportLogger()->warn(
        "tls connection without certificate verification endpoint={} (insecure_skip_verify)",
        options.endpoint);
  }
  if (tls->handshake() == TlsClientSession::Io::kError) {
    failNow({failure("TLS handshake failed: " + tls->errorText()), tls->certificateRejected()});
    return;
  }
  flushTls();
}

void StreamConnection::Core::onAlloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) {
  auto* core = static_cast<Core*>(h->data);
  // One buffer per connection: each read is consumed before the next one.
  *buf = uv_buf_init(core->read_buf.data(), static_cast<unsigned>(core->read_buf.size()));
}

void StreamConnection::Core::onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* /*buf*/) {
  static_cast<Core*>(s->data)->onRead(nread);
}

void StreamConnection::Core::onRead(ssize_t nread) {
  if (closing || state == State::kFailed || nread == 0) return;
  if (nread < 0) {
    const int rc = static_cast<int>(nread);
    failNow({failure(rc == UV_EOF ? std::string("connection closed by the receiver")
                                  : fmt::format("connection lost: {}", uvError(rc)))});
    return;
  }
  const std::string_view data(read_buf.data(), static_cast<std::size_t>(nread));
  if (tls) {
    onTlsData(data);
    return;
  }
  handler->onData(data);
}

void StreamConnection::Core::onTlsData(std::string_view data) {
  tls->feed(data);
  if (!tls->handshakeDone()) {
    const auto r = tls->handshake();
    if (!flushTls()) return;
    if (r == TlsClientSession::Io::kError) {
      failNow({failure("TLS handshake failed: " + tls->errorText()), tls->certificateRejected()});
      return;
    }
    if (r != TlsClientSession::Io::kOk) return;
    state = State::kConnected;
    uv_timer_stop(&timer);
    handler->onConnected();
    // The handler may have closed the connection or written into a failed one.
    if (closing || state != State::kConnected) return;
  }
  plaintext.clear();
  const auto r = tls->read(plaintext);
  if (!flushTls()) return;
  if (!plaintext.empty()) {
    handler->onData(plaintext);
    if (closing || state != State::kConnected) return;
  }
  if (r == TlsClientSession::Io::kClosed) {
    failNow({failure("connection closed by the receiver (TLS close_notify)")});
  } else if (r == TlsClientSession::Io::kError) {
    failNow({failure("TLS read failed: " + tls->errorText())});
  }
}

// Sends what the TLS session produced; false when the connection failed doing so.
bool StreamConnection::Core::flushTls() {
  std::string out = tls->takeOutput();
  if (!out.empty()) queueWrite(std::move(out));
  return !closing && state != State::kFailed;
}

std::uint64_t StreamConnection::Core::write(std::string_view data) {
  assert(state == State::kConnected || state == State::kFailed || closing);
  if (closing || state != State::kConnected || data.empty()) return wire_queued;
  if (tls) {
    if (auto s = tls->write(data); !s) {
      failLater({failure(s.error().message)});
      return wire_queued;
    }
    queueWrite(tls->takeOutput());
  } else {
    queueWrite(std::string(data));
  }
  return wire_queued;
}

void StreamConnection::Core::queueWrite(std::string bytes) {
  auto* w = new WriteReq{};
  w->bytes = std::move(bytes);
  w->core = this;
  w->req.data = w;
  const uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  const int rc = uv_write(&w->req, stream(), &buf, 1, &Core::onWrite);
  if (rc != 0) {
    delete w;
    write_failed = true;
    failLater({failure(fmt::format("write failed: {}", uvError(rc)))});
    return;
  }
  wire_queued += buf.len;
}

void StreamConnection::Core::onWrite(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Core* core = w->core;
  delete w;
  if (status == 0 || status == UV_ECANCELED || core->closing) return;
  // libuv counts a failed write's bytes as gone from its queue: the acknowledged count would be
  // wrong from here on.
  core->write_failed = true;
  core->failNow({core->failure(fmt::format("write failed: {}", uvError(status)))});
}

Result<std::uint64_t> StreamConnection::Core::acked() const {
  if (tcp == nullptr || closing || write_failed ||
      (state != State::kConnected && state != State::kFailed)) {
    return fail(ErrorCode::kIo, failure("not connected"));
  }
  uv_os_fd_t fd = -1;
  if (const int rc = uv_fileno(reinterpret_cast<const uv_handle_t*>(tcp), &fd); rc != 0) {
    return fail(ErrorCode::kIo, failure(fmt::format("no socket: {}", uvError(rc))));
  }
  int outq = 0;
  if (::ioctl(fd, SIOCOUTQ, &outq) != 0) {
    const int err = errno;
    return fail(ErrorCode::kIo, failure(fmt::format("ioctl(SIOCOUTQ): {}", std::strerror(err))));
  }
  const std::uint64_t in_kernel = wire_queued - uv_stream_get_write_queue_size(stream());
  const auto unacked = static_cast<std::uint64_t>(outq < 0 ? 0 : outq);
  return in_kernel > unacked ? in_kernel - unacked : 0;
}

void StreamConnection::Core::failNow(const ConnectionError& error) {
  if (closing || state == State::kFailed) return;
  state = State::kFailed;
  uv_timer_stop(&timer);
  if (reading) {
    uv_read_stop(stream());
    reading = false;
  }
  handler->onFailed(error);
}

void StreamConnection::Core::failLater(ConnectionError error) {
  if (closing || state == State::kFailed || deferred_error) return;
  deferred_error = std::move(error);
  uv_timer_start(&timer, &Core::onTimer, 0, 0);
}

void StreamConnection::Core::onTimer(uv_timer_t* t) {
  auto* core = static_cast<Core*>(t->data);
  if (core->deferred_error) {
    const ConnectionError e = std::move(*core->deferred_error);
    core->deferred_error.reset();
    core->failNow(e);
    return;
  }
  core->failNow({core->failure(
      fmt::format("connect timed out after {} ms", core->options.connect_timeout.count()))});
}

void StreamConnection::Core::closeTcp() {
  if (tcp == nullptr) return;
  if (reading) {
    uv_read_stop(stream());
    reading = false;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(tcp), &Core::onHandleClosed);
  tcp = nullptr;
}

void StreamConnection::Core::onHandleClosed(uv_handle_t* h) {
  auto* core = static_cast<Core*>(h->data);
  if (h->type == UV_TCP) delete reinterpret_cast<uv_tcp_t*>(h);
  --core->open_handles;
  core->maybeFree();
}

void StreamConnection::Core::freeAddresses() {
  if (addresses != nullptr) uv_freeaddrinfo(addresses);
  addresses = nullptr;
  next_address = nullptr;
}

void StreamConnection::Core::close(std::function<void()> closed, std::string_view last_words) {
  if (closing) return;
  if (tcp != nullptr && state == State::kConnected &&
      uv_stream_get_write_queue_size(stream()) == 0) {
    std::string bytes;
    if (tls) {
      if (last_words.empty() || tls->write(last_words)) tls->closeNotify();
      bytes = tls->takeOutput();
    } else {
      bytes.assign(last_words);
    }
    if (!bytes.empty()) {
      // Best effort: what the kernel takes now is sent even after the socket is closed.
      const uv_buf_t buf = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
      (void)uv_try_write(stream(), &buf, 1);
    }
  }
  closing = true;
  handler = nullptr;
  on_closed = std::move(closed);
  if (resolving) (void)uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req));
  freeAddresses();
  closeTcp();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), &Core::onHandleClosed);
  maybeFree();
}

void StreamConnection::Core::maybeFree() {
  if (!closing || open_handles > 0 || resolving) return;
  std::function<void()> closed = std::move(on_closed);
  delete this;
  if (closed) closed();
}

StreamConnection::StreamConnection(void* uv_loop, Options options, Handler& handler)
    : core_(new Core(static_cast<uv_loop_t*>(uv_loop), std::move(options), handler)) {
  blockSigpipeOnThisThread();
  uv_timer_init(core_->loop, &core_->timer);
  core_->timer.data = core_;
  core_->open_handles = 1;
}

StreamConnection::~StreamConnection() { close(); }

void StreamConnection::connect() {
  assert(core_->state == Core::State::kIdle);
  core_->start();
}

std::uint64_t StreamConnection::write(std::string_view data) { return core_->write(data); }

std::uint64_t StreamConnection::wireBytesWritten() const noexcept { return core_->wire_queued; }

Result<std::uint64_t> StreamConnection::wireBytesAcked() const { return core_->acked(); }

bool StreamConnection::connected() const noexcept {
  return !core_->closing && core_->state == Core::State::kConnected;
}

void StreamConnection::close(std::function<void()> closed, std::string_view last_words) {
  if (core_ == nullptr) return;
  Core* core = core_;
  core_ = nullptr;
  core->close(std::move(closed), last_words);
}

// ---- UvTimer ----

struct UvTimer::Handle {
  uv_timer_t timer{};
  std::function<void()> fn;
  std::function<void()> closed;
  bool closing = false;

  static void onTimer(uv_timer_t* t) {
    auto* h = static_cast<Handle*>(t->data);
    // A copy: the callback may restart the timer with another function, or close it.
    std::function<void()> fn = h->fn;
    if (fn) fn();
  }
  static void onClosed(uv_handle_t* t) {
    auto* h = static_cast<Handle*>(t->data);
    std::function<void()> closed = std::move(h->closed);
    delete h;
    if (closed) closed();
  }
};

UvTimer::UvTimer(void* uv_loop) : handle_(new Handle) {
  uv_timer_init(static_cast<uv_loop_t*>(uv_loop), &handle_->timer);
  handle_->timer.data = handle_;
}

UvTimer::~UvTimer() { close(); }

void UvTimer::start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
                    std::function<void()> fn) {
  if (handle_ == nullptr) return;
  handle_->fn = std::move(fn);
  uv_timer_start(&handle_->timer, &Handle::onTimer, static_cast<std::uint64_t>(delay.count()),
                 static_cast<std::uint64_t>(repeat.count()));
}

void UvTimer::stop() {
  if (handle_ != nullptr) uv_timer_stop(&handle_->timer);
}

bool UvTimer::active() const noexcept {
  return handle_ != nullptr &&
         uv_is_active(reinterpret_cast<const uv_handle_t*>(&handle_->timer)) != 0;
}

void UvTimer::close(std::function<void()> closed) {
  if (handle_ == nullptr) return;
  Handle* h = handle_;
  handle_ = nullptr;
  h->closed = std::move(closed);
  h->fn = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->timer), &Handle::onClosed);
}

}  // namespace cistern::transport
