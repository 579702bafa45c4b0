#include "status_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent_log.h"
#include "listen_address.h"
#include "prometheus.h"

namespace cistern::agent {
namespace {

constexpr const char* kTextPlain = "text/plain; charset=utf-8";
constexpr const char* kJson = "application/json";
constexpr const char* kAllowed = "GET, HEAD";

// An address libmicrohttpd can bind: its MHD_OPTION_SOCK_ADDR takes a sockaddr of the family
// the MHD_USE_IPv6 flag announces.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

SocketAddress toSocketAddress(const ListenAddress& address) {
  SocketAddress out;
  if (address.ipv6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(address.port);
    ::inet_pton(AF_INET6, address.host.c_str(), &in6->sin6_addr);  // checked by the parser
    out.length = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(address.port);
    ::inet_pton(AF_INET, address.host.c_str(), &in4->sin_addr);
    out.length = sizeof(sockaddr_in);
  }
  return out;
}

// Why binding `address` fails, from the system, or empty when it can be bound. libmicrohttpd
// reports a failed start only as NULL (and, when built with messages, a log line), so after a
// failure the bind is tried once more here for the errno an operator needs ("Address already in
// use", "Cannot assign requested address").
std::string bindProblem(const ListenAddress& address) {
  const SocketAddress sa = toSocketAddress(address);
  const int fd = ::socket(sa.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  const int one = 1;
  // As libmicrohttpd does, so a port in TIME_WAIT is not mistaken for one in use.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  std::string problem;
  if (::bind(fd, sa.get(), sa.length) != 0 || ::listen(fd, 1) != 0) problem = std::strerror(errno);
  ::close(fd);
  return problem;
}

MHD_Result respond(MHD_Connection* connection, unsigned status, const char* content_type,
                   std::string_view body, bool allow_header = false) {
  // MUST_COPY: the body is a temporary; libmicrohttpd frees its copy when the response is sent.
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  // Every answer is a snapshot; a cache in between would show an operator stale counters.
  MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (allow_header) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, kAllowed);
  const MHD_Result result = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return result;
}

bool hasBody(MHD_Connection* connection) {
  const char* length =
      MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (length != nullptr && std::string_view(length) != "0") return true;
  return MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_TRANSFER_ENCODING) != nullptr;
}

std::string withNewline(std::string text) {
  if (!text.empty() && text.back() != '\n') text += '\n';
  return text;
}

// What a request's state pointer marks. libmicrohttpd calls the handler once when the headers
// are in and again when the (empty) body is; a response queued in the first call makes it close
// the connection, since it cannot know whether a body follows, so a request that is served waits
// for the second call and keeps the connection alive. A refused request is answered at once, and
// any later calls (a body being discarded) are ignored.
char accepted_marker;
char answered_marker;

}  // namespace

struct StatusServer::Callbacks {
  static MHD_Result onRequest(void* cls, MHD_Connection* connection, const char* url,
                              const char* method, const char* /*version*/,
                              const char* /*upload_data*/, std::size_t* upload_data_size,
                              void** request_state) {
    auto& server = *static_cast<StatusServer*>(cls);
    if (*request_state == &answered_marker) {
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (*request_state == nullptr) {
      server.requests_.fetch_add(1, std::memory_order_relaxed);
      *request_state = &answered_marker;
      const std::string_view path(url);
      if (path != "/health" && path != "/metrics" && path != "/status") {
        return respond(connection, MHD_HTTP_NOT_FOUND, kTextPlain,
                       "not found; the status API serves /health, /metrics and /status\n");
      }
      const std::string_view verb(method);
      if (verb != MHD_HTTP_METHOD_GET && verb != MHD_HTTP_METHOD_HEAD) {
        return respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED, kTextPlain,
                       "method not allowed; use GET or HEAD\n", true);
      }
      if (hasBody(connection)) {
        return respond(connection, MHD_HTTP_CONTENT_TOO_LARGE, kTextPlain,
                       "a request body is not accepted\n");
      }
      *request_state = &accepted_marker;
      return MHD_YES;
    }
    *request_state = &answered_marker;
    if (*upload_data_size != 0) {
      // A body after all (hasBody() saw no sign of one): refuse it unread.
      *upload_data_size = 0;
      return respond(connection, MHD_HTTP_CONTENT_TOO_LARGE, kTextPlain,
                     "a request body is not accepted\n");
    }
    const std::string_view path(url);
    // libmicrohttpd is C: an exception must not unwind through it.
    try {
      return serve(server, connection, path);
    } catch (const std::exception& e) {
      return sourceFailed(server, connection, path, e.what());
    } catch (...) {
      return sourceFailed(server, connection, path, "unknown exception");
    }
  }

