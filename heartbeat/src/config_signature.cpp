#include "config_signature.h"

#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>

#include <array>
#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace cistern::heartbeat {
namespace {

std::string mbedtlsError(int code) {
  std::array<char, 200> buf{};
  mbedtls_strerror(code, buf.data(), buf.size());
  return buf.data();
}

// Longest base64 text accepted: a DER ECDSA P-256 signature is at most 72 bytes; the bound only
// keeps a hostile entry from costing memory.
constexpr std::size_t kMaxSignatureText = 4096;

}  // namespace

struct ConfigSignatureVerifier::Key {
  mbedtls_pk_context pk{};
  Key() { mbedtls_pk_init(&pk); }
  ~Key() { mbedtls_pk_free(&pk); }
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
};

ConfigSignatureVerifier::ConfigSignatureVerifier(std::unique_ptr<Key> key, std::string key_file)
    : key_(std::move(key)), key_file_(std::move(key_file)) {}

ConfigSignatureVerifier::~ConfigSignatureVerifier() = default;

Result<std::unique_ptr<ConfigSignatureVerifier>> ConfigSignatureVerifier::fromPublicKeyFile(
    const std::string& public_key_file) {
  auto key = std::make_unique<Key>();
  const int rc = mbedtls_pk_parse_public_keyfile(&key->pk, public_key_file.c_str());
  if (rc != 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("opamp.config_public_key_file {}: cannot read a public key: {}",
                            public_key_file, mbedtlsError(rc)));
  }
  const mbedtls_pk_type_t type = mbedtls_pk_get_type(&key->pk);
  if ((type != MBEDTLS_PK_ECKEY && type != MBEDTLS_PK_ECDSA) ||
      mbedtls_pk_ec(key->pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
    return fail(ErrorCode::kConfig,
                fmt::format("opamp.config_public_key_file {}: a {} key; remote configs are "
                            "signed with ECDSA P-256 (prime256v1) keys",
                            public_key_file, mbedtls_pk_get_name(&key->pk)));
  }
  return std::unique_ptr<ConfigSignatureVerifier>(
      new ConfigSignatureVerifier(std::move(key), public_key_file));
}

Status ConfigSignatureVerifier::verify(std::string_view body,
                                       std::string_view signature_base64) const {
  if (signature_base64.size() > kMaxSignatureText) {
    return fail(ErrorCode::kConfig,
                fmt::format("the signature is {} bytes long: not an ECDSA P-256 signature",
                            signature_base64.size()));
  }
  std::string text;
  text.reserve(signature_base64.size());
  for (const char ch : signature_base64) {
    if (std::isspace(static_cast<unsigned char>(ch)) == 0) text += ch;
  }
  if (text.empty()) return fail(ErrorCode::kConfig, "the signature is empty");
  std::vector<unsigned char> der(text.size());
  std::size_t der_len = 0;
  int rc = mbedtls_base64_decode(der.data(), der.size(), &der_len,
                                 reinterpret_cast<const unsigned char*>(text.data()), text.size());
  if (rc != 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("the signature is not base64: {}", mbedtlsError(rc)));
  }
  const mbedtls_md_info_t* sha256 = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  std::array<unsigned char, 32> digest{};
  rc = mbedtls_md(sha256, reinterpret_cast<const unsigned char*>(body.data()), body.size(),
                  digest.data());
  if (rc != 0) return fail(ErrorCode::kConfig, "SHA-256: " + mbedtlsError(rc));
  rc = mbedtls_pk_verify(&key_->pk, MBEDTLS_MD_SHA256, digest.data(), digest.size(), der.data(),
                         der_len);
  if (rc != 0) {
    return fail(ErrorCode::kConfig,
                fmt::format("the signature does not verify with the public key in {}: {}",
                            key_file_, mbedtlsError(rc)));
  }
  return ok();
}

Status ConfigSignatureVerifier::verifyConfig(const RemoteConfig& config) const {
  const auto body = config.files.find(std::string(kRemoteConfigFile));
  if (body == config.files.end()) {
    return fail(ErrorCode::kConfig,
                fmt::format("the remote config has no '{}' entry to verify", kRemoteConfigFile));
  }
  const auto signature = config.files.find(std::string(kRemoteConfigSignatureFile));
  if (signature == config.files.end()) {
    return fail(ErrorCode::kConfig,
                fmt::format("the remote config is not signed: no '{}' entry (with "
                            "opamp.config_public_key_file set, every remote config must be)",
                            kRemoteConfigSignatureFile));
  }
  auto verified = verify(body->second.body, signature->second.body);
  if (!verified) {
    return fail(ErrorCode::kConfig,
                fmt::format("remote config signature refused: '{}': {}", kRemoteConfigSignatureFile,
                            verified.error().message));
  }
  return ok();
}

}  // namespace cistern::heartbeat
