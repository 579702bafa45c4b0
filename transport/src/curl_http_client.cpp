// CurlHttpClient: HttpClient on libcurl's multi interface, driven by the agent's libuv loop.
//
// libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket)
// and when to call it back (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); events go back through
// curl_multi_socket_action, and finished transfers are collected with curl_multi_info_read.
// Everything runs on the loop thread.
//
// Choices the header leaves open:
// - Keep-alive comes from the multi handle's connection cache: one easy handle per request,
//   connections outlive them. At most options.max_connections connections exist at once (to all
//   hosts together); requests beyond that wait inside libcurl for a free connection.
// - TLS sessions are shared between the client's requests (a curl share handle), so a new
//   connection to a known server resumes its session instead of a full handshake.
// - TlsClientOptions::server_name is applied with CURLOPT_CONNECT_TO: the URL's host is replaced
//   by server_name (so libcurl sends it as SNI, verifies the certificate against it, and sends it
//   as the Host header) and the connection goes to the URL's real host and port. CURLOPT_RESOLVE
//   would need an IP address, i.e. a resolution of our own on the loop. Only https:// URLs are
//   rewritten; plain HTTP has nothing to verify.
// - A server that wants a client certificate and gets none may still complete the handshake and
//   answer in HTTP (nginx: 400 "No required SSL certificate was sent"): that is an HTTP response
//   (status 400, error empty, tls_error false), since only the body tells it apart from any other
//   400. A server that aborts the handshake instead yields a TLS error (tls_error).
// - Any transport failure (curl code other than CURLE_OK) reports status 0, also when a status
//   line had arrived before it (a timeout in the middle of the body): the response is unusable.
// - Response bodies are capped at kMaxResponseBytes (OTLP and OpAMP answers are small); a larger
//   one fails the request.
// - "Expect: 100-continue" is never sent (a caller may still add it): it costs a round trip per
//   large batch, or a one-second wait with servers that ignore it.
// - Without a Content-Type among the request's headers none is sent (libcurl would otherwise
//   label every POST as a form).
// - Redirects are not followed, only http and https are allowed, proxies come only from
//   configuration (none yet: the environment's *_proxy variables are ignored).
// - DNS resolution: Debian's libcurl uses its threaded resolver (feature AsynchDNS), so a name
//   lookup never blocks the loop. A libcurl without it is logged as a warning once per process.
#include <fcntl.h>
#include <unistd.h>
#include <uv.h>

#include <curl/curl.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cistern/transport/http_client.h"
#include "transport_log.h"

namespace cistern::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxResponseBytes = std::size_t{16} << 20U;
// Retry-After values beyond this are taken as this: a receiver (or a clock far off) must not
// park an output for days.
constexpr std::chrono::milliseconds kMaxRetryAfter = std::chrono::hours(1);
constexpr long kTcpKeepIdleSeconds = 60;
constexpr long kTcpKeepIntervalSeconds = 20;

// curl_global_init is not thread-safe and must run once per process before any other call.
Status initCurlOnce() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] {
    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) return;
    const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
    if ((info->features & CURL_VERSION_ASYNCHDNS) == 0) {
      transportLogger()->warn(
          "libcurl {} has no asynchronous resolver: DNS lookups of output endpoints block the "
          "event loop; use IP addresses in endpoint URLs",
          info->version);
    }
  });
  if (rc != CURLE_OK) {
    return fail(ErrorCode::kIo, std::string("initialising libcurl: ") + curl_easy_strerror(rc));
  }
  return ok();
}

Status checkReadable(const std::string& path, const char* what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("{} '{}' cannot be read: {}", what, path, std::strerror(errno)));
  }
  ::close(fd);
  return ok();
}

