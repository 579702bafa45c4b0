#include "syslog_tls.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <mbedtls/error.h>

namespace cistern::capture {
namespace {

constexpr std::string_view kDrbgPersonalization = "cistern-syslog-tls";

// mbedTLS reports a missing or unreadable file only as "file I/O error"; opening it first gives
// the operator the system's reason.
Status checkReadable(const char* what, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    return fail(ErrorCode::kConfig,
                fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)));
  }
  std::fclose(f);
  return ok();
}

Status loadCertificates(const char* what, const std::string& path, mbedtls_x509_crt& crt) {
  if (auto s = checkReadable(what, path); !s) return s;
  const int rc = mbedtls_x509_crt_parse_file(&crt, path.c_str());
  // A positive result counts certificates that failed to parse while others loaded; a bundle
  // with one bad entry is still a configuration mistake worth reporting.
  if (rc != 0) {
    const std::string why =
        rc < 0 ? mbedtlsErrorText(rc) : fmt::format("{} certificate(s) could not be parsed", rc);
    return fail(ErrorCode::kConfig, fmt::format("cannot load {} '{}': {}", what, path, why));
  }
  return ok();
}

}  // namespace

std::string mbedtlsErrorText(int code) {
  std::array<char, 256> buf{};
  mbedtls_strerror(code, buf.data(), buf.size());
  return fmt::format("{} (-0x{:04x})", buf.data(), static_cast<unsigned>(-code));
}

TlsServerConfig::TlsServerConfig() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
  mbedtls_x509_crt_init(&cert_);
  mbedtls_x509_crt_init(&ca_);
  mbedtls_pk_init(&key_);
  mbedtls_ssl_config_init(&conf_);
}

TlsServerConfig::~TlsServerConfig() {
  mbedtls_ssl_config_free(&conf_);
  mbedtls_pk_free(&key_);
  mbedtls_x509_crt_free(&ca_);
  mbedtls_x509_crt_free(&cert_);
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Result<std::unique_ptr<TlsServerConfig>> TlsServerConfig::load(const std::string& cert_file,
                                                               const std::string& key_file,
                                                               const std::string& client_ca_file) {
  auto c = std::make_unique<TlsServerConfig>();
  if (auto s = loadCertificates("tls_cert_file", cert_file, c->cert_); !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = checkReadable("tls_key_file", key_file); !s) return tl::unexpected(s.error());
  if (const int rc = mbedtls_pk_parse_keyfile(&c->key_, key_file.c_str(), nullptr); rc != 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("cannot load tls_key_file '{}': {}", key_file, mbedtlsErrorText(rc)));
  }
  if (const int rc = mbedtls_pk_check_pair(&c->cert_.pk, &c->key_); rc != 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("tls_key_file '{}' does not match the certificate in '{}': {}",
                            key_file, cert_file, mbedtlsErrorText(rc)));
  }
  if (!client_ca_file.empty()) {
    if (auto s = loadCertificates("tls_client_ca_file", client_ca_file, c->ca_); !s) {
      return tl::unexpected(s.error());
    }
  }

  const auto* personalization = reinterpret_cast<const unsigned char*>(kDrbgPersonalization.data());
  if (const int rc = mbedtls_ctr_drbg_seed(&c->drbg_, mbedtls_entropy_func, &c->entropy_,
                                           personalization, kDrbgPersonalization.size());
      rc != 0) {
    return fail(ErrorCode::kIo,
                fmt::format("cannot seed the TLS random generator: {}", mbedtlsErrorText(rc)));
  }
  if (const int rc =
          mbedtls_ssl_config_defaults(&c->conf_, MBEDTLS_SSL_IS_SERVER,
                                      MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
      rc != 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot set up TLS: {}", mbedtlsErrorText(rc)));
  }
  mbedtls_ssl_conf_rng(&c->conf_, mbedtls_ctr_drbg_random, &c->drbg_);
  mbedtls_ssl_conf_min_version(&c->conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  if (const int rc = mbedtls_ssl_conf_own_cert(&c->conf_, &c->cert_, &c->key_); rc != 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("cannot use tls_cert_file '{}': {}", cert_file, mbedtlsErrorText(rc)));
  }
  if (client_ca_file.empty()) {
    mbedtls_ssl_conf_authmode(&c->conf_, MBEDTLS_SSL_VERIFY_NONE);
  } else {
    mbedtls_ssl_conf_ca_chain(&c->conf_, &c->ca_, nullptr);
    mbedtls_ssl_conf_authmode(&c->conf_, MBEDTLS_SSL_VERIFY_REQUIRED);
  }
  return c;
}

TlsSession::TlsSession() noexcept { mbedtls_ssl_init(&ssl_); }

TlsSession::~TlsSession() { mbedtls_ssl_free(&ssl_); }

Status TlsSession::setup(const TlsServerConfig& config) {
  if (const int rc = mbedtls_ssl_setup(&ssl_, config.get()); rc != 0) {
    last_error_ = rc;
    return fail(ErrorCode::kIo, fmt::format("cannot set up a TLS session: {}", errorText()));
  }
  mbedtls_ssl_set_bio(&ssl_, this, &TlsSession::sendCallback, &TlsSession::recvCallback, nullptr);
  return ok();
}

void TlsSession::feed(std::string_view ciphertext) {
  // Consumed input is dropped before appending, so the buffer holds at most one read's worth
  // beyond what mbedTLS has not taken yet.
  if (in_pos_ > 0) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  in_.append(ciphertext);
}

TlsSession::Io TlsSession::handshake() {
  if (handshake_done_) return Io::kOk;
  const int rc = mbedtls_ssl_handshake(&ssl_);
  if (rc == 0) {
    handshake_done_ = true;
    return Io::kOk;
  }
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return Io::kWantRead;
  last_error_ = rc;
  return Io::kError;
}

TlsSession::Io TlsSession::read(char* out, std::size_t capacity, std::size_t& n) {
  n = 0;
  const int rc = mbedtls_ssl_read(&ssl_, reinterpret_cast<unsigned char*>(out), capacity);
  if (rc > 0) {
    n = static_cast<std::size_t>(rc);
    return Io::kOk;
  }
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return Io::kWantRead;
  if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return Io::kClosed;
  last_error_ = rc;
  return Io::kError;
}

std::string TlsSession::takeOutput() {
  std::string out;
  out.swap(out_);
  return out;
}

std::string TlsSession::errorText() const { return mbedtlsErrorText(last_error_); }

int TlsSession::sendCallback(void* ctx, const unsigned char* buf, std::size_t len) {
  auto* self = static_cast<TlsSession*>(ctx);
  // mbedTLS writes at most one record (about 16 KiB) per call, so the int result cannot overflow.
  self->out_.append(reinterpret_cast<const char*>(buf), len);
  return static_cast<int>(len);
}

int TlsSession::recvCallback(void* ctx, unsigned char* buf, std::size_t len) {
  auto* self = static_cast<TlsSession*>(ctx);
  const std::size_t avail = self->in_.size() - self->in_pos_;
  if (avail == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  const std::size_t n = std::min({len, avail, std::size_t{1} << 30U});
  std::memcpy(buf, self->in_.data() + self->in_pos_, n);
  self->in_pos_ += n;
  return static_cast<int>(n);
}

}  // namespace cistern::capture
