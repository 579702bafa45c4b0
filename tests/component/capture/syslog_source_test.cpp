// SyslogSource over real sockets on 127.0.0.1 (port 0), into an in-memory sink. TLS material is
// made by the openssl CLI in a temp dir; the TLS client is mbedTLS.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <catch2/catch.hpp>

#include "cistern/capture/syslog_source.h"
#include "cistern/core/record_meta.h"
#include "memory_sink.h"
#include "subprocess.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::ErrorCode;
using cistern::RecordKind;
using cistern::SyslogFormat;
using cistern::capture::makeSyslogSource;
using cistern::capture::Source;
using cistern::capture::SyslogOptions;
using cistern::testing::MemorySink;
using cistern::testing::StoredRecord;

namespace {

std::uint64_t counter(const Source& s, std::string_view name) {
  for (const auto& c : s.counters()) {
    if (c.name == name) return c.value;
  }
  FAIL("no counter " << name);
  return 0;
}

template <typename Pred>
bool waitUntil(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Waits (up to 5 s) for a counter to be `value`, then checks it is.
void expectCounter(const Source& s, std::string_view name, std::uint64_t value) {
  waitUntil([&] { return counter(s, name) == value; });
  INFO("counter " << name);
  CHECK(counter(s, name) == value);
}

std::uint64_t nowNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::uint16_t portOf(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

SyslogOptions options(const std::string& name, const std::string& listen) {
  SyslogOptions o;
  o.name = name;
  o.listen = listen;
  return o;
}

std::unique_ptr<Source> startSource(const SyslogOptions& o, MemorySink& sink) {
  auto made = makeSyslogSource(o, sink);
  if (!made) FAIL(made.error().describe());
  auto source = std::move(*made);
  REQUIRE(source->start());
  return source;
}

cistern::SyslogMeta metaOf(const StoredRecord& r) {
  auto m = cistern::decodeSyslogMeta(r.meta);
  REQUIRE(m);
  return *m;
}

std::vector<std::string> payloads(const MemorySink& sink) {
  std::vector<std::string> out;
  for (const auto& r : sink.records()) out.push_back(r.payload);
  return out;
}

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  [[nodiscard]] int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The local port, to match the peer address the source records.
  [[nodiscard]] std::uint16_t localPort() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }

  void sendAll(std::string_view data) const { REQUIRE(trySendAll(data)); }

  // For other threads than the test's (Catch2 assertions are not thread-safe).
  bool trySendAll(std::string_view data) const {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // True when the peer closed the connection (EOF or reset) within `timeout`; data is skipped.
  [[nodiscard]] bool closedByPeer(std::chrono::milliseconds timeout = 5s) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    }
  }

