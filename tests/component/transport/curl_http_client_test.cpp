// CurlHttpClient against a real nginx on loopback: bodies, keep-alive, the connection bound,
// statuses and Retry-After, refused connections, timeouts, TLS (CA, server name, mutual TLS),
// close() with requests in flight, and a receiver that dies and comes back.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/platform/event_loop.h"
#include "cistern/transport/http_client.h"
#include "nginx.h"
#include "test_pki.h"

namespace {

using namespace std::chrono_literals;
using cistern::platform::EventLoop;
using cistern::testing::Nginx;
using cistern::testing::NginxOptions;
using cistern::testing::NginxRequest;
using cistern::testing::testPki;
using cistern::transport::HttpClient;
using cistern::transport::HttpClientOptions;
using cistern::transport::HttpRequest;
using cistern::transport::HttpResponse;
using cistern::transport::makeCurlHttpClient;

// Bound on every wait for the loop: far above what any request here needs.
constexpr auto kWait = 30s;

HttpRequest post(const std::string& url, std::string body = "x") {
  HttpRequest r;
  r.url = url;
  r.headers = {"Content-Type: application/x-protobuf"};
  r.body = std::make_shared<const std::string>(std::move(body));
  r.timeout = 10s;
  return r;
}

HttpClientOptions withCa(const std::string& ca_file) {
  HttpClientOptions o;
  o.tls.ca_file = ca_file;
  o.owner = "test";
  return o;
}

// Accepts TCP connections (in the kernel's backlog) and never answers: requests to it stay in
// flight until they time out or are cancelled.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      FAIL("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;

  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Answers gathered from the loop thread, with how often each callback ran.
struct Answers {
  std::mutex mu;
  std::vector<HttpResponse> responses;
  std::vector<int> calls;
  std::vector<bool> inside_send;  // a callback ran before its send() returned
  std::size_t pending = 0;
  std::promise<void> all_done;
};

// An event loop with a client on it, closed and stopped at the end of the test.
class Harness {
 public:
  explicit Harness(const HttpClientOptions& options = withCa(testPki().ca_crt)) {
    auto started = EventLoop::start("http-test");
    REQUIRE(started);
    loop_ = std::move(*started);
    cistern::Result<std::unique_ptr<HttpClient>> made = nullptr;
    loop_->runSync([&] { made = makeCurlHttpClient(*loop_, options); });
    REQUIRE(made);
    client_ = std::move(*made);
  }

  ~Harness() {
    if (client_ && !closed_) (void)close();
    loop_->runSync([&] { client_.reset(); });
    loop_->stop();
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Sends all of `requests` from one loop callback and waits for every answer (REQUIREd within
  // kWait). Each callback must run exactly once, never inside send().
  std::vector<HttpResponse> sendAll(const std::vector<HttpRequest>& requests) {
    auto answers = start(requests);
    REQUIRE(answers->all_done.get_future().wait_for(kWait) == std::future_status::ready);
    return collect(*answers);
  }

  HttpResponse send(const HttpRequest& request) { return sendAll({request}).front(); }

  // Sends without waiting; the answers arrive in the returned object. `then` runs in the same
  // loop callback, right after the sends.
  std::shared_ptr<Answers> start(const std::vector<HttpRequest>& requests,
                                 const std::function<void(Answers&)>& then = nullptr) {
    auto answers = std::make_shared<Answers>();
    answers->responses.resize(requests.size());
    answers->calls.resize(requests.size());
    answers->inside_send.resize(requests.size());
    answers->pending = requests.size();
    loop_->runSync([&] {
      for (std::size_t i = 0; i < requests.size(); ++i) {
        auto in_send = std::make_shared<bool>(true);
        client_->send(requests[i], [answers, i, in_send](HttpResponse response) {
          std::lock_guard lk(answers->mu);
          answers->inside_send[i] = answers->inside_send[i] || *in_send;
          answers->responses[i] = std::move(response);
          if (++answers->calls[i] == 1 && --answers->pending == 0) answers->all_done.set_value();
        });
        *in_send = false;
      }
      if (then) then(*answers);
    });
    return answers;
  }

  static std::vector<HttpResponse> collect(Answers& answers) {
    std::lock_guard lk(answers.mu);
    for (std::size_t i = 0; i < answers.calls.size(); ++i) {
      INFO("request " << i);
      CHECK(answers.calls[i] == 1);
      CHECK_FALSE(answers.inside_send[i]);
    }
    return answers.responses;
  }

  // Closes the client; true when `closed` ran within kWait.
  bool close() {
    closed_ = true;
    auto closed = std::make_shared<std::promise<void>>();
    loop_->runSync([&] { client_->close([closed] { closed->set_value(); }); });
    return closed->get_future().wait_for(kWait) == std::future_status::ready;
  }

  std::size_t inFlight() {
    std::size_t n = 0;
    loop_->runSync([&] { n = client_->inFlight(); });
    return n;
  }

  EventLoop& loop() { return *loop_; }
  HttpClient& client() { return *client_; }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<HttpClient> client_;
  bool closed_ = false;
};

// One POST from a client made with `options`, closed afterwards.
HttpResponse postOnce(const HttpClientOptions& options, const std::string& url) {
  Harness h(options);
  return h.send(post(url));
}

void startNginx(Nginx& nginx) {
  std::string error = nginx.start();
  INFO(error);
  REQUIRE(error.empty());
}

}  // namespace

TEST_CASE("A POST delivers the whole body and gets nginx's 200", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  Harness h;

  // Larger than nginx's body buffer (1 MiB), so nginx reads it into a temp file, and than
  // libcurl's upload buffer, so it goes out in many writes.
  std::string body(3U << 20U, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7U);
  const std::size_t size = body.size();
  const HttpResponse r = h.send(post(nginx.httpUrl("/v1/logs"), std::move(body)));

  INFO(r.error);
  CHECK(r.status == 200);
  CHECK(r.error.empty());
  CHECK(r.body.empty());
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.tls_error);
  CHECK_FALSE(r.retry_after);
  CHECK(r.elapsed > 0ns);

