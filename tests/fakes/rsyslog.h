// Rsyslog: Debian's rsyslogd as a syslog receiver for tests, in the foreground, on free loopback
// ports, with everything it writes in a temp dir.
//
//   cistern::testing::Rsyslog rsyslog(cistern::testing::testPki());
//   REQUIRE(rsyslog.start() == "");            // error text (with rsyslogd's output) otherwise
//   ... send to rsyslog.endpoint("tcp") ...
//   REQUIRE(rsyslog.waitForMessages(n, 10s));
//   for (const auto& m : rsyslog.messages()) ...  // one JSON object per message (%jsonmesg%)
//
// Listeners, all on 127.0.0.1:
//   tcp       imptcp (octet counting and LF framing)
//   tls       imtcp with the ossl stream driver, server certificate from the test PKI, clients
//             not authenticated
//   relp      imrelp
//   relp+tls  imrelp with tls="on" (OpenSSL), server certificate from the test PKI; clients must
//             present a certificate signed by the test CA (mutual TLS, authMode certvalid)
// Every message goes through one ruleset to omfile as a %jsonmesg% line (msg, rawmsg, hostname,
// app-name, procid, msgid, structured-data, pri, timereported, inputname, ...).
//
// It never touches the system's configuration, /dev/log or /var/spool: no imuxsock or imklog,
// the work directory, pid file, output and rsyslogd's own stdout/stderr are in the temp dir.
// The process is killed (SIGKILL) on destruction if still running. Not thread-safe.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ports.h"
#include "temp_dir.h"
#include "test_pki.h"

namespace cistern::testing {

class Rsyslog {
 public:
  static constexpr const char* kBinary = "/usr/sbin/rsyslogd";
  static constexpr int kShutdownTimeoutMs = 10000;

  explicit Rsyslog(const TestPki& pki) : pki_(pki) {
    for (const char* name : {"tcp", "tls", "relp", "relp+tls"}) ports_[name] = freePort();
    std::filesystem::create_directories(dir_ / "work");
    writeConfig();
  }
  ~Rsyslog() { kill9(); }
  Rsyslog(const Rsyslog&) = delete;
  Rsyslog& operator=(const Rsyslog&) = delete;

