// Ports for test peers on loopback.
//
// Peers that tests stop and start again (nginx, rsyslog) must get their port back. A port taken
// from the kernel's ephemeral range (bind to port 0) can, while its peer is down, become the local
// port of any outgoing connection on the machine, including a client retrying that very address
// (TCP's self-connect on loopback), and the restart then fails. So listening ports are drawn from
// below the ephemeral range (net.ipv4.ip_local_port_range starts at 32768 by default), checked
// free for TCP and UDP at the time of the call.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <random>

namespace cistern::testing {

namespace detail {
inline bool bindable(int type, std::uint16_t port) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}
}  // namespace detail

// A port on 127.0.0.1 in [20000, 32767] that was free for TCP and UDP a moment ago; 0 when none
// was found in a few hundred tries.
inline int listenPort() {
  static thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(20000, 32767);
  for (int attempt = 0; attempt < 500; ++attempt) {
    const auto port = static_cast<std::uint16_t>(pick(rng));
    if (detail::bindable(SOCK_STREAM, port) && detail::bindable(SOCK_DGRAM, port)) return port;
  }
  return 0;
}

}  // namespace cistern::testing
