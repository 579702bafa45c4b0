// Nginx: Debian's nginx as a test peer on loopback, in a temp dir of its own, with three
// listeners on free ports: plain HTTP, TLS (the test PKI's server certificate) and mutual TLS
// (client certificates signed by the test CA required).
//
//   cistern::testing::Nginx nginx;                 // or Nginx(NginxOptions{...})
//   REQUIRE(nginx.start() == "");                  // else what failed, with nginx's error log
//   client.send(nginx.httpUrl("/v1/logs"), ...);
//   auto seen = nginx.waitForRequests(1);          // the access log, parsed
//
// Every server has these locations:
//   /v1/logs     POST target: proxied to NginxOptions::upstream (the OTLP mock) when given, else
//                200 with an empty body (an empty ExportLogsServiceResponse is zero bytes) once
//                the whole body was read; bodies up to 64 MiB.
//   /status/429  429 with "Retry-After: 2".
//   /status/503, /status/400   those statuses.
//   anything in NginxOptions::extra_locations.
// Requests that reach nginx are counted in its access log, one NginxRequest each, written when
// the response is done; timedRequests() reads a second log with nginx's clock for each of them
// (when it was answered, how long it took), for tests that check when requests came.
//
// nginx runs in the foreground in a process group of its own; stop() shuts it down (SIGTERM),
// kill() kills master and workers at once (SIGKILL), start() again reuses the same ports. The
// destructor stops it; a test process that dies first takes it along (PR_SET_PDEATHSIG, which
// follows the thread that called start(): call it from the test's main thread). The test
// process becomes a child subreaper so that workers orphaned by kill() are reaped here and leave
// no zombie. One thread at a time.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ports.h"
#include "temp_dir.h"
#include "test_pki.h"

namespace cistern::testing {

// A port for a listener on 127.0.0.1 (see ports.h: outside the ephemeral range, so a restart
// gets it back).
inline int freeLoopbackPort() { return listenPort(); }

// True when something accepts TCP connections on 127.0.0.1:port.
inline bool acceptsConnections(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

struct NginxOptions {
  // "host:port" that /v1/logs proxies to (HTTP/1.1, keep-alive); empty: nginx answers itself.
  std::string upstream;
  // nginx `location` blocks added to every server.
  std::string extra_locations;
  // TLS material; empty: the test PKI's server certificate and key, and its CA for client
  // certificates.
  std::string server_crt;
  std::string server_key;
  std::string client_ca;
  int worker_processes = 1;
  // nginx directives placed first in the /v1/logs location, before it proxies or answers. nginx
  // evaluates them per request, so `if (-f /path/refuse) { add_header Retry-After 2 always;
  // return 429; }` refuses requests exactly while a test keeps that file, without a reload.
  std::string logs_prelude;
};

// One line of the access log.
struct NginxRequest {
  std::uint64_t connection = 0;           // nginx's connection serial number (per worker)
  std::uint64_t connection_requests = 0;  // 1 for the first request on a connection
  int status = 0;
  std::uint64_t request_length = 0;  // request line, headers and body
  std::string content_length;        // the request's Content-Length header, "-" when absent
  std::string method;
  std::string uri;                // as requested, with the query
  std::string host;               // the Host header (or the server name)
  int server_port = 0;            // the listener that got it
  std::string ssl_protocol;       // "TLSv1.3", "-" on plain HTTP
  std::string ssl_server_name;    // the SNI the client sent, "-" when none
  std::string ssl_client_verify;  // "SUCCESS", "NONE", "FAILED:<reason>"; "-" on plain HTTP
};

// One line of the timing log: a request with nginx's times for it.
struct NginxTimedRequest {
  double end_s = 0;       // $msec: when the response was done, wall clock, seconds since the epoch
  double duration_s = 0;  // $request_time: from the request's first byte to the response's last
  int status = 0;
  std::uint64_t request_length = 0;  // request line, headers and body
  std::uint64_t content_length = 0;  // the request's Content-Length header, 0 when absent
  std::string method;
  std::string uri;

  // When nginx began reading the request (millisecond resolution, like its clock).
  [[nodiscard]] double startS() const { return end_s - duration_s; }
};

class Nginx {
 public:
  static constexpr const char* kBinary = "/usr/sbin/nginx";

  explicit Nginx(NginxOptions options = {}) : options_(std::move(options)) {}
  ~Nginx() { stop(); }
  Nginx(const Nginx&) = delete;
  Nginx& operator=(const Nginx&) = delete;

  // Starts nginx and waits until every listener accepts connections (at most 10 s). The first
  // start picks free ports (retrying with others if one was taken meanwhile); later starts reuse
  // them. Returns "" on success, else what failed with nginx's error output.
  std::string start() {
    if (running()) return "";
    const bool first = http_port_ == 0;
    for (int attempt = 0; attempt < (first ? 3 : 1); ++attempt) {
      if (first) {
        http_port_ = freeLoopbackPort();
        https_port_ = freeLoopbackPort();
        mtls_port_ = freeLoopbackPort();
      }
      std::string error = writeConfig();
      if (error.empty()) error = launch();
      if (error.empty()) return "";
      if (!first || error.find("Address already in use") == std::string::npos) return error;
    }
    return "nginx: no free ports after 3 attempts";
  }

  // Fast shutdown (SIGTERM: connections are closed, workers exit), bounded; SIGKILL after 5 s.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!waitExit(std::chrono::seconds(5))) kill();
    reapGroup();
    pid_ = -1;
  }

  // Kills master and workers at once, as a crash or `kill -9` would.
  void kill() {
    if (pid_ <= 0) return;
    ::killpg(pid_, SIGKILL);
    waitExit(std::chrono::seconds(5));
    reapGroup();
    pid_ = -1;
  }

  [[nodiscard]] bool running() const { return pid_ > 0; }
  [[nodiscard]] int httpPort() const { return http_port_; }
  [[nodiscard]] int httpsPort() const { return https_port_; }
  [[nodiscard]] int mtlsPort() const { return mtls_port_; }
  [[nodiscard]] std::string httpUrl(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(http_port_) + path;
  }
  [[nodiscard]] std::string httpsUrl(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(https_port_) + path;
  }
  [[nodiscard]] std::string mtlsUrl(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(mtls_port_) + path;
  }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_.path(); }