 private:
  int fd_;
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

std::unique_ptr<Socket> tcpConnect(std::uint16_t port) {
  auto s = std::make_unique<Socket>(::socket(AF_INET, SOCK_STREAM, 0));
  REQUIRE(s->fd() >= 0);
  const sockaddr_in a = loopback(port);
  REQUIRE(::connect(s->fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  return s;
}

std::unique_ptr<Socket> udpSocket() {
  auto s = std::make_unique<Socket>(::socket(AF_INET, SOCK_DGRAM, 0));
  REQUIRE(s->fd() >= 0);
  const sockaddr_in any = loopback(0);
  REQUIRE(::bind(s->fd(), reinterpret_cast<const sockaddr*>(&any), sizeof any) == 0);
  return s;
}

void udpSend(const Socket& s, std::uint16_t port, std::string_view datagram) {
  const sockaddr_in a = loopback(port);
  REQUIRE(::sendto(s.fd(), datagram.data(), datagram.size(), 0,
                   reinterpret_cast<const sockaddr*>(&a),
                   sizeof a) == static_cast<ssize_t>(datagram.size()));
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, made once per run.
struct TestPki {
  cistern::testing::TempDir dir{"cistern-syslog-pki"};
  std::string ca_crt;
  std::string server_crt;
  std::string server_key;
  std::string client_crt;
  std::string client_key;
  std::string error;  // non-empty when openssl failed

  TestPki() {
    const auto path = [&](const char* name) { return (dir / name).string(); };
    ca_crt = path("ca.crt");
    server_crt = path("server.crt");
    server_key = path("server.key");
    client_crt = path("client.crt");
    client_key = path("client.key");
    std::ofstream(path("server.ext"))
        << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    std::ofstream(path("client.ext")) << "extendedKeyUsage=clientAuth\n";
    const std::string ec = "ec_paramgen_curve:prime256v1";
    run({"/usr/bin/openssl",
         "req",
         "-x509",
         "-newkey",
         "ec",
         "-pkeyopt",
         ec,
         "-nodes",
         "-keyout",
         path("ca.key"),
         "-out",
         ca_crt,
         "-subj",
         "/CN=cistern test CA",
         "-days",
         "2",
         "-addext",
         "basicConstraints=critical,CA:TRUE",
         "-addext",
         "keyUsage=critical,keyCertSign,cRLSign"});
    for (const std::string who : {"server", "client"}) {
      run({"/usr/bin/openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", ec, "-nodes", "-keyout",
           path((who + ".key").c_str()), "-out", path((who + ".csr").c_str()), "-subj",
           "/CN=" + (who == "server" ? std::string("localhost") : who)});
      run({"/usr/bin/openssl", "x509", "-req", "-in", path((who + ".csr").c_str()), "-CA", ca_crt,
           "-CAkey", path("ca.key"), "-CAcreateserial", "-out", path((who + ".crt").c_str()),
           "-days", "2", "-extfile", path((who + ".ext").c_str())});
    }
  }

  void run(const std::vector<std::string>& argv) {
    if (!error.empty()) return;
    const auto r = cistern::testing::run(argv, 30s);
    if (r.exit_code != 0) error = argv[1] + ": " + r.err;
  }
};

const TestPki& pki() {
  static const TestPki instance;
  if (!instance.error.empty()) FAIL("openssl failed: " << instance.error);
  return instance;
}

// A blocking mbedTLS client that verifies the server against the test CA.
class TlsClient {
 public:
  TlsClient() {
    mbedtls_net_init(&net_);
    mbedtls_ssl_init(&ssl_);
    mbedtls_ssl_config_init(&conf_);
    mbedtls_x509_crt_init(&ca_);
    mbedtls_x509_crt_init(&cert_);
    mbedtls_pk_init(&key_);
    mbedtls_entropy_init(&entropy_);
    mbedtls_ctr_drbg_init(&drbg_);
  }
  ~TlsClient() {
    mbedtls_net_free(&net_);
    mbedtls_ssl_free(&ssl_);
    mbedtls_ssl_config_free(&conf_);
    mbedtls_x509_crt_free(&ca_);
    mbedtls_x509_crt_free(&cert_);
    mbedtls_pk_free(&key_);
    mbedtls_ctr_drbg_free(&drbg_);
    mbedtls_entropy_free(&entropy_);
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // Connects and completes the handshake; 0 or the mbedTLS error. Empty cert: no client cert.
  int connect(std::uint16_t port, const std::string& cert = {}, const std::string& key = {}) {
    REQUIRE(mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_, nullptr, 0) == 0);
    REQUIRE(mbedtls_x509_crt_parse_file(&ca_, pki().ca_crt.c_str()) == 0);
    REQUIRE(mbedtls_ssl_config_defaults(&conf_, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT) == 0);
    mbedtls_ssl_conf_authmode(&conf_, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf_, &ca_, nullptr);
    mbedtls_ssl_conf_rng(&conf_, mbedtls_ctr_drbg_random, &drbg_);
    mbedtls_ssl_conf_read_timeout(&conf_, 5000);
    if (!cert.empty()) {
      REQUIRE(mbedtls_x509_crt_parse_file(&cert_, cert.c_str()) == 0);
      REQUIRE(mbedtls_pk_parse_keyfile(&key_, key.c_str(), nullptr) == 0);
      REQUIRE(mbedtls_ssl_conf_own_cert(&conf_, &cert_, &key_) == 0);
    }
    REQUIRE(mbedtls_ssl_setup(&ssl_, &conf_) == 0);
    REQUIRE(mbedtls_ssl_set_hostname(&ssl_, "localhost") == 0);
    REQUIRE(mbedtls_net_connect(&net_, "127.0.0.1", std::to_string(port).c_str(),
                                MBEDTLS_NET_PROTO_TCP) == 0);
    mbedtls_ssl_set_bio(&ssl_, &net_, mbedtls_net_send, nullptr, mbedtls_net_recv_timeout);
    int rc = 0;
    do {
      rc = mbedtls_ssl_handshake(&ssl_);
    } while (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE);
    return rc;
  }

  void send(std::string_view data) {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    std::size_t left = data.size();
    while (left > 0) {
      const int n = mbedtls_ssl_write(&ssl_, p, left);
      REQUIRE(n > 0);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

  void closeNotify() { mbedtls_ssl_close_notify(&ssl_); }

  [[nodiscard]] std::uint16_t localPort() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(net_.fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }

 private:
  mbedtls_net_context net_;
  mbedtls_ssl_context ssl_;
  mbedtls_ssl_config conf_;
  mbedtls_x509_crt ca_;
  mbedtls_x509_crt cert_;
  mbedtls_pk_context key_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
};

SyslogOptions tlsOptions(const std::string& name, bool require_client_cert) {
  SyslogOptions o = options(name, "tls://127.0.0.1:0");
  o.tls_cert_file = pki().server_crt;
  o.tls_key_file = pki().server_key;
  if (require_client_cert) o.tls_client_ca_file = pki().ca_crt;
  return o;
}

}  // namespace

TEST_CASE("UDP: one datagram is one parsed message with its peer and receive time", "[component]") {
  MemorySink sink;
  auto src = startSource(options("udp-in", "udp://127.0.0.1:0"), sink);
  REQUIRE(src->localAddress().rfind("udp://127.0.0.1:", 0) == 0);
  const std::uint16_t port = portOf(src->localAddress());
  REQUIRE(port != 0);
  auto client = udpSocket();

  const std::string m1 = "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - 'su root' failed";
  const std::string m2 = "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!";
  const std::string m3 = "no pri at all";
  const std::uint64_t before = nowNs();
  udpSend(*client, port, m1 + "\n");
  udpSend(*client, port, m2 + std::string(2, '\0'));
  udpSend(*client, port, "\r\n");  // empty once trimmed: ignored
  udpSend(*client, port, m3);
  REQUIRE(sink.waitFor(3, 5s));
  expectCounter(*src, "bytes_received", m1.size() + 1 + m2.size() + 2 + 2 + m3.size());
  const std::uint64_t after = nowNs();

  REQUIRE(payloads(sink) == std::vector<std::string>{m1, m2, m3});
  const auto records = sink.records();
  for (const auto& r : records) {
    CHECK(r.kind == RecordKind::kSyslog);
    CHECK(r.input == "udp-in");
    CHECK(r.timestamp_ns >= before);
    CHECK(r.timestamp_ns <= after);
  }
  const auto peer = "udp://127.0.0.1:" + std::to_string(client->localPort());
  auto meta = metaOf(records[0]);
  CHECK(meta.format == SyslogFormat::kRfc5424);
  CHECK(meta.facility == 4);
  CHECK(meta.severity == 2);
  CHECK(meta.timestamp_ns == 1065910455003000000);
  CHECK(meta.host == "mymachine");
  CHECK(meta.app == "su");
  CHECK(meta.procid.empty());
  CHECK(meta.msgid == "ID47");
  CHECK(records[0].payload.substr(meta.message_offset) == "'su root' failed");
  CHECK(meta.peer == peer);
  meta = metaOf(records[1]);
  CHECK(meta.format == SyslogFormat::kRfc3164);
  CHECK(meta.host == "10.0.0.99");
  CHECK(records[1].payload.substr(meta.message_offset) == "Use the BFG!");
  meta = metaOf(records[2]);
  CHECK(meta.format == SyslogFormat::kRaw);
  CHECK(meta.severity == cistern::kNoSeverity);
  CHECK(meta.message_offset == 0);
  CHECK(meta.peer == peer);

  expectCounter(*src, "messages_received", 3);
  expectCounter(*src, "messages_stored", 3);
  expectCounter(*src, "messages_unparsed", 1);
  expectCounter(*src, "messages_truncated", 0);
  expectCounter(*src, "messages_dropped_agent", 0);
  expectCounter(*src, "connections_accepted", 0);
  src->stop();
  src->stop();  // idempotent
}

TEST_CASE("UDP: oversized datagrams are cut, a full sink drops and counts", "[component]") {
  MemorySink sink;
  SyslogOptions o = options("udp-in", "udp://127.0.0.1:0");
  o.max_message_bytes = 16;
  auto src = startSource(o, sink);
  const std::uint16_t port = portOf(src->localAddress());
  auto client = udpSocket();

  udpSend(*client, port, "<13>0123456789abcdefghij");
  REQUIRE(sink.waitFor(1, 5s));
  CHECK(sink.records()[0].payload == "<13>0123456789ab");
  expectCounter(*src, "messages_truncated", 1);

  sink.setFull(true);
  for (int i = 0; i < 3; ++i) udpSend(*client, port, "<13>refused " + std::to_string(i));
  expectCounter(*src, "messages_dropped_agent", 3);
  sink.setFull(false);
  udpSend(*client, port, "<13>accepted");
  REQUIRE(sink.waitFor(2, 5s));
  CHECK(sink.records()[1].payload == "<13>accepted");
  expectCounter(*src, "messages_received", 5);
  expectCounter(*src, "messages_stored", 2);
  expectCounter(*src, "messages_dropped_agent", 3);
  CHECK(sink.refused() == 3);
}

TEST_CASE("TCP: octet counting, LF framing and both mixed on one connection", "[component]") {
  MemorySink sink;
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  REQUIRE(src->localAddress().rfind("tcp://127.0.0.1:", 0) == 0);
  const std::uint16_t port = portOf(src->localAddress());

  const std::string a = "<34>1 2003-10-11T22:14:15.003Z host app 42 ID1 - first\nwith LF inside";
  const std::string b = "<13>Feb  5 17:32:18 host cron[7]: second";
  const std::string c = "<14>third";

  SECTION("octet counting, frames split across writes") {
    auto client = tcpConnect(port);
    const std::string stream = std::to_string(a.size()) + " " + a + std::to_string(b.size()) + " " +
                               b + std::to_string(c.size()) + " " + c;
    for (std::size_t i = 0; i < stream.size(); i += 7) {
      client->sendAll(std::string_view(stream).substr(i, 7));
      std::this_thread::sleep_for(1ms);
    }
    REQUIRE(sink.waitFor(3, 5s));
    CHECK(payloads(sink) == std::vector<std::string>{a, b, c});
    const auto records = sink.records();
    auto meta = metaOf(records[0]);
    CHECK(meta.format == SyslogFormat::kRfc5424);
    CHECK(meta.procid == "42");
    CHECK(records[0].payload.substr(meta.message_offset) == "first\nwith LF inside");
    CHECK(meta.peer == "tcp://127.0.0.1:" + std::to_string(client->localPort()));
    meta = metaOf(records[1]);
    CHECK(meta.app == "cron");
    CHECK(meta.procid == "7");
    expectCounter(*src, "bytes_received", stream.size());
    expectCounter(*src, "messages_unparsed", 1);  // "<14>third" has no header
  }
  SECTION("LF framing with CRLF and blank lines") {
    auto client = tcpConnect(port);
    client->sendAll(b + "\r\n\n" + c + "\n\r\n" + b + "\n");
    REQUIRE(sink.waitFor(3, 5s));
    CHECK(payloads(sink) == std::vector<std::string>{b, c, b});
  }
  SECTION("mixed framing, detected per message") {
    auto client = tcpConnect(port);
    client->sendAll(b + "\n" + std::to_string(a.size()) + " " + a + c + "\n" +
                    std::to_string(b.size()) + " " + b);
    REQUIRE(sink.waitFor(4, 5s));
    CHECK(payloads(sink) == std::vector<std::string>{b, a, c, b});
  }
  // The section's client has closed its connection.
  expectCounter(*src, "connections_active", 0);
  CHECK(counter(*src, "connections_accepted") == 1);
  CHECK(counter(*src, "messages_stored") == sink.size());
  CHECK(counter(*src, "messages_received") == sink.size());
  CHECK(counter(*src, "framing_errors") == 0);
  CHECK(counter(*src, "messages_dropped_agent") == 0);
}

TEST_CASE("TCP: malformed frames close the connection, unparsed messages are kept", "[component]") {
  MemorySink sink;
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  const std::uint16_t port = portOf(src->localAddress());

  auto c1 = tcpConnect(port);
  c1->sendAll("hello, no PRI\n12x <13>bad count\n<13>never read\n");
  CHECK(c1->closedByPeer());
  auto c2 = tcpConnect(port);
  c2->sendAll("99999999999 <13>eleven digits\n");
  CHECK(c2->closedByPeer());
  auto c3 = tcpConnect(port);
  c3->sendAll("0 \n");
  CHECK(c3->closedByPeer());

  expectCounter(*src, "framing_errors", 3);
  expectCounter(*src, "connections_active", 0);
  CHECK(payloads(sink) == std::vector<std::string>{"hello, no PRI"});
  CHECK(metaOf(sink.records()[0]).format == SyslogFormat::kRaw);
  CHECK(counter(*src, "messages_unparsed") == 1);
  CHECK(counter(*src, "messages_received") == 1);
  CHECK(counter(*src, "messages_stored") == 1);
}

TEST_CASE("TCP: oversized messages keep their first max_message_bytes", "[component]") {
  MemorySink sink;
  SyslogOptions o = options("tcp-in", "tcp://127.0.0.1:0");
  o.max_message_bytes = 16;
  auto src = startSource(o, sink);
  auto client = tcpConnect(portOf(src->localAddress()));
  const std::string long_msg = "<13>" + std::string(36, 'x');  // 40 bytes
  const std::string sixteen = "<13>" + std::string(12, 's');
  const std::string sixteen_lf = "<13>" + std::string(12, 'l');
  client->sendAll(std::to_string(long_msg.size()) + " " + long_msg + "8 <13>next" + long_msg +
                  "\n<13>after LF\n" + "16 " + sixteen + sixteen_lf + "\n");
  REQUIRE(sink.waitFor(6, 5s));
  const std::string cut = long_msg.substr(0, 16);
  CHECK(payloads(sink) ==
        std::vector<std::string>{cut, "<13>next", cut, "<13>after LF", sixteen, sixteen_lf});
  expectCounter(*src, "messages_truncated", 2);
  expectCounter(*src, "messages_received", 6);
  expectCounter(*src, "messages_stored", 6);
  CHECK(counter(*src, "framing_errors") == 0);
}

TEST_CASE("TCP: a client that disconnects mid-frame loses only that frame, counted",
          "[component]") {
  MemorySink sink;
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  const std::uint16_t port = portOf(src->localAddress());

  auto c1 = tcpConnect(port);
  c1->sendAll("<13>complete\n30 <13>only part of it");
  REQUIRE(sink.waitFor(1, 5s));
  c1->close();
  expectCounter(*src, "framing_errors", 1);

  auto c2 = tcpConnect(port);
  c2->sendAll("12 <13>complete");
  c2->sendAll("<13>line without its LF");
  REQUIRE(sink.waitFor(2, 5s));
  c2->close();
  expectCounter(*src, "framing_errors", 2);
  expectCounter(*src, "connections_active", 0);

  CHECK(payloads(sink) == std::vector<std::string>{"<13>complete", "<13>complete"});
  CHECK(counter(*src, "messages_received") == 2);
  CHECK(counter(*src, "messages_stored") == 2);
}

TEST_CASE("TCP: connections over max_connections are accepted and closed", "[component]") {
  MemorySink sink;
  SyslogOptions o = options("tcp-in", "tcp://127.0.0.1:0");
  o.max_connections = 2;
  auto src = startSource(o, sink);
  const std::uint16_t port = portOf(src->localAddress());

  auto c1 = tcpConnect(port);
  auto c2 = tcpConnect(port);
  expectCounter(*src, "connections_active", 2);
  auto c3 = tcpConnect(port);
  CHECK(c3->closedByPeer());
  expectCounter(*src, "connections_rejected", 1);

  c1->sendAll("<13>from one\n");
  c2->sendAll("<13>from two\n");
  REQUIRE(sink.waitFor(2, 5s));
  c1->close();
  expectCounter(*src, "connections_active", 1);
  auto c4 = tcpConnect(port);
  c4->sendAll("<13>from four\n");
  REQUIRE(sink.waitFor(3, 5s));
  expectCounter(*src, "connections_accepted", 3);
  expectCounter(*src, "connections_active", 2);
  CHECK(counter(*src, "connections_rejected") == 1);
}

TEST_CASE("TCP: idle connections are closed after idle_timeout", "[component]") {
  MemorySink sink;
  SyslogOptions o = options("tcp-in", "tcp://127.0.0.1:0");
  o.idle_timeout = 150ms;
  auto src = startSource(o, sink);
  const std::uint16_t port = portOf(src->localAddress());

  auto quiet = tcpConnect(port);
  auto partial = tcpConnect(port);
  partial->sendAll("<13>complete\n<13>partial");
  const auto start = std::chrono::steady_clock::now();
  CHECK(quiet->closedByPeer());
  CHECK(partial->closedByPeer());
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  expectCounter(*src, "connections_active", 0);
  expectCounter(*src, "framing_errors", 1);  // the partial frame
  CHECK(payloads(sink) == std::vector<std::string>{"<13>complete"});
}

TEST_CASE("TCP: a full sink pauses reading and nothing is lost once it frees up", "[component]") {
  MemorySink sink;
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  auto client = tcpConnect(portOf(src->localAddress()));
  // A fixed small send buffer (no autotuning) so that the data cannot all sit in kernel buffers.
  const int sndbuf = 64 * 1024;
  REQUIRE(::setsockopt(client->fd(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0);
  sink.setFull(true);

  constexpr int kMessages = 20000;
  std::atomic<bool> sent{false};
  std::atomic<bool> send_failed{false};
  std::thread sender([&] {
    std::string batch;
    for (int i = 0; i < kMessages; ++i) {
      const std::string m = "<13>message " + std::to_string(i) + " " + std::string(80, 'p');
      batch += i % 2 == 0 ? m + "\n" : std::to_string(m.size()) + " " + m;
      if (batch.size() > 16384) {
        if (!client->trySendAll(batch)) send_failed = true;
        batch.clear();
      }
    }
    if (!client->trySendAll(batch)) send_failed = true;
    sent = true;
  });

  REQUIRE(waitUntil([&] { return sink.refused() > 0; }));
  std::this_thread::sleep_for(300ms);
  // Reading stopped at the first refused batch: at most one batch (256) was framed meanwhile.
  CHECK(sink.size() == 0);
  CHECK(counter(*src, "messages_received") <= 256);
  CHECK(counter(*src, "messages_dropped_agent") == 0);
  // ~2 MB does not fit in loopback socket buffers while the source does not read.
  CHECK_FALSE(sent.load());

  sink.setFull(false);
  REQUIRE(sink.waitFor(kMessages, 20s));
  sender.join();
  CHECK_FALSE(send_failed.load());
  const auto got = payloads(sink);
  REQUIRE(got.size() == kMessages);
  for (int i = 0; i < kMessages; i += 997) {
    CHECK(got[static_cast<std::size_t>(i)] ==
          "<13>message " + std::to_string(i) + " " + std::string(80, 'p'));
  }
  CHECK(got.back() == "<13>message " + std::to_string(kMessages - 1) + " " + std::string(80, 'p'));
  expectCounter(*src, "messages_received", kMessages);
  expectCounter(*src, "messages_stored", kMessages);
  CHECK(counter(*src, "messages_dropped_agent") == 0);
  CHECK(counter(*src, "framing_errors") == 0);
}

TEST_CASE("stop() gives up on a full sink within about a second and counts what it held",
          "[component]") {
  MemorySink sink;
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  auto client = tcpConnect(portOf(src->localAddress()));
  sink.setFull(true);
  std::string data;
  for (int i = 0; i < 100; ++i) data += "<13>held " + std::to_string(i) + "\n";
  client->sendAll(data);
  REQUIRE(waitUntil([&] { return sink.refused() > 0; }));

  const auto start = std::chrono::steady_clock::now();
  src->stop();
  CHECK(std::chrono::steady_clock::now() - start < 1500ms);
  CHECK(client->closedByPeer());
  CHECK(sink.size() == 0);
  const auto received = counter(*src, "messages_received");
  CHECK(received >= 1);
  CHECK(received <= 100);
  CHECK(counter(*src, "messages_dropped_agent") == received);
  CHECK(counter(*src, "messages_stored") == 0);
}

TEST_CASE("stop() hands over what was read when the sink has room", "[component]") {
  MemorySink sink;
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  auto client = tcpConnect(portOf(src->localAddress()));
  sink.setFull(true);
  client->sendAll("<13>one\n<13>two\n");
  REQUIRE(waitUntil([&] { return sink.refused() > 0; }));
  std::thread release([&] {
    std::this_thread::sleep_for(100ms);
    sink.setFull(false);
  });
  src->stop();
  release.join();
  CHECK(payloads(sink) == std::vector<std::string>{"<13>one", "<13>two"});
  CHECK(counter(*src, "messages_stored") == 2);
  CHECK(counter(*src, "messages_dropped_agent") == 0);
}

TEST_CASE("makeSyslogSource reports a port in use, naming the input and address", "[component]") {
  MemorySink sink;
  for (const std::string scheme : {"tcp", "udp"}) {
    INFO(scheme);
    auto first = startSource(options("first", scheme + "://127.0.0.1:0"), sink);
    const std::string taken = first->localAddress();
    auto second = makeSyslogSource(options("second", taken), sink);
    REQUIRE_FALSE(second);
    CHECK(second.error().code == ErrorCode::kIo);
    CHECK_THAT(second.error().message, Catch::StartsWith("input 'second': "));
    CHECK_THAT(second.error().message, Catch::Contains(taken));
    CHECK_THAT(second.error().message, Catch::Contains("EADDRINUSE"));
  }
}

TEST_CASE("makeSyslogSource rejects bad options with kConfig", "[component]") {
  MemorySink sink;
  const auto error = [&](const SyslogOptions& o) {
    auto made = makeSyslogSource(o, sink);
    REQUIRE_FALSE(made);
    CHECK(made.error().code == ErrorCode::kConfig);
    CHECK_THAT(made.error().message, Catch::StartsWith("input '" + o.name + "': "));
    return made.error().message;
  };
  CHECK_THAT(error(options("in", "http://127.0.0.1:1")), Catch::Contains("scheme"));
  CHECK_THAT(error(options("in", "tcp://127.0.0.1")), Catch::Contains("no port"));
  CHECK_THAT(error(options("in", "tcp://::1:514")), Catch::Contains("brackets"));
  CHECK_THAT(error(options("in", "tcp://127.0.0.1:65536")), Catch::Contains("port"));
  CHECK_THAT(error(options("in", "udp://:514")), Catch::Contains("no host"));
  CHECK_THAT(error(options("in", "tls://127.0.0.1:0")), Catch::Contains("tls_cert_file"));
  SyslogOptions o = options("in", "tcp://127.0.0.1:0");
  o.max_message_bytes = 0;
  CHECK_THAT(error(o), Catch::Contains("max_message_bytes"));
  o = options("in", "tcp://127.0.0.1:0");
  o.max_connections = 0;
  CHECK_THAT(error(o), Catch::Contains("max_connections"));
  o = options("in", "tcp://127.0.0.1:0");
  o.tls_cert_file = pki().server_crt;
  CHECK_THAT(error(o), Catch::Contains("not tls://"));
  o = options(std::string(256, 'n'), "tcp://127.0.0.1:0");
  CHECK_THAT(error(o), Catch::Contains("1 to 255"));

  cistern::testing::TempDir dir("cistern-syslog-bad");
  const std::string garbage = (dir / "garbage.pem").string();
  std::ofstream(garbage) << "-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                            "-----END CERTIFICATE-----\n";
  o = tlsOptions("in", false);
  o.tls_cert_file = (dir / "missing.crt").string();
  std::string msg = error(o);
  CHECK_THAT(msg, Catch::Contains(o.tls_cert_file) && Catch::Contains("No such file"));
  o = tlsOptions("in", false);
  o.tls_cert_file = garbage;
  msg = error(o);
  CHECK_THAT(msg, Catch::Contains(garbage) && Catch::Contains("PEM"));
  o = tlsOptions("in", false);
  o.tls_key_file = garbage;
  msg = error(o);
  CHECK_THAT(msg, Catch::Contains("tls_key_file") && Catch::Contains(garbage));
  o = tlsOptions("in", false);
  o.tls_key_file = pki().client_key;
  CHECK_THAT(error(o), Catch::Contains("does not match"));
  o = tlsOptions("in", true);
  o.tls_client_ca_file = garbage;
  CHECK_THAT(error(o), Catch::Contains("tls_client_ca_file") && Catch::Contains(garbage));
}

TEST_CASE("TLS: a client with a certificate signed by the client CA is served", "[component]") {
  MemorySink sink;
  auto src = startSource(tlsOptions("tls-in", true), sink);
  REQUIRE(src->localAddress().rfind("tls://127.0.0.1:", 0) == 0);
  TlsClient client;
  REQUIRE(client.connect(portOf(src->localAddress()), pki().client_crt, pki().client_key) == 0);
  const std::string a = "<34>1 2003-10-11T22:14:15.003Z host app - - - over TLS";
  const std::string b = "<13>Feb  5 17:32:18 host app: also over TLS";
  const std::string stream = std::to_string(a.size()) + " " + a + b + "\n";
  client.send(stream);
  REQUIRE(sink.waitFor(2, 5s));
  CHECK(payloads(sink) == std::vector<std::string>{a, b});
  CHECK(metaOf(sink.records()[0]).peer == "tls://127.0.0.1:" + std::to_string(client.localPort()));
  client.closeNotify();
  expectCounter(*src, "connections_active", 0);
  CHECK(counter(*src, "bytes_received") == stream.size());
  CHECK(counter(*src, "tls_handshake_failures") == 0);
  CHECK(counter(*src, "connections_accepted") == 1);
  CHECK(counter(*src, "messages_stored") == 2);
  CHECK(counter(*src, "framing_errors") == 0);
}

TEST_CASE("TLS: without a client CA, clients need no certificate", "[component]") {
  MemorySink sink;
  auto src = startSource(tlsOptions("tls-in", false), sink);
  TlsClient client;
  REQUIRE(client.connect(portOf(src->localAddress())) == 0);
  client.send("<13>anonymous\n");
  REQUIRE(sink.waitFor(1, 5s));
  CHECK(payloads(sink) == std::vector<std::string>{"<13>anonymous"});
  CHECK(counter(*src, "tls_handshake_failures") == 0);
}

TEST_CASE("TLS: handshake failures are counted and nothing is stored", "[component]") {
  MemorySink sink;
  auto src = startSource(tlsOptions("tls-in", true), sink);
  const std::uint16_t port = portOf(src->localAddress());

  SECTION("a client without the required certificate") {
    TlsClient client;
    const int rc = client.connect(port);
    if (rc == 0) client.send("<13>must not be stored\n");  // the failure may surface later
    expectCounter(*src, "tls_handshake_failures", 1);
  }
  SECTION("a plain-text client") {
    auto client = tcpConnect(port);
    client->sendAll("<13>plain text to a TLS port\n");
    CHECK(client->closedByPeer());
    expectCounter(*src, "tls_handshake_failures", 1);
  }
  SECTION("a client that disconnects during the handshake") {
    auto client = tcpConnect(port);
    expectCounter(*src, "connections_active", 1);
    client->close();
    expectCounter(*src, "tls_handshake_failures", 1);
  }
  expectCounter(*src, "connections_active", 0);
  std::this_thread::sleep_for(50ms);
  CHECK(sink.size() == 0);
  CHECK(counter(*src, "messages_received") == 0);
  CHECK(counter(*src, "connections_accepted") == 1);
}

TEST_CASE("Sources stop cleanly whether started or not, with clients connected", "[component]") {
  MemorySink sink;
  {
    auto made = makeSyslogSource(options("never", "tcp://127.0.0.1:0"), sink);
    REQUIRE(made);
    auto early = tcpConnect(portOf((*made)->localAddress()));  // waits in the backlog
  }                                                            // destroyed without start()
  auto src = startSource(options("tcp-in", "tcp://127.0.0.1:0"), sink);
  auto client = tcpConnect(portOf(src->localAddress()));
  expectCounter(*src, "connections_active", 1);
  const auto start = std::chrono::steady_clock::now();
  src->stop();
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK(client->closedByPeer());
  CHECK_FALSE(src->start());
  CHECK(counter(*src, "connections_active") == 0);
}

TEST_CASE("IPv6: listens on [::1] and records bracketed addresses", "[component]") {
  MemorySink sink;
  auto made = makeSyslogSource(options("v6", "tcp://[::1]:0"), sink);
  if (!made) {
    WARN("no IPv6 loopback here: " << made.error().message);
    return;
  }
  auto src = std::move(*made);
  REQUIRE(src->start());
  REQUIRE(src->localAddress().rfind("tcp://[::1]:", 0) == 0);
  Socket client(::socket(AF_INET6, SOCK_STREAM, 0));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(portOf(src->localAddress()));
  a.sin6_addr = in6addr_loopback;
  REQUIRE(::connect(client.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  client.sendAll("<13>over IPv6\n");
  REQUIRE(sink.waitFor(1, 5s));
  CHECK_THAT(std::string(metaOf(sink.records()[0]).peer), Catch::StartsWith("tcp://[::1]:"));
}
