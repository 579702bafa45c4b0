// TLS for the syslog input: an mbedTLS server session that runs over in-memory buffers, so the
// libuv loop owns the socket (uv_read feeds ciphertext in, uv_write sends what the session
// produced) and mbedTLS never blocks or touches a file descriptor.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "cistern/core/result.h"

namespace cistern::capture {

// The server's certificate chain, key, optional client CA and random generator, shared by every
// session of one input. Immutable after load(); used only by the input's loop thread afterwards.
class TlsServerConfig {
 public:
  TlsServerConfig();
  ~TlsServerConfig();
  TlsServerConfig(const TlsServerConfig&) = delete;
  TlsServerConfig& operator=(const TlsServerConfig&) = delete;

  // Loads the PEM files and sets up TLS 1.2 (the newest this mbedTLS serves) as the minimum
  // version; with `client_ca_file` non-empty, client certificates signed by it are required.
  // Errors: kConfig naming the file and giving mbedTLS's text (without the input's name).
  static Result<std::unique_ptr<TlsServerConfig>> load(const std::string& cert_file,
                                                       const std::string& key_file,
                                                       const std::string& client_ca_file);

  [[nodiscard]] const mbedtls_ssl_config* get() const noexcept { return &conf_; }

 private:
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt cert_;
  mbedtls_x509_crt ca_;
  mbedtls_pk_context key_;
  mbedtls_ssl_config conf_;
};

// One server-side TLS connection. Not movable: mbedTLS keeps a pointer to it for its I/O.
class TlsSession {
 public:
  enum class Io {
    kOk,        // handshake complete / plaintext read
    kWantRead,  // needs more ciphertext from the peer
    kClosed,    // the peer sent close_notify
    kError,     // fatal; see errorText()
  };

  TlsSession() noexcept;
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Binds the session to `config`, which must outlive it. Errors: kIo (out of memory in mbedTLS).
  Status setup(const TlsServerConfig& config);

  // Ciphertext received from the peer.
  void feed(std::string_view ciphertext);
  // Advances the handshake with the ciphertext fed so far.
  Io handshake();
  [[nodiscard]] bool handshakeDone() const noexcept { return handshake_done_; }
  // Decrypts into `out`; with kOk, `n` > 0 bytes were written.
  Io read(char* out, std::size_t capacity, std::size_t& n);
  // Ciphertext the session wants sent to the peer (handshake messages, alerts); clears it.
  std::string takeOutput();
  // mbedTLS's description of the last error.
  [[nodiscard]] std::string errorText() const;

 private:
  static int sendCallback(void* ctx, const unsigned char* buf, std::size_t len);
  static int recvCallback(void* ctx, unsigned char* buf, std::size_t len);

  mbedtls_ssl_context ssl_;
  std::string in_;
  std::size_t in_pos_ = 0;
  std::string out_;
  bool handshake_done_ = false;
  int last_error_ = 0;
};

// mbedtls_strerror() as a string.
std::string mbedtlsErrorText(int code);

}  // namespace cistern::capture
