// OpampClient on the event loop: one report in flight at a time, a uv timer for the next one
// (heartbeat, a change after change_delay, or a retry after backoff), the OpampSession for what
// a report carries, and the agent's callbacks. Everything below runs on the loop thread unless
// a comment says otherwise.
#include <uv.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cistern/heartbeat/opamp.h"
#include "cistern/transport/http_client.h"
#include "config_signature.h"
#include "heartbeat_log.h"
#include "opamp_codec.h"
#include "opamp_session.h"

namespace cistern::heartbeat {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The first retry after a failure waits this long (or max_backoff when shorter), doubling.
constexpr milliseconds kInitialBackoff{1000};
// The longest a server's Retry-After or retry_info may hold the next attempt.
constexpr milliseconds kMaxRetryAfter{std::chrono::hours(1)};
// A server's heartbeat_interval_seconds is kept within these.
constexpr milliseconds kMinServerInterval{1000};
constexpr milliseconds kMaxServerInterval{std::chrono::hours(24)};
// Failures after the first of a run are logged at most this often.
constexpr auto kWarnInterval = std::chrono::seconds(60);
constexpr std::size_t kMaxBodyInError = 200;
// stop(): the longest the loop may take to close the HTTP client and the timer.
constexpr auto kCloseWait = std::chrono::seconds(10);

// Counter indexes, in OpampStatus order.
enum CounterIndex : std::size_t {
  kRequestsOk,
  kRequestsFailed,
  kRemoteConfigsReceived,
  kRemoteConfigsRefused,
  kRemoteConfigsApplied,
  kRemoteConfigsFailed,
  kFullStateReports,
  kHeartbeatIntervalMs,
  kRetryDelayMs,
  kCounterCount,
};
constexpr std::array<const char*, kCounterCount> kCounterNames = {
    "requests_ok",
    "requests_failed",
    "remote_configs_received",
    "remote_configs_refused",
    "remote_configs_applied",
    "remote_configs_failed",
    "full_state_reports",
    "heartbeat_interval_ms",
    "retry_delay_ms",
};

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

bool isSpaceOrControl(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c <= 0x20U || c == 0x7fU;
}

// The agent's config checks these too; create() checks again because a URL of another scheme
// would reach libcurl, which speaks more than HTTP.
Status checkEndpoint(const std::string& endpoint) {
  const std::size_t host = startsWithNoCase(endpoint, "https://")  ? 8
                           : startsWithNoCase(endpoint, "http://") ? 7
                                                                   : 0;
  if (host == 0 || host == endpoint.size() || endpoint[host] == '/' ||
      std::any_of(endpoint.begin(), endpoint.end(), isSpaceOrControl)) {
    return fail(ErrorCode::kConfig,
                fmt::format("opamp.endpoint '{}': not an http:// or https:// URL with a host and "
                            "without spaces",
                            endpoint));
  }
  return ok();
}

Status checkHeader(const std::string& header) {
  const std::string_view name = std::string_view(header).substr(0, header.find(':'));
  if (name.size() == header.size() || name.empty() ||
      std::any_of(name.begin(), name.end(), isSpaceOrControl) ||
      header.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    return fail(ErrorCode::kConfig,
                fmt::format("opamp.headers: '{}' is not a 'Name: value' header", header));
  }
  if (startsWithNoCase(name, "content-type") && name.size() == 12) {
    return fail(ErrorCode::kConfig,
                "opamp.headers: Content-Type is application/x-protobuf and cannot be changed");
  }
  return ok();
}

// What a server said, made safe for an error message and a log line.
std::string sanitize(std::string_view text) {
  std::string out;
  text = text.substr(0, kMaxBodyInError);
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    out += c < 0x20U || c >= 0x7fU ? ' ' : ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

class OpampClientImpl final : public OpampClient {
 public:
  OpampClientImpl(platform::EventLoop& loop, OpampOptions options, const InstanceUid& instance_uid,
                  AgentDescription description, OpampAgent& agent, std::string applied_hash,
                  std::unique_ptr<ConfigSignatureVerifier> verifier)
      : loop_(loop),
        options_(std::move(options)),
        agent_(agent),
        verifier_(std::move(verifier)),
        session_(instance_uid, std::move(description), std::move(applied_hash)),
        rng_(std::random_device{}()) {
    headers_.emplace_back("Content-Type: application/x-protobuf");
    headers_.insert(headers_.end(), options_.headers.begin(), options_.headers.end());
    counters_[kHeartbeatIntervalMs] = static_cast<std::uint64_t>(interval().count());
    publishRemoteConfigStatus();
  }

  ~OpampClientImpl() override { stop(milliseconds(0)); }
  OpampClientImpl(const OpampClientImpl&) = delete;
  OpampClientImpl& operator=(const OpampClientImpl&) = delete;

  // Makes the HTTP client and the timer on the loop. Not from the loop thread.
  Status init() {
    Status result = fail(ErrorCode::kClosed, "opamp: the event loop is stopped");
    loop_.runSync([&] {
      transport::HttpClientOptions http;
      http.tls = options_.tls;
      http.max_connections = 2;  // a report and the AgentDisconnect at stop
      http.connect_timeout = std::min(options_.timeout, milliseconds(10000));
      http.owner = "opamp";
      auto client = transport::makeCurlHttpClient(loop_, http);
      if (!client) {
        result = fail(client.error().code, "opamp: " + client.error().message);
        return;
      }
      http_ = std::move(*client);
      uv_timer_init(static_cast<uv_loop_t*>(loop_.uvLoop()), &timer_);
      timer_.data = this;
      timer_ready_ = true;
      result = ok();
    });
    return result;
  }

  void start() override {
    postIfRunning([this] {
      if (started_ || stopping_) return;
      started_ = true;
      heartbeatLogger()->info("opamp: reporting to {} every {} ms (instance {})", options_.endpoint,
                              interval().count(), formatUuid(session_.instanceUid()));
      sendReport();
    });
  }

  void notifyChanged() override {
    postIfRunning([this] { changed(); });
  }

  void reportRemoteConfig(const std::string& hash, RemoteConfigState state,
                          std::string error) override {
    postIfRunning([this, hash, state, error = std::move(error)]() mutable {
      if (!session_.reportRemoteConfig(hash, state, error)) {
        heartbeatLogger()->debug("opamp: ignored a {} report for remote config {} (superseded)",
                                 remoteConfigStateName(state), hexBytes(hash));
        return;
      }
      if (state == RemoteConfigState::kApplied) ++counters_[kRemoteConfigsApplied];
      if (state == RemoteConfigState::kFailed) ++counters_[kRemoteConfigsFailed];
      publishRemoteConfigStatus();
      changed();
    });
  }

  void setDescription(AgentDescription description) override {
    postIfRunning([this, description = std::move(description)]() mutable {
      session_.setDescription(std::move(description));
      changed();
    });
  }

  void stop(milliseconds wait) override {
    {
      std::lock_guard lk(post_mu_);
      if (stop_called_) return;
      stop_called_ = true;
    }
    // Everything posted before stop_called_ was set runs before this (posts run in order).
    struct Disconnect {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      void finish() {
        std::lock_guard lk(mu);
        done = true;
        cv.notify_all();
      }
    };
    auto disconnect = std::make_shared<Disconnect>();
    const bool loop_running = loop_.runSync([&] {
      stopping_ = true;
      if (timer_ready_) uv_timer_stop(&timer_);
      if (!started_ || !http_ || wait <= milliseconds(0)) {
        disconnect->finish();
        return;
      }
      transport::HttpRequest request = makeRequest(session_.disconnectMessage());
      request.timeout = std::min(wait, options_.timeout);
      http_->send(std::move(request), [disconnect](const transport::HttpResponse& r) {
        if (r.status < 200 || r.status > 299) {
          heartbeatLogger()->debug("opamp: AgentDisconnect not answered: {}",
                                   r.status == 0 ? r.error : fmt::format("HTTP {}", r.status));
        }
        disconnect->finish();
      });
    });
    if (!loop_running) {
      // The loop stopped first and closed our handles; the HTTP client cannot be closed on it
      // any more, so it is left behind rather than touching a dead loop (stop the client before
      // the loop).
      static_cast<void>(http_.release());
      return;
    }
    {
      std::unique_lock lk(disconnect->mu);
      disconnect->cv.wait_for(lk, wait, [&] { return disconnect->done; });
    }
    auto closing = std::make_shared<Disconnect>();
    loop_.runSync([&] {
      const auto closed = [this, closing] {
        if (--remaining_closes_ == 0) closing->finish();
      };
      close_done_ = closed;
      remaining_closes_ = (http_ ? 1 : 0) + (timer_ready_ ? 1 : 0);
      if (remaining_closes_ == 0) {
        closing->finish();
        return;
      }
      if (http_) http_->close(closed);
      if (timer_ready_) {
        uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
          auto* self = static_cast<OpampClientImpl*>(h->data);
          self->close_done_();
        });
      }
    });
    std::unique_lock lk(closing->mu);
    if (!closing->cv.wait_for(lk, kCloseWait, [&] { return closing->done; })) {
      heartbeatLogger()->error(
          "opamp: the HTTP client did not close within {} s",
          std::chrono::duration_cast<std::chrono::seconds>(kCloseWait).count());
    }
  }