struct SlistFree {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistFree>;

// Appends a line; false when libcurl could not allocate it (the list is left as it was).
bool append(Slist& list, const std::string& line) {
  curl_slist* grown = curl_slist_append(list.get(), line.c_str());
  if (grown == nullptr) return false;
  (void)list.release();
  list.reset(grown);
  return true;
}

struct UrlFree {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};
using Url = std::unique_ptr<CURLU, UrlFree>;

std::string urlPart(CURLU* url, CURLUPart part, unsigned int flags = 0) {
  char* value = nullptr;
  if (curl_url_get(url, part, &value, flags) != CURLUE_OK || value == nullptr) return {};
  std::string out(value);
  curl_free(value);
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date, as a delay from `now`, at most
// kMaxRetryAfter; a date in the past is no delay. nullopt when it is neither.
std::optional<std::chrono::milliseconds> parseRetryAfter(
    std::string_view value, std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t seconds = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    const auto cap = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(kMaxRetryAfter).count());
    if (ec == std::errc::result_out_of_range || seconds > cap) return kMaxRetryAfter;
    return std::chrono::seconds(seconds);
  }
  const std::string text(value);
  const std::time_t at = curl_getdate(text.c_str(), nullptr);
  if (at == -1) return std::nullopt;
  const auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::from_time_t(at) - now);
  return std::clamp(delay, std::chrono::milliseconds(0), kMaxRetryAfter);
}

// Codes that mean the TLS layer or its material failed: retrying will not help until the
// configuration (CA, certificates, server name) changes.
bool isTlsError(CURLcode rc) {
  switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
      return true;
    default:
      return false;
  }
}

// Codes of failures before any byte of the request could be sent.
bool isConnectError(CURLcode rc) {
  return isTlsError(rc) || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT ||
         rc == CURLE_COULDNT_RESOLVE_PROXY;
}

// Sets options in order and keeps the first failure, so that one check covers a block of
// curl_easy_setopt calls. libcurl's C++ API is variadic: every value must already have the type
// the option takes (long, curl_off_t, a pointer).
class EasyOptions {
 public:
  explicit EasyOptions(CURL* easy) : easy_(easy) {}

  template <typename T>
  EasyOptions& set(CURLoption option, T value) {
    if (rc_ == CURLE_OK) {
      rc_ = curl_easy_setopt(easy_, option, value);
      if (rc_ != CURLE_OK) failed_ = option;
    }
    return *this;
  }

  // Empty when every option was set; else which one failed and why.
  [[nodiscard]] std::string error() const {
    if (rc_ == CURLE_OK) return {};
    const curl_easyoption* opt = curl_easy_option_by_id(failed_);
    return fmt::format("setting CURLOPT_{}: {}", opt != nullptr ? opt->name : "?",
                       curl_easy_strerror(rc_));
  }

 private:
  CURL* easy_;
  CURLcode rc_ = CURLE_OK;
  CURLoption failed_{};
};

// One request from send() to its callback.
struct Transfer {
  CURL* easy = nullptr;
  HttpRequest request;      // holds the body that CURLOPT_POSTFIELDS points into
  std::string display_url;  // the URL without user information, for messages
  std::function<void(HttpResponse)> done;
  HttpResponse response;
  Slist headers;
  Slist connect_to;
  Clock::time_point started;
  bool body_too_large = false;
  char error_detail[CURL_ERROR_SIZE] = {};

  Transfer() = default;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
};

class CurlHttpClient;

// A socket libcurl asked us to watch. Freed in its close callback.
struct SocketWatch {
  uv_poll_t poll{};
  curl_socket_t fd = CURL_SOCKET_BAD;
  CurlHttpClient* client = nullptr;
};

class CurlHttpClient final : public HttpClient {
 public:
  CurlHttpClient(platform::EventLoop& loop, HttpClientOptions options)
      : loop_(loop), options_(std::move(options)) {}

  ~CurlHttpClient() override;
  CurlHttpClient(const CurlHttpClient&) = delete;
  CurlHttpClient& operator=(const CurlHttpClient&) = delete;

  Status init();

  void send(HttpRequest request, std::function<void(HttpResponse)> done) override;
  [[nodiscard]] std::size_t inFlight() const override {
    return transfers_.size() + deferred_.size() + closed_pending_.size();
  }
  void close(std::function<void()> closed) override;

  // For the owner's destructor: closes the client if it is open. Returns true when it may be
  // deleted now; false when handles are still closing, and then it deletes itself after the
  // last close callback.
  bool abandon();

 private:
  enum class State { kOpen, kClosing, kClosed };

