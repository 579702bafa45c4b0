// TLS for outputs: an mbedTLS client session over in-memory buffers. The libuv loop owns the
// socket (StreamConnection feeds the ciphertext it reads and writes the ciphertext the session
// produces); mbedTLS never blocks and never touches a file descriptor.
//
// Debian 12's mbedTLS (2.28) speaks TLS 1.2 at most, which is also the minimum accepted here.
// The server's certificate is verified by default, against `ca_file` or the system's CAs, and its
// name against `server_name` or the endpoint's host. mbedTLS 2.28 matches only DNS names, so an
// IP address is checked here against the certificate's iPAddress subjectAltNames (RFC 6125: an
// IP address never matches a common name).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "cistern/core/result.h"
#include "cistern/transport/tls.h"

namespace cistern::transport {

// The system's CA bundle (Debian's ca-certificates), used when `ca_file` is empty.
inline constexpr const char* kSystemCaFile = "/etc/ssl/certs/ca-certificates.crt";

// An output's TLS material (CAs, optional client certificate and key) and random generator,
// loaded once and shared by every session of the output. Immutable after load() except for the
// random generator's state, so its sessions must all run on one thread (the event loop's).
class TlsClientConfig {
 public:
  TlsClientConfig();
  ~TlsClientConfig();
  TlsClientConfig(const TlsClientConfig&) = delete;
  TlsClientConfig& operator=(const TlsClientConfig&) = delete;

  // Loads the PEM files of `options` and sets TLS 1.2 as the minimum version. Any thread.
  // Errors: kConfig naming the file (or the missing half of a certificate/key pair) with the
  // system's or mbedTLS's text; kIo when the random generator cannot be seeded.
  static Result<std::shared_ptr<const TlsClientConfig>> load(const TlsClientOptions& options);

  [[nodiscard]] const TlsClientOptions& options() const noexcept { return options_; }
  [[nodiscard]] const mbedtls_ssl_config* get() const noexcept { return &conf_; }

 private:
  TlsClientOptions options_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt ca_;
  mbedtls_x509_crt cert_;
  mbedtls_pk_context key_;
  mbedtls_ssl_config conf_;
};

// One client connection's TLS state. Not movable: mbedTLS keeps pointers to it for its I/O and
// certificate checks. Use on one thread.
class TlsClientSession {
 public:
  enum class Io {
    kOk,        // the handshake completed / plaintext was read
    kWantRead,  // more ciphertext from the server is needed
    kClosed,    // the server sent close_notify
    kError,     // fatal; see errorText() and certificateRejected()
  };

  TlsClientSession() noexcept;
  ~TlsClientSession();
  TlsClientSession(const TlsClientSession&) = delete;
  TlsClientSession& operator=(const TlsClientSession&) = delete;

  // Binds the session to `config` (which must outlive it) for a server reached as `host` (the
  // endpoint's host name or IP address). The name verified and sent as SNI is the config's
  // server_name when set, else `host`; an IP address is verified but not sent as SNI. Errors:
  // kIo when mbedTLS cannot allocate the session.
  Status setup(const TlsClientConfig& config, const std::string& host);

  // Ciphertext received from the server.
  void feed(std::string_view ciphertext);
  // Advances the handshake with the ciphertext fed so far; its messages go to takeOutput().
  Io handshake();
  [[nodiscard]] bool handshakeDone() const noexcept { return handshake_done_; }
  // Encrypts `plaintext` (after the handshake) into the output. Errors: kIo with mbedTLS's text.
  Status write(std::string_view plaintext);
  // Decrypts whatever complete records were fed and appends the plaintext to `out`: kOk when
  // something was appended, kWantRead when nothing more is available yet.
  Io read(std::string& out);
  // Queues a close_notify alert for the server.
  void closeNotify();
  // Ciphertext to send to the server (handshake messages, records, alerts); clears it.
  std::string takeOutput();

  // mbedTLS's description of the last error, with the certificate verification failures
  // (mbedtls_x509_crt_verify_info) when the server's certificate was refused.
  [[nodiscard]] std::string errorText() const;
  // The last error was a refused server certificate: a configuration matter (wrong CA, wrong
  // name, expired certificate) that retrying will not fix.
  [[nodiscard]] bool certificateRejected() const noexcept;

 private:
  static int sendCallback(void* ctx, const unsigned char* buf, std::size_t len);
  static int recvCallback(void* ctx, unsigned char* buf, std::size_t len);
  static int verifyCallback(void* ctx, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags);

  mbedtls_ssl_context ssl_;
  std::string in_;
  std::size_t in_pos_ = 0;
  std::string out_;
  std::string expected_ip_;  // binary IPv4/IPv6 address to find in the certificate; else empty
  bool handshake_done_ = false;
  int last_error_ = 0;
};

// True when the DER-encoded certificate `crt` lists `ip` (4 or 16 bytes, network order) among
// its iPAddress subjectAltNames. Exposed for tests.
bool certificateHasIpAddress(const mbedtls_x509_crt& crt, std::string_view ip);

// mbedtls_strerror() text with the code, e.g. "SSL - ... (-0x7780)".
std::string mbedtlsError(int code);

}  // namespace cistern::transport