  [[nodiscard]] OpampStatus status() const override {
    OpampStatus s;
    s.endpoint = options_.endpoint;
    s.connected = connected_.load();
    {
      std::lock_guard lk(status_mu_);
      s.last_error = last_error_;
      s.remote_config_hash = remote_config_hash_;
      s.remote_config_state = remote_config_state_;
      s.remote_config_error = remote_config_error_;
    }
    s.counters.reserve(kCounterCount);
    for (std::size_t i = 0; i < kCounterCount; ++i) {
      s.counters.push_back(Counter{kCounterNames[i], counters_[i].load(), true});
    }
    return s;
  }

 private:
  // Any thread: runs `fn` on the loop unless stop() began.
  void postIfRunning(std::function<void()> fn) {
    std::lock_guard lk(post_mu_);
    if (stop_called_) return;
    loop_.post(std::move(fn));
  }

  [[nodiscard]] milliseconds interval() const {
    return server_interval_ ? *server_interval_ : options_.heartbeat_interval;
  }

  void arm(milliseconds delay) {
    delay = std::max(delay, milliseconds(0));
    next_at_ = Clock::now() + delay;
    timer_armed_ = true;
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<OpampClientImpl*>(t->data);
          self->timer_armed_ = false;
          self->in_backoff_ = false;
          self->sendReport();
        },
        static_cast<std::uint64_t>(delay.count()), 0);
  }

  // The agent reported a change, or the remote config status changed.
  void changed() {
    change_pending_ = true;
    if (!started_ || stopping_ || report_in_flight_ || in_backoff_) return;
    const auto due = Clock::now() + options_.change_delay;
    if (!timer_armed_ || next_at_ > due) arm(options_.change_delay);
  }

  transport::HttpRequest makeRequest(const AgentToServerMessage& message) const {
    transport::HttpRequest request;
    request.url = options_.endpoint;
    request.headers = headers_;
    request.body = std::make_shared<const std::string>(encodeAgentToServer(message));
    request.timeout = options_.timeout;
    return request;
  }

  void sendReport() {
    if (stopping_ || report_in_flight_) return;
    if (timer_armed_) {
      uv_timer_stop(&timer_);
      timer_armed_ = false;
    }
    const bool full = session_.fullStateDue();
    const AgentToServerMessage message =
        session_.nextReport(agent_.health(), agent_.effectiveConfig());
    if (full) ++counters_[kFullStateReports];
    last_report_full_ = full;
    change_pending_ = false;
    report_in_flight_ = true;
    http_->send(makeRequest(message),
                [this](transport::HttpResponse response) { onAnswer(std::move(response)); });
  }

  void onAnswer(transport::HttpResponse response) {
    report_in_flight_ = false;
    if (stopping_) return;
    if (response.status == 0) {
      failed(response.error.empty() ? std::string("no answer") : response.error, std::nullopt);
      return;
    }
    if (response.status < 200 || response.status > 299) {
      const std::string body = sanitize(response.body);
      failed(fmt::format("{} answered HTTP {}{}{}", options_.endpoint, response.status,
                         body.empty() ? "" : ": ", body),
             response.retry_after);
      return;
    }
    auto decoded = decodeServerToAgent(response.body);
    if (!decoded) {
      failed(fmt::format("{} answered with {}", options_.endpoint, decoded.error().message),
             std::nullopt);
      return;
    }
    ServerToAgentMessage& answer = *decoded;
    const InstanceUid& uid = session_.instanceUid();
    if (!answer.instance_uid.empty() &&
        answer.instance_uid !=
            std::string_view(reinterpret_cast<const char*>(uid.data()), uid.size())) {
      failed(fmt::format("{} answered for another instance ({}), not {}", options_.endpoint,
                         hexBytes(answer.instance_uid), formatUuid(uid)),
             std::nullopt);
      return;
    }
    if (answer.error) {
      serverError(*answer.error);
      return;
    }
    succeeded(answer);
  }

  void succeeded(ServerToAgentMessage& answer) {
    session_.answered();
    setLastError({});
    counters_[kRetryDelayMs] = 0;
    const bool was_connected = connected_.exchange(true);
    ++counters_[kRequestsOk];
    if (!was_connected) {
      if (failures_ > 0) {
        heartbeatLogger()->info("opamp: {} answers again after {} failed requests",
                                options_.endpoint, failures_);
      } else {
        heartbeatLogger()->info("opamp: connected to {}", options_.endpoint);
      }
    }
    failures_ = 0;
    backoff_ = milliseconds(0);

    if (answer.heartbeat_interval_seconds && *answer.heartbeat_interval_seconds > 0) {
      const auto seconds = std::min<std::uint64_t>(*answer.heartbeat_interval_seconds,
                                                   static_cast<std::uint64_t>(24 * 3600));
      const auto wanted = std::clamp(milliseconds(static_cast<std::int64_t>(seconds) * 1000),
                                     kMinServerInterval, kMaxServerInterval);
      if (server_interval_ != wanted) {
        heartbeatLogger()->info("opamp: the server sets the heartbeat interval to {} s",
                                wanted.count() / 1000);
        server_interval_ = wanted;
        counters_[kHeartbeatIntervalMs] = static_cast<std::uint64_t>(wanted.count());
      }
    }
    if (!answer.new_instance_uid.empty()) adoptInstanceUid(answer.new_instance_uid);
    if (answer.command && !command_logged_) {
      command_logged_ = true;
      heartbeatLogger()->warn("opamp: the server sent a command; Cistern accepts none (ignored)");
    }
    const bool asks_full_state = (answer.flags & kReportFullState) != 0;
    if (asks_full_state) {
      heartbeatLogger()->debug("opamp: the server asks for the full state");
      session_.requestFullState();
    }
    if (answer.remote_config) offered(std::move(*answer.remote_config));

    if (session_.fullStateDue()) {
      // At once, unless the server asks for the full state in answer to the full state: a server
      // that asks again and again gets it at the heartbeat interval, not in a tight loop.
      arm(asks_full_state && last_report_full_ ? interval() : milliseconds(0));
    } else if (change_pending_) {
      arm(options_.change_delay);
    } else {
      arm(interval());
    }
  }

  void adoptInstanceUid(const std::string& bytes) {
    InstanceUid uid{};
    if (bytes.size() != uid.size()) {
      heartbeatLogger()->warn("opamp: ignored a {}-byte new instance UID (16 expected)",
                              bytes.size());
      return;
    }
    std::copy(bytes.begin(), bytes.end(), uid.begin());
    if (uid == session_.instanceUid()) return;
    heartbeatLogger()->info("opamp: the server assigned the instance UID {} (was {})",
                            formatUuid(uid), formatUuid(session_.instanceUid()));
    session_.setInstanceUid(uid);
    agent_.onInstanceUidChanged(uid);
  }

  void offered(RemoteConfig config) {
    const auto result = session_.offer(config, verifier_.get());
    switch (result.outcome) {
      case OpampSession::Offer::kNoHash:
        heartbeatLogger()->warn("opamp: ignored a remote config without config_hash");
        return;
      case OpampSession::Offer::kSameAsLast:
        heartbeatLogger()->debug("opamp: remote config {} is the one already handled; ignored",
                                 hexBytes(config.hash));
        return;
      case OpampSession::Offer::kRefused:
        ++counters_[kRemoteConfigsReceived];
        ++counters_[kRemoteConfigsRefused];
        heartbeatLogger()->error("opamp: refused remote config {}: {}", hexBytes(config.hash),
                                 result.error);
        publishRemoteConfigStatus();
        change_pending_ = true;
        return;
      case OpampSession::Offer::kAccepted:
        ++counters_[kRemoteConfigsReceived];
        heartbeatLogger()->info("opamp: received remote config {} ({} entries{})",
                                hexBytes(config.hash), config.files.size(),
                                verifier_ ? ", signature valid" : "");
        publishRemoteConfigStatus();
        change_pending_ = true;
        agent_.onRemoteConfig(std::move(config));
        return;
    }
  }

  // The server answered with a ServerErrorResponse.
  void serverError(const ServerError& error) {
    if (error.type == ServerErrorType::kUnavailable) {
      std::optional<milliseconds> retry_after;
      if (error.retry_after) {
        retry_after = std::chrono::duration_cast<milliseconds>(*error.retry_after);
      }
      failed(fmt::format("{} is unavailable: {}", options_.endpoint, sanitize(error.message)),
             retry_after);
      return;
    }
    // Unknown or BadRequest: resending the same report will not help. Counted as a failure; the
    // next report, at the heartbeat interval, carries the full state.
    const std::string text =
        fmt::format("{} refused the report ({}): {}", options_.endpoint,
                    error.type == ServerErrorType::kBadRequest ? "bad request" : "unknown error",
                    sanitize(error.message));
    setLastError(text);
    session_.lost();
    connected_ = false;
    ++counters_[kRequestsFailed];
    ++failures_;
    warnFailure(text);
    arm(interval());
  }

  void failed(const std::string& error, std::optional<milliseconds> retry_after) {
    // The error is in place before the counter moves, for readers that wait on the counter.
    setLastError(error);
    session_.lost();
    connected_ = false;
    ++failures_;
    backoff_ = backoff_ == milliseconds(0) ? std::min(kInitialBackoff, options_.max_backoff)
                                           : std::min(backoff_ * 2, options_.max_backoff);
    // Equal jitter: half the backoff plus up to as much again, so a fleet does not retry in step.
    const auto half = backoff_ / 2;
    std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(half.count(), 0));
    milliseconds delay = backoff_ - half + milliseconds(jitter(rng_));
    if (retry_after) delay = std::max(delay, std::min(*retry_after, kMaxRetryAfter));
    counters_[kRetryDelayMs] = static_cast<std::uint64_t>(delay.count());
    ++counters_[kRequestsFailed];
    warnFailure(fmt::format("{}; retrying in {} ms", error, delay.count()));
    in_backoff_ = true;
    arm(delay);
  }

  void warnFailure(const std::string& text) {
    const auto now = Clock::now();
    if (failures_ == 1 || now - last_warning_ >= kWarnInterval) {
      last_warning_ = now;
      heartbeatLogger()->warn("opamp: {} (failure {})", text, failures_);
    } else {
      heartbeatLogger()->debug("opamp: {} (failure {})", text, failures_);
    }
  }

  void setLastError(std::string error) {
    std::lock_guard lk(status_mu_);
    last_error_ = std::move(error);
  }

  void publishRemoteConfigStatus() {
    const auto& status = session_.remoteConfigStatus();
    std::lock_guard lk(status_mu_);
    remote_config_hash_ = hexBytes(status.hash);
    remote_config_state_ = status.state;
    remote_config_error_ = status.error;
  }

  platform::EventLoop& loop_;
  const OpampOptions options_;
  OpampAgent& agent_;
  const std::unique_ptr<ConfigSignatureVerifier> verifier_;
  std::vector<std::string> headers_;

  // Loop thread only.
  OpampSession session_;
  std::unique_ptr<transport::HttpClient> http_;
  uv_timer_t timer_{};
  bool timer_ready_ = false;
  bool timer_armed_ = false;
  Clock::time_point next_at_{};
  bool started_ = false;
  bool stopping_ = false;
  bool report_in_flight_ = false;
  bool change_pending_ = false;
  bool in_backoff_ = false;
  bool command_logged_ = false;
  bool last_report_full_ = false;
  milliseconds backoff_{0};
  std::optional<milliseconds> server_interval_;
  std::uint64_t failures_ = 0;
  Clock::time_point last_warning_{};
  std::mt19937_64 rng_;
  std::function<void()> close_done_;
  int remaining_closes_ = 0;

  // Any thread.
  std::mutex post_mu_;
  bool stop_called_ = false;
  std::array<std::atomic<std::uint64_t>, kCounterCount> counters_{};
  std::atomic<bool> connected_{false};
  mutable std::mutex status_mu_;
  std::string last_error_;
  std::string remote_config_hash_;
  RemoteConfigState remote_config_state_ = RemoteConfigState::kUnset;
  std::string remote_config_error_;
};

}  // namespace

