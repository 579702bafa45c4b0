// The status API's HTTP server on loopback with a fake StatusSource: every endpoint's status,
// content type and body, refusals (404, 405, 413, malformed requests), limits (connections,
// idle timeout), concurrency, bind errors, stop with clients connected; and `cistern status`
// against it.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/agent/commands.h"
#include "prometheus_text.h"
#include "status/status_server.h"
#include "temp_dir.h"

namespace cistern::agent {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class FakeStatusSource : public StatusSource {
 public:
  std::vector<Metric> metrics() const override {
    const std::lock_guard lock(mutex_);
    ++calls_;
    if (throw_) throw std::runtime_error("counters unavailable");
    return metrics_;
  }
  std::string statusJson() const override {
    const std::lock_guard lock(mutex_);
    ++calls_;
    return json_;
  }
  Health health() const override {
    const std::lock_guard lock(mutex_);
    ++calls_;
    return health_;
  }

  void setMetrics(std::vector<Metric> m) {
    const std::lock_guard lock(mutex_);
    metrics_ = std::move(m);
  }
  void setJson(std::string j) {
    const std::lock_guard lock(mutex_);
    json_ = std::move(j);
  }
  void setHealth(Health h) {
    const std::lock_guard lock(mutex_);
    health_ = std::move(h);
  }
  void setThrow(bool t) {
    const std::lock_guard lock(mutex_);
    throw_ = t;
  }
  int calls() const {
    const std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  mutable int calls_ = 0;
  std::vector<Metric> metrics_ = {
      {"cistern_output_records_acked_total",
       "Records the receiver confirmed.",
       "counter",
       {{"output", "central"}},
       1234},
      {"cistern_output_records_acked_total",
       "Records the receiver confirmed.",
       "counter",
       {{"output", "archive \"a\""}},
       5},
      {"cistern_buffer_used_bytes", "Bytes the ring occupies.", "gauge", {}, 1048576},
  };
  std::string json_ = R"({"agent":{"id":"a1","version":"0.4.0"},"inputs":[],"outputs":[]})";
  Health health_{true, "2 inputs running, buffer writable"};
  bool throw_ = false;
};

struct Reply {
  long status = 0;
  std::string content_type;
  std::string body;
  std::string headers;
  std::string error;  // libcurl's, when the request failed
};

// One request with libcurl (blocking); `method` "HEAD" sends no body back. No Catch assertions:
// it runs on several threads at once, and Catch2's are for the test's own thread.
Reply request(const std::string& url, const std::string& method = "GET",
              const std::string& body = "") {
  Reply reply;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    reply.error = "curl_easy_init failed";
    return reply;
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  if (method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  if (!body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  const auto append = +[](char* data, std::size_t size, std::size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
  };
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, append);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &reply.headers);
  const CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
    const char* type = nullptr;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
    if (type != nullptr) reply.content_type = type;
  } else {
    reply.error = curl_easy_strerror(rc);
  }
  curl_easy_cleanup(curl);
  return reply;
}

// A plain TCP connection to 127.0.0.1:port, for what libcurl will not send.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const std::string& data) const {
    REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(data.size()));
  }

  // Everything received until the server closes (or resets) the connection, waiting at most
  // `limit`; `closed` tells whether it did.
  std::string readUntilClosed(std::chrono::milliseconds limit, bool& closed) const {
    std::string out;
    closed = false;
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0))) <= 0) break;
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) {
        closed = true;
        break;
      }
      out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

StatusServerOptions loopback(std::chrono::seconds timeout = 10s, unsigned max_connections = 32) {
  StatusServerOptions options;
  options.listen = "127.0.0.1:0";
  options.timeout = timeout;
  options.max_connections = max_connections;
  return options;
}

// A server on 127.0.0.1 (a port the kernel picks) serving a fake source.
struct Served {
  explicit Served(StatusServerOptions options = loopback()) : server(std::move(options), source) {
    REQUIRE(server.start().has_value());
  }
  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://" + server.address() + path;
  }

  FakeStatusSource source;
  StatusServer server;
};

// What a command wrote to a FILE*, read back.
class Capture {
 public:
  Capture() : file_(std::tmpfile()) { REQUIRE(file_ != nullptr); }
  ~Capture() { std::fclose(file_); }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  [[nodiscard]] std::FILE* file() const { return file_; }
  [[nodiscard]] std::string text() const {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, file_)) > 0) out.append(buffer, n);
    return out;
  }

 private:
  std::FILE* file_;
};

struct CommandResult {
  int exit = 0;
  std::string out;
  std::string err;
};

CommandResult runStatus(const StatusOptions& options) {
  const Capture out;
  const Capture err;
  const int exit = statusCommand(options, out.file(), err.file());
  return {exit, out.text(), err.text()};
}