  // libcurl and libuv callbacks (C function pointers, hence static).
  static int onCurlSocket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int onCurlTimer(CURLM* multi, long timeout_ms, void* userp);
  static void onPoll(uv_poll_t* handle, int status, int events);
  static void onTimer(uv_timer_t* handle);
  static void onDeferTimer(uv_timer_t* handle);
  static void onHandleClosed(uv_handle_t* handle);
  static std::size_t onBody(char* data, std::size_t size, std::size_t count, void* userp);
  static std::size_t onHeader(char* data, std::size_t size, std::size_t count, void* userp);

  // Builds the easy handle of `t`; empty string on success, else what failed.
  std::string configure(Transfer& t);
  int watchSocket(curl_socket_t fd, int what, SocketWatch* watch);
  void unwatchSocket(SocketWatch* watch);
  void socketAction(curl_socket_t fd, int flags);
  void collectFinished();
  void complete(Transfer& t, CURLcode rc);
  void deferFailure(std::function<void(HttpResponse)> done, HttpResponse response);
  void closeHandle(uv_handle_t* handle);
  void finishClose();

  platform::EventLoop& loop_;
  const HttpClientOptions options_;
  uv_loop_t* uv_ = nullptr;
  CURLM* multi_ = nullptr;
  CURLSH* share_ = nullptr;
  // Heap-allocated and freed in their close callbacks, like the SocketWatches.
  uv_timer_t* timer_ = nullptr;
  uv_timer_t* defer_timer_ = nullptr;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> transfers_;
  std::unordered_map<curl_socket_t, SocketWatch*> sockets_;
  // Requests that failed before reaching libcurl, answered on the next loop iteration.
  std::deque<std::pair<std::function<void(HttpResponse)>, HttpResponse>> deferred_;
  // Requests failed by close(), answered once the last handle is closed.
  std::vector<std::function<void(HttpResponse)>> closed_pending_;
  std::vector<std::function<void()>> closed_callbacks_;
  std::size_t open_handles_ = 0;
  State state_ = State::kOpen;
  bool warned_insecure_ = false;
  // Set by the destructor when handles are still closing: the last close callback deletes the
  // object.
  bool delete_when_closed_ = false;
};

CurlHttpClient::~CurlHttpClient() {
  // Reached once every loop handle is closed (abandon()); libcurl's handles are gone too unless
  // init() failed before close() could run.
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
  if (share_ != nullptr) curl_share_cleanup(share_);
}

bool CurlHttpClient::abandon() {
  if (state_ == State::kOpen) close(nullptr);
  if (state_ == State::kClosed) return true;
  delete_when_closed_ = true;
  return false;
}

Status CurlHttpClient::init() {
  uv_ = static_cast<uv_loop_t*>(loop_.uvLoop());
  multi_ = curl_multi_init();
  share_ = curl_share_init();
  if (multi_ == nullptr || share_ == nullptr) {
    return fail(ErrorCode::kIo, "creating a libcurl multi handle failed");
  }
  if (CURLSHcode rc = curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
      rc != CURLSHE_OK) {
    return fail(ErrorCode::kIo, std::string("sharing TLS sessions: ") + curl_share_strerror(rc));
  }
  const auto max = static_cast<long>(options_.max_connections);
  CURLMcode rc = CURLM_OK;
  const auto set = [&](CURLMoption option, auto value) {
    if (rc == CURLM_OK) rc = curl_multi_setopt(multi_, option, value);
  };
  set(CURLMOPT_SOCKETFUNCTION, &CurlHttpClient::onCurlSocket);
  set(CURLMOPT_SOCKETDATA, static_cast<void*>(this));
  set(CURLMOPT_TIMERFUNCTION, &CurlHttpClient::onCurlTimer);
  set(CURLMOPT_TIMERDATA, static_cast<void*>(this));
  set(CURLMOPT_MAX_HOST_CONNECTIONS, max);
  set(CURLMOPT_MAX_TOTAL_CONNECTIONS, max);
  set(CURLMOPT_MAXCONNECTS, max);
  // HTTP/1.1 only: one request per connection at a time.
  set(CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_NOTHING));
  if (rc != CURLM_OK) {
    return fail(ErrorCode::kIo,
                std::string("configuring the libcurl multi handle: ") + curl_multi_strerror(rc));
  }

  for (uv_timer_t** slot : {&timer_, &defer_timer_}) {
    auto timer = std::make_unique<uv_timer_t>();
    timer->data = this;
    if (int err = uv_timer_init(uv_, timer.get()); err != 0) {
      return fail(ErrorCode::kIo, std::string("creating a timer: ") + uv_strerror(err));
    }
    // A loop handle now: freed in its close callback.
    *slot = timer.release();
    ++open_handles_;
  }
  return ok();
}

