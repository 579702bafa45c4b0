#include "listen_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>

#include <fmt/format.h>

namespace cistern::agent {

std::string ListenAddress::toString() const {
  return ipv6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

bool ListenAddress::isWildcard() const {
  if (ipv6) {
    in6_addr addr{};
    return ::inet_pton(AF_INET6, host.c_str(), &addr) == 1 && IN6_IS_ADDR_UNSPECIFIED(&addr);
  }
  in_addr addr{};
  return ::inet_pton(AF_INET, host.c_str(), &addr) == 1 && addr.s_addr == htonl(INADDR_ANY);
}

Result<ListenAddress> parseListenAddress(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kConfig,
                fmt::format("listen address '{}' {}; expected IPV4:PORT or [IPV6]:PORT, e.g. "
                            "127.0.0.1:8780 or [::1]:8780",
                            text, why));
  };
  ListenAddress out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return bad("has no ']' after the IPv6 address");
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("has no :PORT");
    out.host = std::string(text.substr(1, close - 1));
    out.ipv6 = true;
    port_text = text.substr(close + 2);
    in6_addr addr{};
    if (::inet_pton(AF_INET6, out.host.c_str(), &addr) != 1) {
      return bad("does not hold an IPv6 address between the brackets");
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("has no :PORT");
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return bad("is an IPv6 address without brackets");
    }
    in_addr addr{};
    if (::inet_pton(AF_INET, out.host.c_str(), &addr) != 1) {
      return bad("does not start with an IPv4 address (host names are not accepted)");
    }
  }
  unsigned port = 0;
  const auto* end = port_text.data() + port_text.size();
  const auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port > 65535) {
    return bad("has no port number in 0..65535 after the ':'");
  }
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

}  // namespace cistern::agent