  const auto seen = nginx.waitForRequests(1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].status == 200);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].uri == "/v1/logs");
  CHECK(seen[0].content_length == std::to_string(size));
  // Request line and headers come on top of the body: a few hundred bytes.
  CHECK(seen[0].request_length > size);
  CHECK(seen[0].request_length < size + 1024);
}

TEST_CASE("Sequential requests reuse one keep-alive connection", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  Harness h;
  for (const std::string& url : {nginx.httpUrl("/v1/logs"), nginx.httpsUrl("/v1/logs")}) {
    for (int i = 0; i < 5; ++i) {
      const HttpResponse r = h.send(post(url));
      INFO(url << ": " << r.error);
      REQUIRE(r.status == 200);
    }
  }
  const auto seen = nginx.waitForRequests(10);
  REQUIRE(seen.size() == 10);
  for (std::size_t first : {0U, 5U}) {
    for (std::size_t i = 0; i < 5; ++i) {
      INFO("request " << first + i << " on port " << seen[first + i].server_port);
      CHECK(seen[first + i].connection == seen[first].connection);
      CHECK(seen[first + i].connection_requests == i + 1);
    }
  }
  CHECK(seen[0].server_port == nginx.httpPort());
  CHECK(seen[5].server_port == nginx.httpsPort());
}

TEST_CASE("Concurrent requests share at most max_connections connections", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  HttpClientOptions options = withCa(testPki().ca_crt);
  options.max_connections = 3;
  Harness h(options);

  constexpr std::size_t kRequests = 20;
  const std::vector<HttpRequest> requests(kRequests, post(nginx.httpUrl("/v1/logs")));
  std::size_t in_flight = 0;
  auto answers = h.start(requests, [&](Answers&) { in_flight = h.client().inFlight(); });
  // libcurl queues what does not fit; every request counts as in flight until answered.
  CHECK(in_flight == kRequests);
  REQUIRE(answers->all_done.get_future().wait_for(kWait) == std::future_status::ready);
  for (const HttpResponse& r : Harness::collect(*answers)) {
    INFO(r.error);
    CHECK(r.status == 200);
  }
  CHECK(h.inFlight() == 0);

  const auto seen = nginx.waitForRequests(kRequests);
  REQUIRE(seen.size() == kRequests);
  std::set<std::uint64_t> connections;
  for (const NginxRequest& s : seen) connections.insert(s.connection);
  // All 20 start together, so libcurl opens every connection it may, and no more.
  CHECK(connections.size() == 3);
}