void CurlHttpClient::send(HttpRequest request, std::function<void(HttpResponse)> done) {
  assert(loop_.inLoopThread());
  if (state_ != State::kOpen) {
    // Our timers are closed or closing; the loop's own queue still runs callbacks later.
    HttpResponse response;
    response.error = "closed";
    if (!loop_.post([done = std::move(done), response = std::move(response)]() mutable {
          done(std::move(response));
        })) {
      transportLogger()->warn("{}: request to a closed client dropped: the event loop is stopping",
                              options_.owner);
    }
    return;
  }
  auto t = std::make_unique<Transfer>();
  t->started = Clock::now();
  t->request = std::move(request);
  t->display_url = t->request.url;
  t->done = std::move(done);
  if (std::string error = configure(*t); !error.empty()) {
    t->response.error = std::move(error);
    t->response.elapsed = Clock::now() - t->started;
    deferFailure(std::move(t->done), std::move(t->response));
    return;
  }
  if (CURLMcode rc = curl_multi_add_handle(multi_, t->easy); rc != CURLM_OK) {
    t->response.error = fmt::format("{} {}: adding the request to libcurl: {}", t->request.method,
                                    t->display_url, curl_multi_strerror(rc));
    t->response.elapsed = Clock::now() - t->started;
    deferFailure(std::move(t->done), std::move(t->response));
    return;
  }
  CURL* easy = t->easy;
  transfers_.emplace(easy, std::move(t));
}

