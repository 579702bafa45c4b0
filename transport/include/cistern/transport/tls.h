// TLS settings of a client connection (an output's endpoint, the OpAMP server).
#pragma once

#include <string>

namespace cistern::transport {

struct TlsClientOptions {
  // PEM file of the CAs that sign the server's certificate; empty: the system's CAs.
  std::string ca_file;
  // Client certificate and key (PEM) for mutual TLS; both or neither.
  std::string cert_file;
  std::string key_file;
  // Name to verify the server's certificate against (and send as SNI); empty: the endpoint's
  // host.
  std::string server_name;
  // Skips verification of the server's certificate. Only with an explicit config key; logged
  // as a warning when a connection uses it.
  bool insecure_skip_verify = false;

  bool operator==(const TlsClientOptions&) const = default;
};

}  // namespace cistern::transport