TEST_CASE("Statuses come back as responses, with Retry-After parsed", "[component]") {
  NginxOptions options;
  options.extra_locations = R"(
    location = /retry/past { add_header Retry-After "Wed, 21 Oct 2015 07:28:00 GMT" always; return 503; }
    location = /retry/far { add_header Retry-After "Fri, 31 Dec 2100 23:59:59 GMT" always; return 503; }
    location = /retry/huge { add_header Retry-After 99999999999999999999999 always; return 429; }
    location = /retry/bad { add_header Retry-After soon always; return 429; }
    location = /retry/date { expires 30s; add_header Retry-After $sent_http_expires; return 200; }
  )";
  Nginx nginx(options);
  startNginx(nginx);
  Harness h;

  const auto rs =
      h.sendAll({post(nginx.httpUrl("/status/429")), post(nginx.httpUrl("/status/503")),
                 post(nginx.httpUrl("/status/400")), post(nginx.httpUrl("/retry/past")),
                 post(nginx.httpUrl("/retry/far")), post(nginx.httpUrl("/retry/huge")),
                 post(nginx.httpUrl("/retry/bad")), post(nginx.httpUrl("/retry/date"))});
  for (const HttpResponse& r : rs) {
    CHECK(r.error.empty());
    CHECK_FALSE(r.timed_out);
  }
  CHECK(rs[0].status == 429);
  CHECK(rs[0].retry_after == 2000ms);
  CHECK(rs[1].status == 503);
  CHECK_FALSE(rs[1].retry_after);
  CHECK(rs[2].status == 400);
  CHECK_FALSE(rs[2].retry_after);
  // HTTP-date forms: a past date is no delay, a far one is capped at an hour.
  CHECK(rs[3].status == 503);
  CHECK(rs[3].retry_after == 0ms);
  CHECK(rs[4].retry_after == std::chrono::milliseconds(1h));
  CHECK(rs[5].status == 429);
  CHECK(rs[5].retry_after == std::chrono::milliseconds(1h));
  CHECK_FALSE(rs[6].retry_after);
  // nginx's own clock, 30 s ahead, with whole seconds.
  CHECK(rs[7].status == 200);
  REQUIRE(rs[7].retry_after);
  CHECK(*rs[7].retry_after > 25s);
  CHECK(*rs[7].retry_after <= 31s);
  CHECK(nginx.waitForRequests(8).size() == 8);
}

TEST_CASE("A refused connection is status 0 with an error naming the URL", "[component]") {
  Harness h;
  const std::string url =
      "http://127.0.0.1:" + std::to_string(cistern::testing::freeLoopbackPort()) + "/v1/logs";
  const HttpResponse r = h.send(post(url));
  INFO(r.error);
  CHECK(r.status == 0);
  CHECK(r.error.find("connecting to " + url) != std::string::npos);
  CHECK(r.error.find("Couldn't connect") != std::string::npos);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.tls_error);
}