std::string CurlHttpClient::configure(Transfer& t) {
  const HttpRequest& req = t.request;
  const std::string& method = req.method;
  Url url(curl_url());
  if (!url) return "out of memory";
  if (CURLUcode rc = curl_url_set(url.get(), CURLUPART_URL, req.url.c_str(), 0); rc != CURLUE_OK) {
    return fmt::format("{} {}: invalid URL: {}", method, req.url, curl_url_strerror(rc));
  }
  const std::string scheme = urlPart(url.get(), CURLUPART_SCHEME);
  const bool https = scheme == "https";
  if (!https && scheme != "http") {
    return fmt::format("{} {}: scheme '{}' is not http or https", method, req.url, scheme);
  }
  // Messages and logs must not carry credentials embedded in a URL.
  curl_url_set(url.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(url.get(), CURLUPART_PASSWORD, nullptr, 0);
  t.display_url = urlPart(url.get(), CURLUPART_URL);
  if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) {
        return std::isupper(static_cast<unsigned char>(c)) != 0;
      })) {
    return fmt::format("request to {}: invalid method '{}'", t.display_url, method);
  }
  if (req.timeout.count() < 0) return fmt::format("{} {}: negative timeout", method, t.display_url);

  std::string effective_url = req.url;
  const TlsClientOptions& tls = options_.tls;
  if (https && !tls.server_name.empty()) {
    Url rewritten(curl_url());
    if (!rewritten) return "out of memory";
    curl_url_set(rewritten.get(), CURLUPART_URL, req.url.c_str(), 0);
    const std::string host = urlPart(rewritten.get(), CURLUPART_HOST);
    const std::string port = urlPart(rewritten.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
    if (CURLUcode rc = curl_url_set(rewritten.get(), CURLUPART_HOST, tls.server_name.c_str(), 0);
        rc != CURLUE_OK) {
      return fmt::format("{} {}: server name '{}' is not a valid host name: {}", method,
                         t.display_url, tls.server_name, curl_url_strerror(rc));
    }
    effective_url = urlPart(rewritten.get(), CURLUPART_URL);
    if (!append(t.connect_to, fmt::format("{}:{}:{}:{}", tls.server_name, port, host, port))) {
      return "out of memory";
    }
  }

  bool has_content_type = false;
  bool has_expect = false;
  for (const std::string& line : req.headers) {
    if (line.find_first_of("\r\n") != std::string::npos || line.find(':') == std::string::npos) {
      return fmt::format("{} {}: malformed header line", method, t.display_url);
    }
    const std::string_view name = trim(std::string_view(line).substr(0, line.find(':')));
    has_content_type = has_content_type || equalsIgnoreCase(name, "Content-Type");
    has_expect = has_expect || equalsIgnoreCase(name, "Expect");
    if (!append(t.headers, line)) return "out of memory";
  }
  if ((!has_content_type && !append(t.headers, "Content-Type:")) ||
      (!has_expect && !append(t.headers, "Expect:"))) {
    return "out of memory";
  }

  t.easy = curl_easy_init();
  if (t.easy == nullptr) return "out of memory";
  EasyOptions opts(t.easy);
  opts.set(CURLOPT_URL, effective_url.c_str())
      .set(CURLOPT_PROTOCOLS_STR, "http,https")
      .set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1))
      .set(CURLOPT_NOSIGNAL, 1L)
      .set(CURLOPT_PROXY, "")
      .set(CURLOPT_FOLLOWLOCATION, 0L)
      .set(CURLOPT_SHARE, share_)
      .set(CURLOPT_ERRORBUFFER, t.error_detail)
      .set(CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()))
      .set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()))
      .set(CURLOPT_TCP_KEEPALIVE, 1L)
      .set(CURLOPT_TCP_KEEPIDLE, kTcpKeepIdleSeconds)
      .set(CURLOPT_TCP_KEEPINTVL, kTcpKeepIntervalSeconds)
      .set(CURLOPT_HTTPHEADER, t.headers.get())
      .set(CURLOPT_WRITEFUNCTION, &CurlHttpClient::onBody)
      .set(CURLOPT_WRITEDATA, static_cast<void*>(&t))
      .set(CURLOPT_HEADERFUNCTION, &CurlHttpClient::onHeader)
      .set(CURLOPT_HEADERDATA, static_cast<void*>(&t));
  if (t.connect_to) opts.set(CURLOPT_CONNECT_TO, t.connect_to.get());

  const bool has_body = req.body != nullptr;
  if (method == "GET" && !has_body) {
    opts.set(CURLOPT_HTTPGET, 1L);
  } else if (method == "HEAD" && !has_body) {
    opts.set(CURLOPT_NOBODY, 1L);
  } else {
    // The body is sent from the shared string in place; `t.request` keeps it alive until the
    // transfer is done.
    static const char kEmpty[] = "";
    opts.set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(has_body ? req.body->size() : 0))
        .set(CURLOPT_POSTFIELDS, has_body ? req.body->data() : kEmpty);
    if (method != "POST") opts.set(CURLOPT_CUSTOMREQUEST, method.c_str());
  }

  if (https) {
    opts.set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!tls.ca_file.empty()) opts.set(CURLOPT_CAINFO, tls.ca_file.c_str());
    if (!tls.cert_file.empty()) {
      opts.set(CURLOPT_SSLCERT, tls.cert_file.c_str())
          .set(CURLOPT_SSLCERTTYPE, "PEM")
          .set(CURLOPT_SSLKEY, tls.key_file.c_str())
          .set(CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (tls.insecure_skip_verify) {
      opts.set(CURLOPT_SSL_VERIFYPEER, 0L).set(CURLOPT_SSL_VERIFYHOST, 0L);
      if (!warned_insecure_) {
        warned_insecure_ = true;
        transportLogger()->warn(
            "{}: TLS certificate verification is off (insecure_skip_verify): the server at {} is "
            "not authenticated",
            options_.owner, t.display_url);
      }
    } else {
      opts.set(CURLOPT_SSL_VERIFYPEER, 1L).set(CURLOPT_SSL_VERIFYHOST, 2L);
    }
  }
  if (std::string error = opts.error(); !error.empty()) {
    return fmt::format("{} {}: {}", method, t.display_url, error);
  }
  return {};
}

std::size_t CurlHttpClient::onBody(char* data, std::size_t size, std::size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const std::size_t n = size * count;
  if (t->response.body.size() + n > kMaxResponseBytes) {
    t->body_too_large = true;
    return 0;  // makes libcurl fail the transfer with CURLE_WRITE_ERROR
  }
  t->response.body.append(data, n);
  return n;
}

