// HttpClient: asynchronous HTTP requests on the agent's event loop, for the OTLP output and the
// OpAMP client. The production implementation drives libcurl's multi interface from the loop
// (curl_multi_socket_action with uv_poll and a uv_timer); tests use a scripted fake.
//
// Threads: every function, and every callback, on the event loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/tls.h"

namespace cistern::transport {

struct HttpRequest {
  std::string url;  // http:// or https://
  std::string method = "POST";
  // "Name: value" lines, sent as given (Content-Type, Content-Encoding, auth tokens).
  std::vector<std::string> headers;
  // The body. Shared so that a request retried or in flight does not copy it; not modified.
  std::shared_ptr<const std::string> body;
  // Whole request, connection included; 0 = no limit.
  std::chrono::milliseconds timeout{30000};
};

struct HttpResponse {
  // 0 when no HTTP response arrived (connection refused, TLS failure, timeout): see error.
  // A server that requires a client certificate and got none may still answer in HTTP (nginx:
  // 400 "No required SSL certificate was sent"): that arrives as that status, not as tls_error.
  int status = 0;
  std::string body;
  // Retry-After, in delay-seconds or HTTP-date form, converted to a delay (nullopt if absent or
  // unparseable).
  std::optional<std::chrono::milliseconds> retry_after;
  // Transport-level failure, with the library's text and the URL ("connecting to
  // https://x:4318/v1/logs: SSL certificate problem: unable to get local issuer certificate").
  // Empty when an HTTP response arrived.
  std::string error;
  bool timed_out = false;
  // The failure is in TLS verification or TLS material (bad certificate, unknown CA, missing
  // client certificate): retrying will not help until the configuration changes.
  bool tls_error = false;
  std::chrono::nanoseconds elapsed{};  // from start to the last byte of the response
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;

  // Starts a request; `done` is called exactly once, on the loop thread, never inside send()
  // (also with an error response when the client closes first).
  virtual void send(HttpRequest request, std::function<void(HttpResponse)> done) = 0;

  // Requests started and not yet completed.
  [[nodiscard]] virtual std::size_t inFlight() const = 0;

  // Fails every request in flight (error "closed") and releases connections and loop handles;
  // `closed` runs on the loop thread once the last handle is closed. Call once, before the
  // client is destroyed.
  virtual void close(std::function<void()> closed) = 0;
};

struct HttpClientOptions {
  TlsClientOptions tls;
  // Connections kept open to one host (keep-alive), and the cap on concurrent connections.
  // At least 1; requests beyond it wait for a free connection (and count as in flight).
  std::size_t max_connections = 8;
  std::chrono::milliseconds connect_timeout{10000};  // 0: libcurl's default (300 s)
  // For log messages: whose client this is ("output 'otlp-main'").
  std::string owner;
};

// A libcurl multi handle on `loop` (which must outlive it). Call on the loop thread. Checks that
// the TLS files exist and are readable. Errors: kConfig naming the file or option, kIo.
// With tls.server_name set, https requests carry that name as SNI and as the Host header and
// are verified against it, while the connection goes to the URL's host and port. Response
// bodies over 16 MiB fail the request. Destroy it after `closed` ran (any thread), or on the
// loop thread at any time: it then closes itself first.
Result<std::unique_ptr<HttpClient>> makeCurlHttpClient(platform::EventLoop& loop,
                                                       const HttpClientOptions& options);

}  // namespace cistern::transport