// An agent config in `dir` whose status.listen is `listen`.
std::filesystem::path writeConfig(const testing::TempDir& dir, const std::string& listen) {
  auto config = dir / "agent.yaml";  // not const: returned, so moved
  std::FILE* f = std::fopen(config.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fprintf(f, "agent:\n  data_dir: %s\nstatus:\n  listen: \"%s\"\n", (dir / "data").c_str(),
               listen.c_str());
  std::fclose(f);
  return config;
}

TEST_CASE("status server: /health is 200 with the reason, 503 when unhealthy", "[component]") {
  Served s;
  CHECK(s.server.port() != 0);
  CHECK(s.server.address() == "127.0.0.1:" + std::to_string(s.server.port()));

  Reply ok = request(s.url("/health"));
  CHECK(ok.status == 200);
  CHECK(ok.content_type == "text/plain; charset=utf-8");
  CHECK(ok.body == "ok\n2 inputs running, buffer writable\n");
  CHECK_THAT(ok.headers, Catch::Contains("Cache-Control: no-store"));

  s.source.setHealth({false, "input eth0 stopped: device went down\nbuffer: disk full"});
  Reply bad = request(s.url("/health"));
  CHECK(bad.status == 503);
  CHECK(bad.content_type == "text/plain; charset=utf-8");
  CHECK(bad.body == "input eth0 stopped: device went down\nbuffer: disk full\n");

  s.source.setHealth({false, ""});
  CHECK(request(s.url("/health")).body == "not healthy\n");
  s.source.setHealth({true, ""});
  CHECK(request(s.url("/health")).body == "ok\n");
}

TEST_CASE("status server: /metrics is Prometheus text the parser accepts", "[component]") {
  Served s;
  const Reply reply = request(s.url("/metrics"));
  REQUIRE(reply.status == 200);
  CHECK(reply.content_type == "text/plain; version=0.0.4; charset=utf-8");
  const auto parsed = testing::parsePrometheusText(reply.body);
  REQUIRE(parsed.has_value());
  CHECK(parsed->families.size() == 2);
  CHECK(parsed->value("cistern_output_records_acked_total", {{"output", "central"}}) == 1234);
  CHECK(parsed->value("cistern_output_records_acked_total", {{"output", "archive \"a\""}}) == 5);
  CHECK(parsed->value("cistern_buffer_used_bytes") == 1048576);
  CHECK(testing::namingProblems(*parsed, "cistern_").empty());
}

TEST_CASE("status server: /status is the source's JSON", "[component]") {
  Served s;
  const Reply reply = request(s.url("/status"));
  CHECK(reply.status == 200);
  CHECK(reply.content_type == "application/json");
  CHECK(reply.body == R"({"agent":{"id":"a1","version":"0.4.0"},"inputs":[],"outputs":[]})"
                      "\n");
  // HEAD: the same headers, no body.
  const Reply head = request(s.url("/status"), "HEAD");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.content_type == "application/json");
}

TEST_CASE("status server: other paths 404, other methods 405, bodies 413", "[component]") {
  Served s;
  for (const char* path : {"/", "/nope", "/metrics/", "/health/x", "/STATUS"}) {
    INFO(path);
    const Reply reply = request(s.url(path));
    CHECK(reply.status == 404);
    CHECK_THAT(reply.body, Catch::Contains("/health, /metrics and /status"));
  }
  // The query string is not part of the path.
  CHECK(request(s.url("/health?verbose=1")).status == 200);
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"}) {
    INFO(method);
    const Reply reply = request(s.url("/metrics"), method);
    CHECK(reply.status == 405);
    CHECK_THAT(reply.headers, Catch::Contains("Allow: GET, HEAD"));
  }
  CHECK(request(s.url("/status"), "POST", "{\"x\":1}").status == 405);
  const int calls_before = s.source.calls();

  // A GET with a body is refused before the body is read, and the connection closed.
  RawClient client(s.server.port());
  client.send("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial");
  bool closed = false;
  const std::string answer = client.readUntilClosed(5000ms, closed);
  CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 413"));
  CHECK(closed);
  CHECK(s.source.calls() == calls_before);  // refusals never reach the source
  CHECK(request(s.url("/health")).status == 200);
}