std::size_t CurlHttpClient::onHeader(char* data, std::size_t size, std::size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const std::size_t n = size * count;
  const std::string_view line(data, n);
  // A new status line starts a new response (after a 1xx): forget the previous one's headers.
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.retry_after.reset();
    return n;
  }
  const std::size_t colon = line.find(':');
  if (colon != std::string_view::npos &&
      equalsIgnoreCase(trim(line.substr(0, colon)), "Retry-After")) {
    t->response.retry_after =
        parseRetryAfter(line.substr(colon + 1), std::chrono::system_clock::now());
  }
  return n;
}

int CurlHttpClient::onCurlSocket(CURL* /*easy*/, curl_socket_t fd, int what, void* userp,
                                 void* socketp) {
  auto* self = static_cast<CurlHttpClient*>(userp);
  auto* watch = static_cast<SocketWatch*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (watch != nullptr) self->unwatchSocket(watch);
    return 0;
  }
  if (self->state_ != State::kOpen) return 0;
  return self->watchSocket(fd, what, watch);
}

int CurlHttpClient::watchSocket(curl_socket_t fd, int what, SocketWatch* watch) {
  if (watch == nullptr) {
    auto fresh = std::make_unique<SocketWatch>();
    fresh->fd = fd;
    fresh->client = this;
    fresh->poll.data = fresh.get();
    if (int err = uv_poll_init_socket(uv_, &fresh->poll, fd); err != 0) {
      // libcurl fails every transfer of the multi handle when this callback returns -1.
      transportLogger()->error("{}: watching socket {}: {}", options_.owner, fd, uv_strerror(err));
      return -1;
    }
    watch = fresh.release();
    ++open_handles_;
    sockets_[fd] = watch;
    curl_multi_assign(multi_, fd, watch);
  }
  int events = 0;
  if ((what & CURL_POLL_IN) != 0) events |= UV_READABLE;
  if ((what & CURL_POLL_OUT) != 0) events |= UV_WRITABLE;
  const int err = events != 0 ? uv_poll_start(&watch->poll, events, &CurlHttpClient::onPoll)
                              : uv_poll_stop(&watch->poll);
  if (err != 0) {
    transportLogger()->error("{}: polling socket {}: {}", options_.owner, fd, uv_strerror(err));
    return -1;
  }
  return 0;
}

void CurlHttpClient::unwatchSocket(SocketWatch* watch) {
  sockets_.erase(watch->fd);
  if (multi_ != nullptr) curl_multi_assign(multi_, watch->fd, nullptr);
  closeHandle(reinterpret_cast<uv_handle_t*>(&watch->poll));
}

int CurlHttpClient::onCurlTimer(CURLM* /*multi*/, long timeout_ms, void* userp) {
  auto* self = static_cast<CurlHttpClient*>(userp);
  if (self->state_ != State::kOpen) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(self->timer_);
    return 0;
  }
  // libcurl must not be called back from inside this callback: even a zero timeout goes
  // through the loop.
  const int err = uv_timer_start(self->timer_, &CurlHttpClient::onTimer,
                                 static_cast<std::uint64_t>(timeout_ms), 0);
  if (err != 0) {
    transportLogger()->error("{}: starting a timer: {}", self->options_.owner, uv_strerror(err));
    return -1;
  }
  return 0;
}

void CurlHttpClient::onTimer(uv_timer_t* handle) {
  static_cast<CurlHttpClient*>(handle->data)->socketAction(CURL_SOCKET_TIMEOUT, 0);
}

void CurlHttpClient::onPoll(uv_poll_t* handle, int status, int events) {
  auto* watch = static_cast<SocketWatch*>(handle->data);
  int flags = 0;
  if (status < 0) flags |= CURL_CSELECT_ERR;
  if ((events & UV_READABLE) != 0) flags |= CURL_CSELECT_IN;
  if ((events & UV_WRITABLE) != 0) flags |= CURL_CSELECT_OUT;
  watch->client->socketAction(watch->fd, flags);
}