TEST_CASE("A name that does not resolve fails without blocking the loop", "[component]") {
  Harness h;
  HttpRequest request = post("http://cistern-test.invalid/v1/logs");
  request.timeout = 3s;
  const auto started = std::chrono::steady_clock::now();
  auto answers = h.start({request});
  // The loop keeps serving while libcurl's resolver thread works.
  bool ran = false;
  h.loop().runSync([&] { ran = true; });
  CHECK(ran);
  REQUIRE(answers->all_done.get_future().wait_for(kWait) == std::future_status::ready);
  const HttpResponse r = Harness::collect(*answers).front();
  INFO(r.error);
  CHECK(r.status == 0);
  CHECK(r.error.find("http://cistern-test.invalid/v1/logs") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
}

TEST_CASE("A request that gets no answer times out", "[component]") {
  SilentServer silent;
  Harness h;
  HttpRequest request = post(silent.url("/v1/logs"));
  request.timeout = 300ms;
  const HttpResponse r = h.send(request);
  INFO(r.error);
  CHECK(r.status == 0);
  CHECK(r.timed_out);
  CHECK_FALSE(r.tls_error);
  CHECK(r.error.find(silent.url("/v1/logs")) != std::string::npos);
  CHECK(r.elapsed >= 300ms);
  CHECK(r.elapsed < 5s);
}

TEST_CASE("TLS is verified against the configured CA", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  const auto& pki = testPki();

  SECTION("the CA that signed the server's certificate") {
    const HttpResponse r = postOnce(withCa(pki.ca_crt), nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 200);
    const auto seen = nginx.waitForRequests(1);
    REQUIRE(seen.size() == 1);
    CHECK((seen[0].ssl_protocol == "TLSv1.3" || seen[0].ssl_protocol == "TLSv1.2"));
  }
  SECTION("another CA") {
    const HttpResponse r = postOnce(withCa(pki.other_ca_crt), nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 0);
    CHECK(r.tls_error);
    CHECK_FALSE(r.timed_out);
    CHECK(r.error.find("connecting to " + nginx.httpsUrl("/v1/logs")) != std::string::npos);
    CHECK(r.error.find("SSL certificate problem") != std::string::npos);
    CHECK(nginx.requests().empty());
  }
  SECTION("the system's CAs, which do not know the test CA") {
    const HttpResponse r = postOnce(withCa(""), nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 0);
    CHECK(r.tls_error);
  }
  SECTION("another CA with verification off") {
    HttpClientOptions options = withCa(pki.other_ca_crt);
    options.tls.insecure_skip_verify = true;
    const HttpResponse r = postOnce(options, nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 200);
  }
}

TEST_CASE("server_name is what the certificate is verified against", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  HttpClientOptions options = withCa(testPki().ca_crt);

  SECTION("a name in the certificate") {
    options.tls.server_name = "localhost";
    const HttpResponse r = postOnce(options, nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 200);
    const auto seen = nginx.waitForRequests(1);
    REQUIRE(seen.size() == 1);
    // Sent as SNI and as the Host header; the connection still went to 127.0.0.1.
    CHECK(seen[0].ssl_server_name == "localhost");
    CHECK(seen[0].host == "localhost");
    CHECK(seen[0].server_port == nginx.httpsPort());
  }
  SECTION("a name the certificate does not carry") {
    options.tls.server_name = "wrong.invalid";
    const HttpResponse r = postOnce(options, nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 0);
    CHECK(r.tls_error);
    CHECK(r.error.find("wrong.invalid") != std::string::npos);
    // The URL the caller gave, not the rewritten one.
    CHECK(r.error.find(nginx.httpsUrl("/v1/logs")) != std::string::npos);
  }
  SECTION("without it, an IP address is verified and no SNI is sent") {
    const HttpResponse r = postOnce(options, nginx.httpsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 200);
    const auto seen = nginx.waitForRequests(1);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].ssl_server_name == "-");
  }
}

TEST_CASE("Mutual TLS", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  const auto& pki = testPki();
  HttpClientOptions options = withCa(pki.ca_crt);

  SECTION("with the client certificate") {
    options.tls.cert_file = pki.client_crt;
    options.tls.key_file = pki.client_key;
    const HttpResponse r = postOnce(options, nginx.mtlsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 200);
    const auto seen = nginx.waitForRequests(1);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].ssl_client_verify == "SUCCESS");
  }
  SECTION("without one: nginx completes the handshake and answers 400") {
    const HttpResponse r = postOnce(options, nginx.mtlsUrl("/v1/logs"));
    INFO(r.error);
    CHECK(r.status == 400);
    CHECK(r.error.empty());
    CHECK_FALSE(r.tls_error);
    CHECK(r.body.find("No required SSL certificate was sent") != std::string::npos);
  }
}

TEST_CASE("Unusable client options are refused when the client is made", "[component]") {
  auto loop = EventLoop::start("http-test");
  REQUIRE(loop);
  const auto& pki = testPki();
  const auto make = [&](const HttpClientOptions& o) {
    cistern::Result<std::unique_ptr<HttpClient>> made = nullptr;
    (*loop)->runSync([&] { made = makeCurlHttpClient(**loop, o); });
    return made;
  };
  HttpClientOptions missing_ca = withCa(pki.dir.path().string() + "/missing.crt");
  auto r = make(missing_ca);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == cistern::ErrorCode::kConfig);
  CHECK(r.error().message.find("missing.crt") != std::string::npos);

  HttpClientOptions cert_only = withCa(pki.ca_crt);
  cert_only.tls.cert_file = pki.client_crt;
  r = make(cert_only);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == cistern::ErrorCode::kConfig);

  HttpClientOptions no_connections = withCa(pki.ca_crt);
  no_connections.max_connections = 0;
  r = make(no_connections);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == cistern::ErrorCode::kConfig);
}

TEST_CASE("Requests that cannot start are answered later, never inside send()", "[component]") {
  Harness h;
  HttpRequest bad_header = post("http://127.0.0.1:1/v1/logs");
  bad_header.headers.emplace_back("X-Injected: a\r\nHost: elsewhere");
  HttpRequest bad_method = post("http://127.0.0.1:1/v1/logs");
  bad_method.method = "po st";
  auto answers = h.start({post("not a url"), post("ftp://127.0.0.1/x"), bad_header, bad_method});
  REQUIRE(answers->all_done.get_future().wait_for(kWait) == std::future_status::ready);
  for (const HttpResponse& r : Harness::collect(*answers)) {
    INFO(r.error);
    CHECK(r.status == 0);
    CHECK_FALSE(r.error.empty());
    CHECK_FALSE(r.tls_error);
  }
  CHECK(h.inFlight() == 0);
}

