// Signed remote configs: the check that a remote config was signed by the holder of the private
// key whose public half the sensor was installed with (opamp.config_public_key_file), so a
// compromised or impersonated management server cannot reconfigure the fleet.
//
// Format: the config map's entry "cistern.yaml" holds the config; the entry "cistern.yaml.sig"
// holds the base64 (whitespace and line breaks ignored) of an ECDSA P-256 signature, ASN.1 DER
// as OpenSSL writes it, over SHA-256 of the exact bytes of "cistern.yaml":
//
//   openssl dgst -sha256 -sign private.pem cistern.yaml | base64 > cistern.yaml.sig
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "cistern/core/result.h"
#include "cistern/heartbeat/opamp.h"

namespace cistern::heartbeat {

inline constexpr std::string_view kRemoteConfigFile = "cistern.yaml";
inline constexpr std::string_view kRemoteConfigSignatureFile = "cistern.yaml.sig";

class ConfigSignatureVerifier {
 public:
  // Reads the public key (PEM or DER, SubjectPublicKeyInfo) from `public_key_file`. Errors:
  // kConfig naming the file and why (unreadable or not a key: mbedTLS's text; not an ECDSA
  // P-256 key). Any thread; reads the file.
  static Result<std::unique_ptr<ConfigSignatureVerifier>> fromPublicKeyFile(
      const std::string& public_key_file);

  ~ConfigSignatureVerifier();
  ConfigSignatureVerifier(const ConfigSignatureVerifier&) = delete;
  ConfigSignatureVerifier& operator=(const ConfigSignatureVerifier&) = delete;

  // Checks that `signature_base64` is a valid signature of `body`. Errors: kConfig saying why
  // (not base64, not a signature, does not verify with the key). Const: any thread, concurrently.
  [[nodiscard]] Status verify(std::string_view body, std::string_view signature_base64) const;

  // Checks a remote config: it must have the entries "cistern.yaml" and "cistern.yaml.sig", and
  // the signature must verify. Errors: kConfig with a message an operator can act on.
  [[nodiscard]] Status verifyConfig(const RemoteConfig& config) const;

  // The file the key came from, for messages.
  [[nodiscard]] const std::string& keyFile() const { return key_file_; }

 private:
  struct Key;
  ConfigSignatureVerifier(std::unique_ptr<Key> key, std::string key_file);

  std::unique_ptr<Key> key_;
  std::string key_file_;
};

}  // namespace cistern::heartbeat
