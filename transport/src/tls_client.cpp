#include "tls_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <mbedtls/asn1.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>

namespace cistern::transport {
namespace {

constexpr std::string_view kDrbgPersonalization = "cistern-tls-client";
constexpr std::size_t kReadChunk = std::size_t{16} << 10U;

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
  // A positive result counts certificates that failed to parse while others loaded: the system
  // bundle may hold a few that this mbedTLS cannot read, which is harmless there, but an
  // operator's own file with a broken entry is a mistake worth reporting.
  if (rc < 0 || (rc > 0 && path != kSystemCaFile)) {
    const std::string why =
        rc < 0 ? mbedtlsError(rc) : fmt::format("{} certificate(s) could not be parsed", rc);
    return fail(ErrorCode::kConfig, fmt::format("cannot load {} '{}': {}", what, path, why));
  }
  return ok();
}

// The address as 4 or 16 bytes in network order when `name` is an IP literal; else empty.
std::string ipBytes(const std::string& name) {
  std::array<unsigned char, 16> buf{};
  if (inet_pton(AF_INET, name.c_str(), buf.data()) == 1) {
    return {reinterpret_cast<const char*>(buf.data()), 4};
  }
  if (inet_pton(AF_INET6, name.c_str(), buf.data()) == 1) {
    return {reinterpret_cast<const char*>(buf.data()), 16};
  }
  return {};
}

// Whether GeneralNames (RFC 5280 4.2.1.6) in [p, end) hold iPAddress `ip`.
bool generalNamesHaveIp(unsigned char* p, const unsigned char* end, std::string_view ip) {
  std::size_t len = 0;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) {
    return false;
  }
  const unsigned char* names_end = p + len;
  constexpr unsigned char kIpAddressTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7;
  while (p < names_end) {
    const unsigned char tag = *p++;
    if (mbedtls_asn1_get_len(&p, names_end, &len) != 0) return false;
    if (tag == kIpAddressTag && len == ip.size() && std::memcmp(p, ip.data(), len) == 0) {
      return true;
    }
    p += len;
  }
  return false;
}

}  // namespace

std::string mbedtlsError(int code) {
  std::array<char, 256> buf{};
  mbedtls_strerror(code, buf.data(), buf.size());
  return fmt::format("{} (-0x{:04x})", buf.data(), static_cast<unsigned>(-code));
}

bool certificateHasIpAddress(const mbedtls_x509_crt& crt, std::string_view ip) {
  unsigned char* p = crt.v3_ext.p;
  if (p == nullptr || ip.empty()) return false;
  const unsigned char* end = p + crt.v3_ext.len;
  std::size_t len = 0;
  // v3_ext holds the Extensions SEQUENCE (the [3] wrapper already removed).
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) {
    return false;
  }
  end = p + len;
  const std::string_view san_oid(MBEDTLS_OID_SUBJECT_ALT_NAME,
                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME));
  while (p < end) {
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) !=
        0) {
      return false;
    }
    unsigned char* ext_end = p + len;
    std::size_t oid_len = 0;
    if (mbedtls_asn1_get_tag(&p, ext_end, &oid_len, MBEDTLS_ASN1_OID) != 0) return false;
    const bool is_san = std::string_view(reinterpret_cast<const char*>(p), oid_len) == san_oid;
    p += oid_len;
    int critical = 0;
    // The critical flag is optional; without it get_bool leaves p where it was.
    (void)mbedtls_asn1_get_bool(&p, ext_end, &critical);
    std::size_t value_len = 0;
    if (mbedtls_asn1_get_tag(&p, ext_end, &value_len, MBEDTLS_ASN1_OCTET_STRING) != 0) {
      return false;
    }
    if (is_san) return generalNamesHaveIp(p, p + value_len, ip);
    p = ext_end;
  }
  return false;
}

TlsClientConfig::TlsClientConfig() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
  mbedtls_x509_crt_init(&ca_);
  mbedtls_x509_crt_init(&cert_);
  mbedtls_pk_init(&key_);
  mbedtls_ssl_config_init(&conf_);
}

