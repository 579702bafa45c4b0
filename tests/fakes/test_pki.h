// TestPki: a throwaway PKI for TLS tests, made with the openssl CLI in a temp dir: a CA, a
// server certificate for localhost and 127.0.0.1, a client certificate, and an unrelated second
// CA (for "wrong CA" tests). Certificates are valid for two days; keys are P-256.
//
//   const auto& pki = cistern::testing::testPki();   // made once per test binary
//   REQUIRE(pki.error.empty());
#pragma once

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "subprocess.h"
#include "temp_dir.h"

namespace cistern::testing {

struct TestPki {
  TempDir dir{"cistern-pki"};
  std::string ca_crt;
  std::string ca_key;
  std::string server_crt;
  std::string server_key;
  std::string client_crt;
  std::string client_key;
  std::string other_ca_crt;  // a CA that signed none of the above
  std::string error;         // non-empty when openssl failed

  TestPki() {
    const auto path = [&](const std::string& name) { return (dir / name).string(); };
    ca_crt = path("ca.crt");
    ca_key = path("ca.key");
    server_crt = path("server.crt");
    server_key = path("server.key");
    client_crt = path("client.crt");
    client_key = path("client.key");
    other_ca_crt = path("other-ca.crt");
    std::ofstream(path("server.ext"))
        << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    std::ofstream(path("client.ext")) << "extendedKeyUsage=clientAuth\n";
    makeCa("ca", "cistern test CA");
    makeCa("other-ca", "unrelated test CA");
    for (const std::string who : {"server", "client"}) {
      run({"/usr/bin/openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", kCurve, "-nodes",
           "-keyout", path(who + ".key"), "-out", path(who + ".csr"), "-subj",
           "/CN=" + (who == "server" ? std::string("localhost") : who)});
      run({"/usr/bin/openssl", "x509", "-req", "-in", path(who + ".csr"), "-CA", ca_crt, "-CAkey",
           ca_key, "-CAcreateserial", "-out", path(who + ".crt"), "-days", "2", "-extfile",
           path(who + ".ext")});
    }
  }

 private:
  static constexpr const char* kCurve = "ec_paramgen_curve:prime256v1";

  void makeCa(const std::string& stem, const std::string& cn) {
    run({"/usr/bin/openssl",
         "req",
         "-x509",
         "-newkey",
         "ec",
         "-pkeyopt",
         kCurve,
         "-nodes",
         "-keyout",
         (dir / (stem + ".key")).string(),
         "-out",
         (dir / (stem + ".crt")).string(),
         "-subj",
         "/CN=" + cn,
         "-days",
         "2",
         "-addext",
         "basicConstraints=critical,CA:TRUE",
         "-addext",
         "keyUsage=critical,keyCertSign,cRLSign"});
  }

  void run(const std::vector<std::string>& argv) {
    if (!error.empty()) return;
    const auto r = run_process(argv);
    if (r.exit_code != 0) error = argv[1] + ": " + r.err;
  }

  static RunResult run_process(const std::vector<std::string>& argv) {
    return cistern::testing::run(argv, std::chrono::seconds(30));
  }
};

// The PKI of this test binary, made on first use.
inline const TestPki& testPki() {
  static const TestPki instance;
  return instance;
}

}  // namespace cistern::testing
