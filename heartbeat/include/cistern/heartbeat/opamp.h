// OpAMP client: the sensor's heartbeat to its management server, and remote configuration.
//
// OpAMP (the open agent-management protocol) over plain HTTP(S): the agent POSTs an
// AgentToServer message to the server's URL and gets a ServerToAgent message back, every
// heartbeat interval and whenever something worth telling changed. The agent reports who it is
// (a persistent instance UID, description), its health per input and output with the buffer's
// figures, its effective config and the status of the last remote config; the server may send a
// remote config, which the agent validates and applies (or refuses) through the handler it gave.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/tls.h"

namespace cistern::heartbeat {

// `opamp:` in the config. An empty endpoint disables the client.
struct OpampOptions {
  // The server's OpAMP URL, http:// or https:// ("https://fleet.example:4320/v1/opamp").
  std::string endpoint;
  std::vector<std::string> headers;  // extra "Name: value" request headers (auth tokens)
  transport::TlsClientOptions tls;
  // How often the agent reports when nothing changed; the server's connection settings
  // (heartbeat_interval_seconds) override it.
  std::chrono::milliseconds heartbeat_interval{30000};
  // Server unreachable: retries back off (jittered, doubling) up to this.
  std::chrono::milliseconds max_backoff{300000};
  std::chrono::milliseconds timeout{10000};  // one request
  // PEM file of an ECDSA P-256 public key; when set, a remote config must carry a valid
  // signature made with its private key, or it is refused.
  std::string config_public_key_file;

  bool operator==(const OpampOptions&) const = default;
};

}  // namespace cistern::heartbeat