TEST_CASE("status server: malformed requests are refused or time out, never fatal", "[component]") {
  Served s(loopback(1s));
  const std::string tls_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  const std::vector<std::string> garbage = {
      tls_hello,  // https:// to the plain port: no line ever ends, the timeout closes it
      "GET\r\n\r\n",
      "GET /health HTTP/9.9\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
      "GET /" + std::string(100000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(std::size_t{64} << 10U, 'b') +
          "\r\n\r\n",
      std::string("GET /health HTTP/1.1\r\nHost: x\0y\r\n\r\n", 34),
      "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
  };
  for (const auto& request_text : garbage) {
    INFO(request_text.substr(0, 60));
    RawClient client(s.server.port());
    client.send(request_text);
    bool closed = false;
    const std::string answer = client.readUntilClosed(5000ms, closed);
    CHECK(closed);
    if (!answer.empty()) {
      CHECK_THAT(answer, Catch::Matches("HTTP/1\\.1 [45][0-9][0-9] [^]*"));
    }
  }
  CHECK(s.server.counters().source_errors == 0);
  CHECK(request(s.url("/health")).status == 200);
}

TEST_CASE("status server: concurrent clients all get answers", "[component]") {
  Served s;
  // The first transfer of the process initialises libcurl, which is not safe on two threads.
  REQUIRE(request(s.url("/health")).status == 200);
  constexpr int kThreads = 5;
  constexpr int kPerThread = 10;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const char* path =
            (t + i) % 3 == 0 ? "/metrics" : ((t + i) % 3 == 1 ? "/status" : "/health");
        const Reply reply = request(s.url(path));
        if (reply.status == 200 && !reply.body.empty()) good.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  constexpr int kRequests = kThreads * kPerThread;
  CHECK(good.load() == kRequests);
  CHECK(s.server.counters().requests == std::uint64_t{kRequests + 1});
  CHECK(s.server.counters().source_errors == 0);
}

TEST_CASE("status server: a source that throws gives 500, counted, and the server goes on",
          "[component]") {
  Served s;
  s.source.setThrow(true);
  const Reply reply = request(s.url("/metrics"));
  CHECK(reply.status == 500);
  CHECK(reply.body == "internal error: counters unavailable\n");
  CHECK(s.server.counters().source_errors == 1);
  s.source.setThrow(false);
  CHECK(request(s.url("/metrics")).status == 200);
}

TEST_CASE("status server: a port in use or an address not of this host is a clear error",
          "[component]") {
  FakeStatusSource source;
  // Someone else listens on the port.
  const int holder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(holder >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(holder, 1) == 0);
  socklen_t length = sizeof addr;
  REQUIRE(::getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &length) == 0);
  const std::string taken = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  StatusServerOptions options;
  options.listen = taken;
  StatusServer busy(options, source);
  const auto started = busy.start();
  ::close(holder);
  REQUIRE_FALSE(started.has_value());
  CHECK(started.error().code == ErrorCode::kIo);
  CHECK(started.error().message ==
        "status API cannot listen on " + taken + ": Address already in use");
  CHECK(busy.port() == 0);

  options.listen = "192.0.2.1:8780";  // TEST-NET-1: never an address of this host
  StatusServer foreign(options, source);
  const auto not_here = foreign.start();
  REQUIRE_FALSE(not_here.has_value());
  CHECK(not_here.error().message ==
        "status API cannot listen on 192.0.2.1:8780: Cannot assign requested address");

  for (const char* bad : {"localhost:8780", "127.0.0.1", "127.0.0.1:99999", "::1:8780", "[::1]8780",
                          "[nope]:1", ""}) {
    INFO(bad);
    options.listen = bad;
    StatusServer wrong(options, source);
    const auto result = wrong.start();
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error().code == ErrorCode::kConfig);
    CHECK_THAT(result.error().message, Catch::StartsWith("status API: listen address '"));
  }
}

TEST_CASE("status server: IPv6 loopback", "[component]") {
  FakeStatusSource source;
  StatusServerOptions options;
  options.listen = "[::1]:0";
  StatusServer server(options, source);
  const auto started = server.start();
  if (!started && started.error().message.find("Cannot assign") != std::string::npos) {
    WARN("no IPv6 loopback here: " << started.error().message);
    return;
  }
  REQUIRE(started.has_value());
  CHECK(server.address() == "[::1]:" + std::to_string(server.port()));
  CHECK(request("http://" + server.address() + "/health").status == 200);
}

TEST_CASE("status server: stop() closes connected clients and returns promptly", "[component]") {
  Served s;
  const std::uint16_t port = s.server.port();
  RawClient idle(port);  // connected, sent nothing
  RawClient halfway(port);
  halfway.send("GET /metrics HTTP/1.1\r\nHost: x\r\n");  // headers not finished
  RawClient keep_alive(port);
  keep_alive.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  bool closed = false;
  CHECK_THAT(keep_alive.readUntilClosed(300ms, closed), Catch::StartsWith("HTTP/1.1 200"));
  CHECK_FALSE(closed);  // kept alive

  const auto before = Clock::now();
  s.server.stop();
  CHECK(Clock::now() - before < 2s);
  for (const RawClient* client : {&idle, &halfway, &keep_alive}) {
    client->readUntilClosed(2000ms, closed);
    CHECK(closed);
  }
  s.server.stop();  // idempotent
  CHECK(request("http://127.0.0.1:" + std::to_string(port) + "/health").status == 0);
}