  // Every request in the access log so far (across restarts).
  [[nodiscard]] std::vector<NginxRequest> requests() const {
    std::vector<NginxRequest> out;
    std::ifstream in(dir_ / "access.log");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      NginxRequest r;
      fields >> r.connection >> r.connection_requests >> r.status >> r.request_length >>
          r.content_length >> r.method >> r.uri >> r.host >> r.server_port >> r.ssl_protocol >>
          r.ssl_server_name;
      std::getline(fields >> std::ws, r.ssl_client_verify);
      if (fields.fail() && !fields.eof()) continue;  // a line being written
      out.push_back(std::move(r));
    }
    return out;
  }

  // Every request in the timing log so far (across restarts), in the order they were answered.
  [[nodiscard]] std::vector<NginxTimedRequest> timedRequests() const {
    std::vector<NginxTimedRequest> out;
    std::ifstream in(dir_ / "timing.log");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      NginxTimedRequest r;
      std::string content_length;
      fields >> r.end_s >> r.duration_s >> r.status >> r.request_length >> content_length >>
          r.method >> r.uri;
      if (fields.fail()) continue;  // a line being written
      if (content_length != "-") r.content_length = std::stoull(content_length);
      out.push_back(std::move(r));
    }
    return out;
  }

  // The access log once it has at least `count` requests, or as it is after `timeout`.
  [[nodiscard]] std::vector<NginxRequest> waitForRequests(
      std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto seen = requests();
      if (seen.size() >= count || std::chrono::steady_clock::now() >= deadline) return seen;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // nginx's error log and whatever it wrote to stderr.
  [[nodiscard]] std::string errorLog() const { return slurp("error.log") + slurp("stderr.log"); }

 private:
  [[nodiscard]] std::string slurp(const std::string& name) const {
    std::ifstream in(dir_ / name);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

  std::string writeConfig() {
    const auto& pki = testPki();
    if (!pki.error.empty()) return "test PKI: " + pki.error;
    const std::string dir = dir_.path().string();
    const std::string crt = options_.server_crt.empty() ? pki.server_crt : options_.server_crt;
    const std::string key = options_.server_key.empty() ? pki.server_key : options_.server_key;
    const std::string ca = options_.client_ca.empty() ? pki.ca_crt : options_.client_ca;
    std::error_code ec;
    std::filesystem::create_directories(dir_ / "tmp", ec);
    if (ec) return "creating " + dir + "/tmp: " + ec.message();

    std::ofstream loc(dir_ / "locations.conf");
    // `return` would discard the body unread (and uncounted in $request_length); a proxied
    // request is read whole first. Without an upstream, nginx proxies to its own /__ok, without
    // the body.
    loc << "location = /v1/logs {\n" << options_.logs_prelude << "\n";
    if (options_.upstream.empty()) {
      loc << "  proxy_pass http://127.0.0.1:" << http_port_ << "/__ok;\n"
          << "  proxy_pass_request_body off;\n  proxy_set_header Content-Length \"\";\n";
    } else {
      loc << "  proxy_pass http://upstream_receiver;\n  proxy_http_version 1.1;\n"
          << "  proxy_set_header Connection \"\";\n";
    }
    loc << "}\n"
        << "location = /__ok {\n  access_log off;\n  default_type application/x-protobuf;\n"
        << "  return 200 \"\";\n}\n"
        << "location = /status/429 { add_header Retry-After 2 always; return 429; }\n"
        << "location = /status/503 { return 503; }\n"
        << "location = /status/400 { return 400; }\n"
        << options_.extra_locations << "\n";

    std::ofstream conf(dir_ / "nginx.conf");
    // Workers run as the master's user: as root the default ("nobody") could not enter the
    // temp dir.
    if (::geteuid() == 0) conf << "user root;\n";
    conf << "worker_processes " << options_.worker_processes << ";\n"
         << "pid " << dir << "/nginx.pid;\n"
         << "error_log " << dir << "/error.log info;\n"
         << "events { worker_connections 1024; }\n"
         << "http {\n"
         << "  default_type application/octet-stream;\n"
         << "  log_format cistern '$connection $connection_requests $status $request_length "
            "$content_length $request_method $request_uri $host $server_port $ssl_protocol "
            "$ssl_server_name $ssl_client_verify';\n"
         << "  access_log " << dir << "/access.log cistern;\n"
         << "  log_format cistern_timing '$msec $request_time $status $request_length "
            "$content_length $request_method $request_uri';\n"
         << "  access_log " << dir << "/timing.log cistern_timing;\n"
         << "  client_body_temp_path " << dir << "/tmp/body;\n"
         << "  proxy_temp_path " << dir << "/tmp/proxy;\n"
         << "  fastcgi_temp_path " << dir << "/tmp/fastcgi;\n"
         << "  uwsgi_temp_path " << dir << "/tmp/uwsgi;\n"
         << "  scgi_temp_path " << dir << "/tmp/scgi;\n"
         << "  client_max_body_size 64m;\n"
         << "  client_body_buffer_size 1m;\n"
         << "  keepalive_timeout 60s;\n"
         << "  keepalive_requests 10000;\n"
         << "  ssl_protocols TLSv1.2 TLSv1.3;\n"
         << "  ssl_certificate " << crt << ";\n"
         << "  ssl_certificate_key " << key << ";\n";
    if (!options_.upstream.empty()) {
      conf << "  upstream upstream_receiver { server " << options_.upstream << "; keepalive 8; }\n";
    }
    conf << "  server { listen 127.0.0.1:" << http_port_ << "; include " << dir
         << "/locations.conf; }\n"
         << "  server { listen 127.0.0.1:" << https_port_ << " ssl; include " << dir
         << "/locations.conf; }\n"
         << "  server {\n    listen 127.0.0.1:" << mtls_port_ << " ssl;\n"
         << "    ssl_client_certificate " << ca << ";\n    ssl_verify_client on;\n"
         << "    include " << dir << "/locations.conf;\n  }\n"
         << "}\n";
    conf.close();
    loc.close();
    if (!conf || !loc) return "writing nginx.conf in " + dir;
    return "";
  }

  std::string launch() {
    const std::string dir = dir_.path().string();
    // Orphaned workers (after kill()) become our children, so reapGroup() can wait for them.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    // Everything the child needs is built before fork: only async-signal-safe calls after it.
    const std::vector<std::string> argv = {
        kBinary, "-p",         dir + "/", "-c", dir + "/nginx.conf", "-e", dir + "/error.log",
        "-g",    "daemon off;"};
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string stderr_path = dir + "/stderr.log";
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    if (pid == 0) {
      ::setpgid(0, 0);
      // A test that crashes takes nginx with it (the master stops its workers on SIGTERM).
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(125);
      const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      const int in = ::open("/dev/null", O_RDONLY);
      if (err < 0 || in < 0) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(err, 1);
      ::dup2(err, 2);
      // Sockets and pipes of the test (client connections, loop descriptors) stay out of nginx.
      ::syscall(SYS_close_range, 3U, ~0U, 0U);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before killpg
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        reapGroupOf(pid);
        return "nginx exited at start (status " + std::to_string(status) + "): " + errorLog();
      }
      if (acceptsConnections(http_port_) && acceptsConnections(https_port_) &&
          acceptsConnections(mtls_port_)) {
        return "";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill();
    return "nginx did not accept connections within 10 s: " + errorLog();
  }

  // Waits for the master; false when it is still running at the deadline.
  bool waitExit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  void reapGroup() { reapGroupOf(pid_); }

  // Kills and reaps what is left of the process group (workers orphaned by a killed master).
  static void reapGroupOf(pid_t group) {
    if (group <= 0) return;
    ::killpg(group, SIGKILL);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(-group, &status, WNOHANG);
      if (r < 0) return;  // ECHILD: none left
      if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  NginxOptions options_;
  TempDir dir_{"cistern-nginx"};
  pid_t pid_ = -1;
  int http_port_ = 0;
  int https_port_ = 0;
  int mtls_port_ = 0;
};

}  // namespace cistern::testing