TlsClientConfig::~TlsClientConfig() {
  mbedtls_ssl_config_free(&conf_);
  mbedtls_pk_free(&key_);
  mbedtls_x509_crt_free(&cert_);
  mbedtls_x509_crt_free(&ca_);
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Result<std::shared_ptr<const TlsClientConfig>> TlsClientConfig::load(
    const TlsClientOptions& options) {
  auto c = std::make_shared<TlsClientConfig>();
  c->options_ = options;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return fail(ErrorCode::kConfig,
                options.cert_file.empty()
                    ? "tls key_file is set without cert_file: a client certificate needs both"
                    : "tls cert_file is set without key_file: a client certificate needs both");
  }
  const bool verify = !options.insecure_skip_verify;
  if (verify || !options.ca_file.empty()) {
    const std::string& ca = options.ca_file.empty() ? std::string(kSystemCaFile) : options.ca_file;
    if (auto s = loadCertificates(options.ca_file.empty() ? "the system CA bundle" : "tls ca_file",
                                  ca, c->ca_);
        !s) {
      return tl::unexpected(s.error());
    }
  }
  if (!options.cert_file.empty()) {
    if (auto s = loadCertificates("tls cert_file", options.cert_file, c->cert_); !s) {
      return tl::unexpected(s.error());
    }
    if (auto s = checkReadable("tls key_file", options.key_file); !s) {
      return tl::unexpected(s.error());
    }
    if (const int rc = mbedtls_pk_parse_keyfile(&c->key_, options.key_file.c_str(), nullptr);
        rc != 0) {
      return fail(ErrorCode::kConfig, fmt::format("cannot load tls key_file '{}': {}",
                                                  options.key_file, mbedtlsError(rc)));
    }
    if (const int rc = mbedtls_pk_check_pair(&c->cert_.pk, &c->key_); rc != 0) {
      return fail(ErrorCode::kConfig,
                  fmt::format("tls key_file '{}' does not match the certificate in '{}': {}",
                              options.key_file, options.cert_file, mbedtlsError(rc)));
    }
  }

  const auto* personalization = reinterpret_cast<const unsigned char*>(kDrbgPersonalization.data());
  if (const int rc = mbedtls_ctr_drbg_seed(&c->drbg_, mbedtls_entropy_func, &c->entropy_,
                                           personalization, kDrbgPersonalization.size());
      rc != 0) {
    return fail(ErrorCode::kIo,
                fmt::format("cannot seed the TLS random generator: {}", mbedtlsError(rc)));
  }
  if (const int rc =
          mbedtls_ssl_config_defaults(&c->conf_, MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
      rc != 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot set up TLS: {}", mbedtlsError(rc)));
  }
  mbedtls_ssl_conf_rng(&c->conf_, mbedtls_ctr_drbg_random, &c->drbg_);
  mbedtls_ssl_conf_min_version(&c->conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_authmode(&c->conf_,
                            verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
  mbedtls_ssl_conf_ca_chain(&c->conf_, &c->ca_, nullptr);
  if (!options.cert_file.empty()) {
    if (const int rc = mbedtls_ssl_conf_own_cert(&c->conf_, &c->cert_, &c->key_); rc != 0) {
      return fail(ErrorCode::kConfig, fmt::format("cannot use tls cert_file '{}': {}",
                                                  options.cert_file, mbedtlsError(rc)));
    }
  }
  return std::shared_ptr<const TlsClientConfig>(std::move(c));
}

TlsClientSession::TlsClientSession() noexcept { mbedtls_ssl_init(&ssl_); }

TlsClientSession::~TlsClientSession() { mbedtls_ssl_free(&ssl_); }

Status TlsClientSession::setup(const TlsClientConfig& config, const std::string& host) {
  if (const int rc = mbedtls_ssl_setup(&ssl_, config.get()); rc != 0) {
    last_error_ = rc;
    return fail(ErrorCode::kIo, fmt::format("cannot set up a TLS session: {}", errorText()));
  }
  mbedtls_ssl_set_bio(&ssl_, this, &TlsClientSession::sendCallback, &TlsClientSession::recvCallback,
                      nullptr);
  const std::string& name =
      config.options().server_name.empty() ? host : config.options().server_name;
  expected_ip_ = ipBytes(name);
  if (expected_ip_.empty()) {
    // Sets both SNI and the name the certificate is checked against.
    if (const int rc = mbedtls_ssl_set_hostname(&ssl_, name.c_str()); rc != 0) {
      last_error_ = rc;
      return fail(ErrorCode::kConfig, fmt::format("cannot use '{}' as the TLS server name: {}",
                                                  name, mbedtlsError(rc)));
    }
  } else if (!config.options().insecure_skip_verify) {
    mbedtls_ssl_set_verify(&ssl_, &TlsClientSession::verifyCallback, this);
  }
  return ok();
}

void TlsClientSession::feed(std::string_view ciphertext) {
  if (in_pos_ > 0) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  in_.append(ciphertext);
}

TlsClientSession::Io TlsClientSession::handshake() {
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

Status TlsClientSession::write(std::string_view plaintext) {
  const auto* p = reinterpret_cast<const unsigned char*>(plaintext.data());
  std::size_t left = plaintext.size();
  while (left > 0) {
    // The send callback takes everything, so each call encrypts up to one record.
    const int rc = mbedtls_ssl_write(&ssl_, p, left);
    if (rc < 0) {
      last_error_ = rc;
      return fail(ErrorCode::kIo, fmt::format("TLS write failed: {}", errorText()));
    }
    p += rc;
    left -= static_cast<std::size_t>(rc);
  }
  return ok();
}

TlsClientSession::Io TlsClientSession::read(std::string& out) {
  std::array<unsigned char, kReadChunk> buf{};
  bool got = false;
  for (;;) {
    const int rc = mbedtls_ssl_read(&ssl_, buf.data(), buf.size());
    if (rc > 0) {
      out.append(reinterpret_cast<const char*>(buf.data()), static_cast<std::size_t>(rc));
      got = true;
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      return got ? Io::kOk : Io::kWantRead;
    }
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return Io::kClosed;
    last_error_ = rc;
    return Io::kError;
  }
}

void TlsClientSession::closeNotify() {
  if (handshake_done_) (void)mbedtls_ssl_close_notify(&ssl_);
}

std::string TlsClientSession::takeOutput() {
  std::string out;
  out.swap(out_);
  return out;
}

bool TlsClientSession::certificateRejected() const noexcept {
  return last_error_ == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
}

std::string TlsClientSession::errorText() const {
  std::string text = mbedtlsError(last_error_);
  if (!certificateRejected()) return text;
  std::array<char, 1024> info{};
  const std::uint32_t flags = mbedtls_ssl_get_verify_result(&ssl_);
  if (mbedtls_x509_crt_verify_info(info.data(), info.size(), "", flags) <= 0) return text;
  std::string_view lines(info.data());
  text += ": ";
  bool first = true;
  while (!lines.empty()) {
    const auto lf = lines.find('\n');
    const std::string_view line = lines.substr(0, lf);
    if (!line.empty()) {
      if (!first) text += "; ";
      text.append(line);
      first = false;
    }
    lines = lf == std::string_view::npos ? std::string_view{} : lines.substr(lf + 1);
  }
  if ((flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) != 0U && !expected_ip_.empty()) {
    text += " (the IP address is not among the certificate's subjectAltNames)";
  }
  return text;
}

int TlsClientSession::sendCallback(void* ctx, const unsigned char* buf, std::size_t len) {
  auto* self = static_cast<TlsClientSession*>(ctx);
  // mbedTLS writes at most one record (about 16 KiB) per call, so the int result cannot overflow.
  self->out_.append(reinterpret_cast<const char*>(buf), len);
  return static_cast<int>(len);
}

int TlsClientSession::recvCallback(void* ctx, unsigned char* buf, std::size_t len) {
  auto* self = static_cast<TlsClientSession*>(ctx);
  const std::size_t avail = self->in_.size() - self->in_pos_;
  if (avail == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  const std::size_t n = std::min({len, avail, std::size_t{1} << 30U});
  std::memcpy(buf, self->in_.data() + self->in_pos_, n);
  self->in_pos_ += n;
  return static_cast<int>(n);
}

int TlsClientSession::verifyCallback(void* ctx, mbedtls_x509_crt* crt, int depth,
                                     std::uint32_t* flags) {
  const auto* self = static_cast<const TlsClientSession*>(ctx);
  if (depth == 0 && !certificateHasIpAddress(*crt, self->expected_ip_)) {
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  }
  return 0;
}

}  // namespace cistern::transport