void CurlHttpClient::socketAction(curl_socket_t fd, int flags) {
  if (state_ != State::kOpen) return;
  int running = 0;
  if (CURLMcode rc = curl_multi_socket_action(multi_, fd, flags, &running); rc != CURLM_OK) {
    transportLogger()->error("{}: libcurl socket action: {}", options_.owner,
                             curl_multi_strerror(rc));
  }
  collectFinished();
}

void CurlHttpClient::collectFinished() {
  // Answered after the loop over libcurl's messages, so that a callback that sends (or closes)
  // does not run while libcurl's message queue is being read.
  std::vector<std::unique_ptr<Transfer>> finished;
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    const CURLcode rc = msg->data.result;
    auto it = transfers_.find(easy);
    curl_multi_remove_handle(multi_, easy);
    if (it == transfers_.end()) continue;
    std::unique_ptr<Transfer> t = std::move(it->second);
    transfers_.erase(it);
    complete(*t, rc);
    finished.push_back(std::move(t));
  }
  for (auto& t : finished) {
    auto done = std::move(t->done);
    HttpResponse response = std::move(t->response);
    t.reset();  // frees the easy handle and the body before the owner's next step
    done(std::move(response));
  }
}

void CurlHttpClient::complete(Transfer& t, CURLcode rc) {
  HttpResponse& r = t.response;
  r.elapsed = Clock::now() - t.started;
  if (rc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    r.status = static_cast<int>(status);
    return;
  }
  r.status = 0;
  r.body.clear();
  r.retry_after.reset();
  r.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
  r.tls_error = isTlsError(rc);
  const char* what = isConnectError(rc) ? "connecting to" : t.request.method.c_str();
  if (t.body_too_large) {
    r.error = fmt::format("{} {}: response body larger than {} MiB", what, t.display_url,
                          kMaxResponseBytes >> 20U);
  } else if (t.error_detail[0] != '\0') {
    r.error =
        fmt::format("{} {}: {} ({})", what, t.display_url, curl_easy_strerror(rc), t.error_detail);
  } else {
    r.error = fmt::format("{} {}: {}", what, t.display_url, curl_easy_strerror(rc));
  }
}

void CurlHttpClient::deferFailure(std::function<void(HttpResponse)> done, HttpResponse response) {
  deferred_.emplace_back(std::move(done), std::move(response));
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(defer_timer_)) == 0) {
    uv_timer_start(defer_timer_, &CurlHttpClient::onDeferTimer, 0, 0);
  }
}

void CurlHttpClient::onDeferTimer(uv_timer_t* handle) {
  auto* self = static_cast<CurlHttpClient*>(handle->data);
  // Only those queued so far: a callback that sends a bad request again is answered on the
  // next iteration, not in an endless loop here.
  for (std::size_t n = self->deferred_.size(); n > 0 && !self->deferred_.empty(); --n) {
    auto [done, response] = std::move(self->deferred_.front());
    self->deferred_.pop_front();
    done(std::move(response));
    if (self->state_ != State::kOpen) return;  // close() took over the rest
  }
}

void CurlHttpClient::close(std::function<void()> closed) {
  assert(loop_.inLoopThread());
  if (closed) closed_callbacks_.push_back(std::move(closed));
  if (state_ == State::kClosing) return;
  if (state_ == State::kClosed) {
    for (auto& cb : closed_callbacks_) loop_.post(std::move(cb));
    closed_callbacks_.clear();
    return;
  }
  state_ = State::kClosing;
  for (auto& [done, response] : deferred_) closed_pending_.push_back(std::move(done));
  deferred_.clear();
  for (auto& [easy, t] : transfers_) {
    curl_multi_remove_handle(multi_, easy);
    closed_pending_.push_back(std::move(t->done));
  }
  // Easy handles go before the multi and the share they are attached to.
  transfers_.clear();
  if (multi_ != nullptr) {
    // Closes the cached connections; libcurl may report their sockets as removed: whatever is
    // still watched afterwards is closed below.
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
  }
  for (auto& [fd, watch] : sockets_) {
    closeHandle(reinterpret_cast<uv_handle_t*>(&watch->poll));
  }
  sockets_.clear();
  for (uv_timer_t** slot : {&timer_, &defer_timer_}) {
    if (*slot != nullptr) closeHandle(reinterpret_cast<uv_handle_t*>(*slot));
    *slot = nullptr;
  }
  // Only when init() failed before any handle existed: there is no close callback to wait for.
  if (open_handles_ == 0) finishClose();
}