  // Starts rsyslogd and waits (up to 15 s) until every listener accepts. Returns "" on success,
  // else what went wrong with rsyslogd's output.
  std::string start() {
    if (pid_ > 0) return "rsyslogd already running";
    const std::string log = (dir_ / "rsyslogd.out").string();
    const std::string conf = (dir_ / "rsyslog.conf").string();
    const std::string pidfile = (dir_ / "rsyslogd.pid").string();
    // A pid file left by a killed rsyslogd must not make the next one refuse to start.
    std::error_code ignored;
    std::filesystem::remove(pidfile, ignored);
    pid_ = ::fork();
    if (pid_ < 0) return "fork failed";
    if (pid_ == 0) {
      const int in = ::open("/dev/null", O_RDONLY);
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (in < 0 || out < 0) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      // A process group of its own: a Ctrl-C aimed at the test does not reach it first.
      ::setpgid(0, 0);
      ::execl(kBinary, kBinary, "-n", "-f", conf.c_str(), "-i", pidfile.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "rsyslogd exited at start (status " + std::to_string(status) + "):\n" + output();
      }
      bool all = true;
      for (const auto& [name, port] : ports_) all = all && listening(port);
      if (all) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill9();
    return "rsyslogd did not listen within 15 s:\n" + output();
  }

  // SIGTERM, then SIGKILL once rsyslogd's own shutdown timeouts are past. Returns "" on a clean
  // exit, else what happened with rsyslogd's output.
  std::string stop() {
    if (pid_ <= 0) return "";
    ::kill(pid_, SIGTERM);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(3 * kShutdownTimeoutMs);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0
                   ? ""
                   : "rsyslogd exited with status " + std::to_string(status) + ":\n" + output();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill9();
    return "rsyslogd did not exit within " + std::to_string(3 * kShutdownTimeoutMs / 1000) +
           " s of SIGTERM; killed:\n" + output();
  }

  std::string restart() {
    if (auto e = stop(); !e.empty()) return e;
    return start();
  }

  // SIGSTOP / SIGCONT / SIGKILL...; SIGKILL is reaped.
  void signal(int sig) {
    if (pid_ <= 0) return;
    if (sig == SIGKILL) {
      kill9();
    } else {
      ::kill(pid_, sig);
    }
  }

  [[nodiscard]] bool running() const { return pid_ > 0; }
  [[nodiscard]] std::uint16_t port(const std::string& scheme) const { return ports_.at(scheme); }
  // "tcp://127.0.0.1:PORT", for scheme tcp, tls, relp or relp+tls.
  [[nodiscard]] std::string endpoint(const std::string& scheme) const {
    return scheme + "://127.0.0.1:" + std::to_string(port(scheme));
  }

  // Every message written so far, parsed. Lines that do not parse (a write in progress) are
  // left out.
  [[nodiscard]] std::vector<nlohmann::json> messages() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_ / "messages.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  // Waits until `pred(messages())` holds, polling every 50 ms, up to `timeout`.
  template <typename Pred>
  bool waitUntil(Pred pred, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (pred(messages())) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  bool waitForMessages(std::size_t n, std::chrono::milliseconds timeout) const {
    return waitUntil([n](const auto& m) { return m.size() >= n; }, timeout);
  }

  // rsyslogd's own stdout and stderr (its error messages), for failure reports.
  [[nodiscard]] std::string output() const {
    std::ifstream in(dir_ / "rsyslogd.out");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  [[nodiscard]] const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  // Outside the ephemeral range, so a restart gets the port back (ports.h).
  static std::uint16_t freePort() { return static_cast<std::uint16_t>(listenPort()); }

  // Whether 127.0.0.1:port is in LISTEN state, from /proc/net/tcp: no connection is made, so
  // rsyslogd logs nothing about it.
  static bool listening(std::uint16_t port) {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    char want[32];
    std::snprintf(want, sizeof want, "0100007F:%04X", port);
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot;
      std::string local;
      std::string remote;
      std::string state;
      fields >> slot >> local >> remote >> state;
      if (local == want && state == "0A") return true;
    }
    return false;
  }

  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  void writeConfig() {
    const std::string d = dir_.path().string();
    std::ofstream c(dir_ / "rsyslog.conf");
    // Shutdown timeouts as rsyslog's own test suite sets them on busy machines: past the 1 s
    // (inputs) and 1.5 s (main queue) defaults rsyslogd cancels the threads that have not ended.
    // The suspected cause (not reproduced on a quiet machine) of a busy CI run where rsyslogd
    // ended in SIGABRT instead of exiting cleanly on SIGTERM.
    c << "global(workDirectory=\"" << d << "/work\" net.enableDNS=\"off\" maxMessageSize=\"128k\"\n"
      << "  inputs.timeout.shutdown=\"" << kShutdownTimeoutMs << "\"\n"
      << "  defaultNetstreamDriverCAFile=\"" << pki_.ca_crt << "\"\n"
      << "  defaultNetstreamDriverCertFile=\"" << pki_.server_crt << "\"\n"
      << "  defaultNetstreamDriverKeyFile=\"" << pki_.server_key << "\")\n"
      << "module(load=\"imptcp\")\n"
      << "module(load=\"imtcp\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\"\n"
      << "  streamDriver.authMode=\"anon\")\n"
      << "module(load=\"imrelp\" tls.tlsLib=\"openssl\")\n"
      << "main_queue(queue.timeoutShutdown=\"" << kShutdownTimeoutMs << "\")\n"
      << "template(name=\"cistern_json\" type=\"string\" string=\"%jsonmesg%\\n\")\n"
      << "ruleset(name=\"to_file\") {\n"
      << "  action(type=\"omfile\" file=\"" << d << "/messages.jsonl\" template=\"cistern_json\")\n"
      << "}\n"
      << "input(type=\"imptcp\" address=\"127.0.0.1\" port=\"" << port("tcp")
      << "\" ruleset=\"to_file\")\n"
      << "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"" << port("tls")
      << "\" ruleset=\"to_file\")\n"
      << "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"" << port("relp")
      << "\" ruleset=\"to_file\")\n"
      << "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"" << port("relp+tls")
      << "\" ruleset=\"to_file\" tls=\"on\" tls.caCert=\"" << pki_.ca_crt << "\" tls.myCert=\""
      << pki_.server_crt << "\" tls.myPrivKey=\"" << pki_.server_key
      << "\" tls.authMode=\"certvalid\")\n";
  }

  const TestPki& pki_;
  TempDir dir_{"cistern-rsyslog"};
  std::map<std::string, std::uint16_t> ports_;
  pid_t pid_ = -1;
};

}  // namespace cistern::testing
