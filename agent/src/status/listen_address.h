// The HOST:PORT of the local status API (`status.listen`), shared by the server, which binds it,
// and `cistern status`, which connects to it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern::agent {

struct ListenAddress {
  std::string host;  // an IP literal without brackets: "127.0.0.1", "::1", "0.0.0.0", "::"
  std::uint16_t port = 0;
  bool ipv6 = false;

  // "127.0.0.1:8780", "[::1]:8780": the form parseListenAddress() reads.
  [[nodiscard]] std::string toString() const;
  // True for 0.0.0.0 and ::, which a server binds but a client cannot connect to.
  [[nodiscard]] bool isWildcard() const;
};

// Parses "IPV4:PORT" or "[IPV6]:PORT" (port 0..65535; 0 lets the kernel choose). Host names are
// refused: the status API is unauthenticated, so where it listens must be explicit, not whatever
// a resolver answers. Errors (kConfig) quote the text and say what is wrong.
Result<ListenAddress> parseListenAddress(std::string_view text);

}  // namespace cistern::agent