const char* remoteConfigStateName(RemoteConfigState state) noexcept {
  switch (state) {
    case RemoteConfigState::kApplied:
      return "applied";
    case RemoteConfigState::kApplying:
      return "applying";
    case RemoteConfigState::kFailed:
      return "failed";
    case RemoteConfigState::kUnset:
      break;
  }
  return "unset";
}

Result<std::unique_ptr<OpampClient>> OpampClient::create(
    platform::EventLoop& loop, const OpampOptions& options, const InstanceUid& instance_uid,
    AgentDescription description, OpampAgent& agent, std::string applied_remote_config_hash) {
  if (auto checked = checkEndpoint(options.endpoint); !checked)
    return tl::unexpected(checked.error());
  for (const auto& header : options.headers) {
    if (auto checked = checkHeader(header); !checked) return tl::unexpected(checked.error());
  }
  if (options.heartbeat_interval <= milliseconds(0) || options.max_backoff <= milliseconds(0) ||
      options.timeout <= milliseconds(0) || options.change_delay < milliseconds(0)) {
    return fail(ErrorCode::kConfig,
                "opamp: heartbeat_interval, max_backoff and timeout must be positive");
  }
  std::unique_ptr<ConfigSignatureVerifier> verifier;
  if (!options.config_public_key_file.empty()) {
    auto loaded = ConfigSignatureVerifier::fromPublicKeyFile(options.config_public_key_file);
    if (!loaded) return tl::unexpected(loaded.error());
    verifier = std::move(*loaded);
  }
  auto client =
      std::make_unique<OpampClientImpl>(loop, options, instance_uid, std::move(description), agent,
                                        std::move(applied_remote_config_hash), std::move(verifier));
  if (auto initialized = client->init(); !initialized) return tl::unexpected(initialized.error());
  return std::unique_ptr<OpampClient>(std::move(client));
}

}  // namespace cistern::heartbeat
