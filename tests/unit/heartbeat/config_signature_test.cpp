// ConfigSignatureVerifier with keys and signatures made by the openssl CLI, as an operator would
// sign a config: valid, tampered, missing, wrong key, garbage base64, and keys that are not
// ECDSA P-256.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "config_signature.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace cistern::heartbeat {
namespace {

using testing::TempDir;

const std::string kYaml =
    "inputs:\n  - name: eth0\n    type: pcap\n    interface: eth0\noutputs: []\n";

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Runs openssl; fails the test with its stderr when it fails.
void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = testing::run(argv, std::chrono::seconds(30));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// A key pair in `dir`: NAME.key (private) and NAME.pub (public, PEM).
struct KeyPair {
  std::string private_key;
  std::string public_key;
};

KeyPair makeKey(const TempDir& dir, const std::string& name,
                const std::vector<std::string>& genpkey_args) {
  KeyPair k{(dir / (name + ".key")).string(), (dir / (name + ".pub")).string()};
  std::vector<std::string> args = {"genpkey"};
  args.insert(args.end(), genpkey_args.begin(), genpkey_args.end());
  args.insert(args.end(), {"-out", k.private_key});
  openssl(args);
  openssl({"pkey", "-in", k.private_key, "-pubout", "-out", k.public_key});
  return k;
}

KeyPair makeP256(const TempDir& dir, const std::string& name) {
  return makeKey(dir, name, {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"});
}

// The base64 text of `key`'s signature over `body`, as the header documents (openssl base64
// breaks lines every 64 characters).
std::string sign(const TempDir& dir, const KeyPair& key, const std::string& body) {
  const auto data = dir / "body.yaml";
  const auto sig = dir / "body.sig";
  const auto b64 = dir / "body.sig.b64";
  writeFile(data, body);
  openssl({"dgst", "-sha256", "-sign", key.private_key, "-out", sig.string(), data.string()});
  openssl({"base64", "-in", sig.string(), "-out", b64.string()});
  return readFile(b64);
}

RemoteConfig config(const std::string& yaml, const std::string& signature) {
  RemoteConfig c;
  c.hash = "h";
  c.files["cistern.yaml"] = RemoteConfigFile{yaml, "text/yaml"};
  c.files["cistern.yaml.sig"] = RemoteConfigFile{signature, "text/plain"};
  return c;
}

TEST_CASE("a config signed with the private key verifies", "[unit]") {
  TempDir dir("cistern-sig");
  const auto key = makeP256(dir, "signer");
  auto verifier = ConfigSignatureVerifier::fromPublicKeyFile(key.public_key);
  REQUIRE(verifier);
  const std::string signature = sign(dir, key, kYaml);
  CHECK(signature.find('\n') != std::string::npos);  // line breaks are ignored

  CHECK((*verifier)->verify(kYaml, signature));
  CHECK((*verifier)->verifyConfig(config(kYaml, signature)));
  // Other entries do not matter.
  auto with_more = config(kYaml, signature);
  with_more.files["notes.txt"] = RemoteConfigFile{"anything", ""};
  CHECK((*verifier)->verifyConfig(with_more));
}

TEST_CASE("a config changed after signing, or signed with another key, is refused", "[unit]") {
  TempDir dir("cistern-sig");
  const auto key = makeP256(dir, "signer");
  const auto other = makeP256(dir, "other");
  auto verifier = ConfigSignatureVerifier::fromPublicKeyFile(key.public_key);
  REQUIRE(verifier);

  const std::string signature = sign(dir, key, kYaml);
  auto tampered = (*verifier)->verifyConfig(config(kYaml + "# one more line\n", signature));
  REQUIRE_FALSE(tampered);
  CHECK(tampered.error().code == ErrorCode::kConfig);
  CHECK_THAT(tampered.error().message, Catch::Contains("does not verify") &&
                                           Catch::Contains(key.public_key) &&
                                           Catch::Contains("cistern.yaml.sig"));

  auto wrong_key = (*verifier)->verifyConfig(config(kYaml, sign(dir, other, kYaml)));
  REQUIRE_FALSE(wrong_key);
  CHECK_THAT(wrong_key.error().message, Catch::Contains("does not verify"));
}

TEST_CASE("a config without signature or without cistern.yaml is refused", "[unit]") {
  TempDir dir("cistern-sig");
  const auto key = makeP256(dir, "signer");
  auto verifier = ConfigSignatureVerifier::fromPublicKeyFile(key.public_key);
  REQUIRE(verifier);

  auto unsigned_config = config(kYaml, "");
  unsigned_config.files.erase("cistern.yaml.sig");
  auto missing = (*verifier)->verifyConfig(unsigned_config);
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().message,
             Catch::Contains("not signed") && Catch::Contains("cistern.yaml.sig"));

  auto no_yaml = config(kYaml, sign(dir, key, kYaml));
  no_yaml.files.erase("cistern.yaml");
  auto absent = (*verifier)->verifyConfig(no_yaml);
  REQUIRE_FALSE(absent);
  CHECK_THAT(absent.error().message, Catch::Contains("no 'cistern.yaml' entry"));

  auto empty = (*verifier)->verifyConfig(config(kYaml, " \n"));
  REQUIRE_FALSE(empty);
  CHECK_THAT(empty.error().message, Catch::Contains("empty"));
}

TEST_CASE("a signature that is not base64 or not a signature is refused", "[unit]") {
  TempDir dir("cistern-sig");
  const auto key = makeP256(dir, "signer");
  auto verifier = ConfigSignatureVerifier::fromPublicKeyFile(key.public_key);
  REQUIRE(verifier);

  auto garbage = (*verifier)->verify(kYaml, "this is *not* base64!");
  REQUIRE_FALSE(garbage);
  CHECK_THAT(garbage.error().message, Catch::Contains("not base64"));

  // Valid base64 of bytes that are no DER signature.
  auto not_der = (*verifier)->verify(kYaml, "aGVsbG8gd29ybGQ=");
  REQUIRE_FALSE(not_der);
  CHECK_THAT(not_der.error().message, Catch::Contains("does not verify"));

  auto huge = (*verifier)->verify(kYaml, std::string(10000, 'A'));
  REQUIRE_FALSE(huge);
  CHECK_THAT(huge.error().message, Catch::Contains("not an ECDSA P-256 signature"));
}

TEST_CASE("the public key must be a readable ECDSA P-256 key", "[unit]") {
  TempDir dir("cistern-sig");
  auto missing = ConfigSignatureVerifier::fromPublicKeyFile((dir / "absent.pem").string());
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ErrorCode::kConfig);
  CHECK_THAT(missing.error().message,
             Catch::Contains("config_public_key_file") && Catch::Contains("absent.pem"));

  writeFile(dir / "junk.pem", "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n");
  auto junk = ConfigSignatureVerifier::fromPublicKeyFile((dir / "junk.pem").string());
  REQUIRE_FALSE(junk);
  CHECK_THAT(junk.error().message, Catch::Contains("cannot read a public key"));

  const auto p384 =
      makeKey(dir, "p384", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"});
  auto wrong_curve = ConfigSignatureVerifier::fromPublicKeyFile(p384.public_key);
  REQUIRE_FALSE(wrong_curve);
  CHECK_THAT(wrong_curve.error().message, Catch::Contains("ECDSA P-256"));

  const auto rsa = makeKey(dir, "rsa", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
  auto not_ec = ConfigSignatureVerifier::fromPublicKeyFile(rsa.public_key);
  REQUIRE_FALSE(not_ec);
  CHECK_THAT(not_ec.error().message, Catch::Contains("RSA") && Catch::Contains("ECDSA P-256"));
}

}  // namespace
}  // namespace cistern::heartbeat