TEST_CASE("status server: idle connections time out; the connection limit holds", "[component]") {
  Served s(loopback(1s, 3));
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawClient>(s.server.port()));
    held.back()->send("GET /health HTTP/1.1\r\n");  // never finished
  }
  std::this_thread::sleep_for(200ms);  // the server accepts them
  // At the limit the server stops accepting: a fourth client waits in the kernel's backlog.
  RawClient extra(s.server.port());
  extra.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  bool closed = false;
  CHECK(extra.readUntilClosed(500ms, closed).empty());
  CHECK_FALSE(closed);

  // The held ones are closed for inactivity after the 1 s timeout; then the fourth is served.
  const auto before = Clock::now();
  for (const auto& client : held) {
    client->readUntilClosed(5000ms, closed);
    CHECK(closed);
  }
  CHECK(Clock::now() - before < 3s);
  CHECK_THAT(extra.readUntilClosed(5000ms, closed), Catch::StartsWith("HTTP/1.1 200"));
  CHECK(closed);
}

TEST_CASE("cistern status: table and JSON from a live server; exit 2 when unreachable",
          "[component]") {
  Served s;
  s.source.setJson(R"({"agent":{"id":"a1","version":"0.4.0","uptime_s":61},
    "outputs":[{"name":"central","type":"otlp","state":"healthy","counters":{"records_acked":7}}]})");
  StatusOptions options;
  options.address = s.server.address();

  const CommandResult table = runStatus(options);
  CHECK(table.exit == kExitOk);
  CHECK_THAT(table.out, Catch::StartsWith("agent    a1  version 0.4.0  host -  up 1m01s\n"));
  CHECK_THAT(table.out, Catch::Contains("\ncentral  otlp  healthy  -         7"));
  CHECK(table.err.empty());

  options.json = true;
  const CommandResult json = runStatus(options);
  CHECK(json.exit == kExitOk);
  CHECK(json.out == s.source.statusJson() + "\n");
  options.json = false;

  // A config file names the address; 0.0.0.0 is reached on loopback.
  testing::TempDir dir("cistern-status");
  StatusOptions from_config;
  from_config.config_file = writeConfig(dir, "0.0.0.0:" + std::to_string(s.server.port()));
  const CommandResult configured = runStatus(from_config);
  INFO(configured.err);
  CHECK(configured.exit == kExitOk);
  CHECK_THAT(configured.out, Catch::StartsWith("agent    a1"));

  // Watch: redraws, each screen cleared first.
  options.watch = true;
  options.watch_count = 3;
  options.interval = 50ms;
  const CommandResult watched = runStatus(options);
  CHECK(watched.exit == kExitOk);
  std::size_t screens = 0;
  for (auto at = watched.out.find("\x1b[H\x1b[2J"); at != std::string::npos;
       at = watched.out.find("\x1b[H\x1b[2J", at + 1)) {
    ++screens;
  }
  CHECK(screens == 3);
  CHECK_THAT(watched.out, Catch::Contains("every 0.1s"));

  const std::string address = s.server.address();
  s.server.stop();
  // Watching an agent that is away shows why on the screen and keeps going.
  options.watch_count = 2;
  options.interval = 10ms;
  const CommandResult away = runStatus(options);
  CHECK(away.exit == kExitOk);
  CHECK_THAT(away.out, Catch::Contains("cannot get the agent's status: http://"));

  options.watch = false;
  const CommandResult unreachable = runStatus(options);
  CHECK(unreachable.exit == kExitCannotRun);
  CHECK(unreachable.out.empty());
  CHECK_THAT(unreachable.err, Catch::StartsWith("cistern status: cannot get the agent's status: "
                                                "http://" +
                                                address + "/status: "));
  CHECK_THAT(unreachable.err, Catch::Contains("Couldn't connect"));
}

TEST_CASE("cistern status: errors other than an absent agent", "[component]") {
  Served s;
  s.source.setJson("this is not json");
  StatusOptions options;
  options.address = s.server.address();
  const CommandResult garbled = runStatus(options);
  CHECK(garbled.exit == kExitCannotRun);
  CHECK_THAT(garbled.err, Catch::Contains("the agent's answer could not be read: the status is "
                                          "not valid JSON"));

  options.address = "localhost:1";
  const CommandResult named = runStatus(options);
  CHECK(named.exit == kExitCannotRun);
  CHECK_THAT(named.err, Catch::Contains("host names are not accepted"));

  testing::TempDir dir("cistern-status");
  StatusOptions disabled;
  disabled.config_file = writeConfig(dir, "");
  const CommandResult off = runStatus(disabled);
  CHECK(off.exit == kExitCannotRun);
  CHECK_THAT(off.err, Catch::Contains("the status API is disabled"));
}

}  // namespace
}  // namespace cistern::agent
