#include "output_senders.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "cistern/transport/http_client.h"
#include "file_sender.h"
#include "otlp_sender.h"
#include "syslog_sender.h"

namespace cistern::transport {
namespace {

// An OTLP output's HTTP client: one connection pool shared by its endpoints' senders.
class SharedHttpClient final : public SharedResources {
 public:
  explicit SharedHttpClient(std::unique_ptr<HttpClient> client) : client_(std::move(client)) {}
  void close(std::function<void()> closed) override { client_->close(std::move(closed)); }
  [[nodiscard]] HttpClient& client() { return *client_; }

 private:
  std::unique_ptr<HttpClient> client_;
};

// Closes the senders made before a later one of the same output failed, then what they share,
// and frees them once everything is closed (never inside a callback of their own).
void closeOnError(platform::EventLoop& loop, OutputSenders out) {
  auto holder = std::make_shared<OutputSenders>(std::move(out));
  auto release = [&loop, holder]() mutable { loop.post([holder]() mutable { holder.reset(); }); };
  auto closeShared = [holder, release]() mutable {
    if (holder->shared) {
      holder->shared->close(release);
    } else {
      release();
    }
  };
  auto remaining = std::make_shared<std::size_t>(holder->senders.size());
  if (*remaining == 0) {
    closeShared();
    return;
  }
  for (auto& sender : holder->senders) {
    sender->close([remaining, closeShared]() mutable {
      if (--*remaining == 0) closeShared();
    });
  }
}

Result<OutputSenders> makeOtlpSenders(platform::EventLoop& loop, const OtlpOutputOptions& options,
                                      const Identity& identity) {
  HttpClientOptions http;
  http.tls = options.tls;
  http.max_connections = options.max_connections;
  http.connect_timeout = std::min(options.timeout, std::chrono::milliseconds(10000));
  http.owner = fmt::format("output '{}'", options.name);
  auto client = makeCurlHttpClient(loop, http);
  if (!client) {
    return fail(client.error().code,
                fmt::format("output '{}': {}", options.name, client.error().message));
  }
  auto shared = std::make_unique<SharedHttpClient>(std::move(*client));
  OutputSenders out;
  std::string errors;
  for (const auto& endpoint : options.endpoints) {
    auto sender = makeOtlpSender(loop, shared->client(), endpoint, options, identity);
    if (!sender) {
      errors += (errors.empty() ? "" : "\n") + sender.error().message;
      continue;
    }
    out.senders.push_back(std::move(*sender));
  }
  out.shared = std::move(shared);
  if (!errors.empty()) {
    // The senders made so far go with `out`, whose client must still be closed on the loop.
    closeOnError(loop, std::move(out));
    return fail(ErrorCode::kConfig, errors);
  }
  return out;
}

Result<OutputSenders> makeSyslogSenders(platform::EventLoop& loop,
                                        const SyslogOutputOptions& options,
                                        const Identity& identity) {
  auto tls = loadSyslogTlsConfig(options);
  if (!tls) return tl::unexpected(tls.error());
  OutputSenders out;
  std::string errors;
  for (const auto& endpoint : options.endpoints) {
    auto sender = makeSyslogSender(loop, endpoint, options, identity, *tls);
    if (!sender) {
      errors += (errors.empty() ? "" : "\n") + sender.error().message;
      continue;
    }
    out.senders.push_back(std::move(*sender));
  }
  if (!errors.empty()) {
    closeOnError(loop, std::move(out));
    return fail(ErrorCode::kConfig, errors);
  }
  return out;
}

}  // namespace

Result<OutputSenders> makeOutputSenders(platform::EventLoop& loop, const OutputOptions& options,
                                        const Identity& identity) {
  OutputSenders out;
  if (const auto* file = std::get_if<FileOutputOptions>(&options)) {
    auto sender = makeFileSender(loop, *file, identity.version);
    if (!sender) return tl::unexpected(sender.error());
    out.senders.push_back(std::move(*sender));
    return out;
  }
  if (const auto* otlp = std::get_if<OtlpOutputOptions>(&options)) {
    return makeOtlpSenders(loop, *otlp, identity);
  }
  return makeSyslogSenders(loop, std::get<SyslogOutputOptions>(options), identity);
}

BatchOptions batchOptionsOf(const OutputOptions& options) {
  return std::visit([](const auto& o) { return o.batch; }, options);
}

RetryOptions retryOptionsOf(const OutputOptions& options) {
  return std::visit(
      [](const auto& o) -> RetryOptions {
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, FileOutputOptions>) {
          // A local disk has no endpoints to fail over to; retry a full or failing disk gently.
          RetryOptions r;
          r.initial_backoff = std::chrono::milliseconds(1000);
          r.max_backoff = std::chrono::milliseconds(30000);
          return r;
        } else {
          return o.retry;
        }
      },
      options);
}

}  // namespace cistern::transport

namespace cistern::transport {

HeartbeatOptions heartbeatOptionsOf(const OutputOptions& options) {
  return std::visit(
      [](const auto& o) -> HeartbeatOptions {
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, FileOutputOptions>) {
          return HeartbeatOptions{};
        } else {
          return o.heartbeat;
        }
      },
      options);
}

DrainOptions drainOptionsOf(const OutputOptions& options) {
  return std::visit(
      [](const auto& o) -> DrainOptions {
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, FileOutputOptions>) {
          return DrainOptions{};
        } else {
          return o.drain;
        }
      },
      options);
}

}  // namespace cistern::transport