void CurlHttpClient::closeHandle(uv_handle_t* handle) {
  uv_close(handle, &CurlHttpClient::onHandleClosed);
}

void CurlHttpClient::onHandleClosed(uv_handle_t* handle) {
  CurlHttpClient* self = nullptr;
  if (handle->type == UV_POLL) {
    auto* watch = static_cast<SocketWatch*>(handle->data);
    self = watch->client;
    delete watch;
  } else {
    self = static_cast<CurlHttpClient*>(handle->data);
    delete reinterpret_cast<uv_timer_t*>(handle);
  }
  if (--self->open_handles_ == 0 && self->state_ == State::kClosing) self->finishClose();
}

void CurlHttpClient::finishClose() {
  state_ = State::kClosed;
  if (share_ != nullptr) {
    if (CURLSHcode rc = curl_share_cleanup(share_); rc != CURLSHE_OK) {
      transportLogger()->error("{}: releasing the TLS session cache: {}", options_.owner,
                               curl_share_strerror(rc));
    }
    share_ = nullptr;
  }
  // Callbacks may destroy this client (after `closed`) or send to it: take what they need first.
  auto pending = std::move(closed_pending_);
  auto callbacks = std::move(closed_callbacks_);
  closed_pending_.clear();
  closed_callbacks_.clear();
  if (delete_when_closed_) delete this;
  for (auto& done : pending) {
    HttpResponse response;
    response.error = "closed";
    done(std::move(response));
  }
  for (auto& cb : callbacks) cb();
}

// The object makeCurlHttpClient returns. The client's libuv handles are freed in their close
// callbacks, which may come after the owner let go of it: destroying this closes the client if
// its owner did not, and leaves the client to delete itself after the last close callback.
class CurlHttpClientHandle final : public HttpClient {
 public:
  explicit CurlHttpClientHandle(std::unique_ptr<CurlHttpClient> impl) : impl_(std::move(impl)) {}
  ~CurlHttpClientHandle() override {
    if (!impl_->abandon()) (void)impl_.release();
  }
  CurlHttpClientHandle(const CurlHttpClientHandle&) = delete;
  CurlHttpClientHandle& operator=(const CurlHttpClientHandle&) = delete;

  void send(HttpRequest request, std::function<void(HttpResponse)> done) override {
    impl_->send(std::move(request), std::move(done));
  }
  [[nodiscard]] std::size_t inFlight() const override { return impl_->inFlight(); }
  void close(std::function<void()> closed) override { impl_->close(std::move(closed)); }

 private:
  std::unique_ptr<CurlHttpClient> impl_;
};

}  // namespace

Result<std::unique_ptr<HttpClient>> makeCurlHttpClient(platform::EventLoop& loop,
                                                       const HttpClientOptions& options) {
  if (options.max_connections == 0) {
    return fail(ErrorCode::kConfig, "max_connections must be at least 1");
  }
  if (options.connect_timeout.count() < 0) {
    return fail(ErrorCode::kConfig, "connect_timeout must not be negative");
  }
  const TlsClientOptions& tls = options.tls;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return fail(ErrorCode::kConfig, "a client certificate needs both cert_file and key_file");
  }
  for (const auto& [path, what] :
       {std::pair{&tls.ca_file, "CA file"}, std::pair{&tls.cert_file, "client certificate"},
        std::pair{&tls.key_file, "client key"}}) {
    if (path->empty()) continue;
    if (Status readable = checkReadable(*path, what); !readable) {
      return tl::unexpected(readable.error());
    }
  }
  if (Status init = initCurlOnce(); !init) return tl::unexpected(init.error());

  HttpClientOptions copy = options;
  if (copy.owner.empty()) copy.owner = "HTTP client";
  auto impl = std::make_unique<CurlHttpClient>(loop, std::move(copy));
  const Status started = impl->init();
  // On failure the handle's destructor closes whatever init() had opened.
  auto client = std::make_unique<CurlHttpClientHandle>(std::move(impl));
  if (!started) return tl::unexpected(started.error());
  return client;
}

}  // namespace cistern::transport