TEST_CASE("close() answers every request in flight once, then calls closed", "[component]") {
  SilentServer silent;
  Nginx nginx;
  startNginx(nginx);
  Harness h;

  std::vector<HttpRequest> requests(5, post(silent.url("/v1/logs")));
  requests.push_back(post(nginx.httpsUrl("/v1/logs")));
  requests.push_back(post("not a url"));  // waiting for its deferred answer
  std::atomic<int> closed_calls{0};
  std::atomic<bool> answered_before_closed{false};
  std::promise<void> closed;
  std::size_t in_flight_before = 0;
  auto answers = h.start(requests, [&](Answers& sent) {
    in_flight_before = h.client().inFlight();
    h.client().close([&, a = &sent] {
      {
        std::lock_guard lk(a->mu);
        answered_before_closed = a->pending == 0;
      }
      if (++closed_calls == 1) closed.set_value();
    });
  });
  CHECK(in_flight_before == requests.size());
  REQUIRE(closed.get_future().wait_for(kWait) == std::future_status::ready);
  CHECK(answered_before_closed);
  for (const HttpResponse& r : Harness::collect(*answers)) {
    CHECK(r.status == 0);
    CHECK(r.error == "closed");
  }
  CHECK(h.inFlight() == 0);

  // A send after close is answered too, later.
  auto late = h.start({post(nginx.httpUrl("/v1/logs"))});
  REQUIRE(late->all_done.get_future().wait_for(kWait) == std::future_status::ready);
  CHECK(Harness::collect(*late).front().error == "closed");
  CHECK(closed_calls == 1);
}

TEST_CASE("A receiver that is killed and restarted is reached again", "[component]") {
  Nginx nginx;
  startNginx(nginx);
  Harness h;
  const std::string url = nginx.httpUrl("/v1/logs");
  REQUIRE(h.send(post(url)).status == 200);
  // nginx logs a request after answering it: a kill right after the answer could lose the line.
  REQUIRE(nginx.waitForRequests(1).size() == 1);

  // The cached connection died with nginx: libcurl must notice and connect again.
  nginx.kill();
  startNginx(nginx);
  HttpResponse r = h.send(post(url));
  INFO(r.error);
  CHECK(r.status == 200);
  REQUIRE(nginx.waitForRequests(2).size() == 2);

  nginx.kill();
  r = h.send(post(url));
  CHECK(r.status == 0);
  CHECK(r.error.find(url) != std::string::npos);

  startNginx(nginx);
  r = h.send(post(url));
  CHECK(r.status == 200);
  CHECK(nginx.waitForRequests(3).size() == 3);
}

TEST_CASE("A response body over the cap fails the request", "[component]") {
  NginxOptions options;
  options.extra_locations = "location = /big.bin { root html; }";
  Nginx nginx(options);
  std::filesystem::create_directories(nginx.dir() / "html");
  {
    std::ofstream big(nginx.dir() / "html" / "big.bin", std::ios::binary);
    big.seekp((17 << 20) - 1);
    big.put('\0');
  }
  startNginx(nginx);
  Harness h;
  HttpRequest get;
  get.url = nginx.httpUrl("/big.bin");
  get.method = "GET";
  const HttpResponse r = h.send(get);
  INFO(r.error);
  CHECK(r.status == 0);
  CHECK(r.body.empty());
  CHECK(r.error.find("larger than 16 MiB") != std::string::npos);
}

TEST_CASE("The nginx harness proxies /v1/logs to an upstream with the body", "[component]") {
  Nginx receiver;
  startNginx(receiver);
  NginxOptions options;
  options.upstream = "127.0.0.1:" + std::to_string(receiver.httpPort());
  Nginx front(options);
  startNginx(front);
  Harness h;
  const HttpResponse r = h.send(post(front.httpsUrl("/v1/logs"), std::string(5000, 'b')));
  INFO(r.error);
  CHECK(r.status == 200);

  const auto behind = receiver.waitForRequests(1);
  REQUIRE(behind.size() == 1);
  CHECK(behind[0].uri == "/v1/logs");
  CHECK(behind[0].content_length == "5000");
  const auto seen = front.waitForRequests(1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].content_length == "5000");
}