  static MHD_Result serve(StatusServer& server, MHD_Connection* connection, std::string_view path) {
    if (path == "/metrics") {
      const std::string text = renderPrometheus(server.source_.metrics());
      return respond(connection, MHD_HTTP_OK, kPrometheusContentType.data(), text);
    }
    if (path == "/status") {
      return respond(connection, MHD_HTTP_OK, kJson, withNewline(server.source_.statusJson()));
    }
    const StatusSource::Health health = server.source_.health();
    if (health.ok)
      return respond(connection, MHD_HTTP_OK, kTextPlain, "ok\n" + withNewline(health.reason));
    return respond(
        connection, MHD_HTTP_SERVICE_UNAVAILABLE, kTextPlain,
        health.reason.empty() ? std::string("not healthy\n") : withNewline(health.reason));
  }

  static MHD_Result sourceFailed(StatusServer& server, MHD_Connection* connection,
                                 std::string_view path, const char* what) {
    // Counted, and logged only on the first few: a scraper polling a broken source every second
    // must not fill the log.
    const auto count = server.source_errors_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (count <= 3 || (count & (count - 1)) == 0) {
      agentLogger()->error("status API: {} failed: {} (failure {})", path, what, count);
    }
    return respond(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, kTextPlain,
                   fmt::format("internal error: {}\n", what));
  }

  // libmicrohttpd's messages are printf formats; format strings come from the library.
  static void onLog(void* cls, const char* format, va_list args) {
    char buffer[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    std::vsnprintf(buffer, sizeof buffer, format, args);
#pragma GCC diagnostic pop
    std::string line(buffer);
    while (!line.empty() && (line.back() == '\n' || line.back() == '.')) line.pop_back();
    auto& server = *static_cast<StatusServer*>(cls);
    {
      const std::lock_guard lock(server.log_mutex_);
      if (server.capture_log_) {
        if (!server.start_log_.empty()) server.start_log_ += "; ";
        server.start_log_ += line;
        return;
      }
    }
    // After start the messages are about clients (timeouts, resets, malformed requests): at
    // debug, so no client can flood the log.
    agentLogger()->debug("status API (libmicrohttpd): {}", line);
  }
};

StatusServer::StatusServer(StatusServerOptions options, const StatusSource& source)
    : options_(std::move(options)), source_(source) {}

StatusServer::~StatusServer() { stop(); }

Status StatusServer::start() {
  if (daemon_ != nullptr) return fail(ErrorCode::kInvalidArgument, "status API already started");
  auto address = parseListenAddress(options_.listen);
  if (!address) {
    return fail(ErrorCode::kConfig, "status API: " + address.error().message);
  }
  const SocketAddress sa = toSocketAddress(*address);
  // One internal thread with epoll (MHD_USE_AUTO picks it on Linux) and an eventfd to wake it
  // (MHD_USE_ITC), so stop() does not wait for a poll timeout. IPv6 with DUAL_STACK, so [::]
  // takes IPv4 clients too, as a Linux socket does by default.
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (address->ipv6) flags |= MHD_USE_DUAL_STACK;
  {
    const std::lock_guard lock(log_mutex_);
    capture_log_ = true;
    start_log_.clear();
  }
  daemon_ = MHD_start_daemon(flags, address->port, nullptr, nullptr, &Callbacks::onRequest, this,
                             MHD_OPTION_EXTERNAL_LOGGER, &Callbacks::onLog, this,
                             MHD_OPTION_SOCK_ADDR, sa.get(), MHD_OPTION_CONNECTION_LIMIT,
                             options_.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                             static_cast<unsigned>(options_.timeout.count()),
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_END);
  std::string library_says;
  {
    const std::lock_guard lock(log_mutex_);
    capture_log_ = false;
    library_says = std::move(start_log_);
  }
  if (daemon_ == nullptr) {
    std::string why = bindProblem(*address);
    if (why.empty()) {
      why = library_says.empty() ? "libmicrohttpd could not start" : library_says;
    }
    return fail(ErrorCode::kIo,
                fmt::format("status API cannot listen on {}: {}", address->toString(), why));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  port_ = info != nullptr ? info->port : address->port;
  ListenAddress bound = *address;
  bound.port = port_;
  bound_ = bound.toString();
  agentLogger()->info("status API listening on http://{}/ (/health, /metrics, /status)", bound_);
  return ok();
}

void StatusServer::stop() {
  if (daemon_ == nullptr) return;
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

StatusServer::Counters StatusServer::counters() const {
  return {requests_.load(std::memory_order_relaxed),
          source_errors_.load(std::memory_order_relaxed)};
}

}  // namespace cistern::agent
