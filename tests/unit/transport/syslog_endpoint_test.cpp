// Syslog endpoints: schemes, hosts and ports, and when an output needs TLS material.
#include <string>

#include <catch2/catch.hpp>

#include "syslog_sender.h"

namespace cistern::transport {
namespace {

TEST_CASE("syslog endpoints: scheme://host:port", "[unit]") {
  auto tcp = parseSyslogEndpoint("tcp://siem.example:514");
  REQUIRE(tcp);
  CHECK(tcp->protocol == SyslogProtocol::kTcp);
  CHECK(tcp->host == "siem.example");
  CHECK(tcp->port == 514);
  CHECK_FALSE(tcp->tls());
  CHECK_FALSE(tcp->relp());

  auto tls = parseSyslogEndpoint("tls://10.0.0.5:6514");
  REQUIRE(tls);
  CHECK(tls->tls());
  CHECK_FALSE(tls->relp());

  auto relp = parseSyslogEndpoint("relp://[::1]:2514");
  REQUIRE(relp);
  CHECK(relp->relp());
  CHECK_FALSE(relp->tls());
  CHECK(relp->host == "::1");
  CHECK(relp->port == 2514);

  auto relp_tls = parseSyslogEndpoint("relp+tls://[2001:db8::7]:65535");
  REQUIRE(relp_tls);
  CHECK(relp_tls->relp());
  CHECK(relp_tls->tls());
  CHECK(relp_tls->host == "2001:db8::7");
  CHECK(relp_tls->port == 65535);
}

TEST_CASE("bad syslog endpoints are config errors naming the endpoint", "[unit]") {
  const auto errorOf = [](const std::string& endpoint) {
    auto r = parseSyslogEndpoint(endpoint);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kConfig);
    CHECK(r.error().message.find("'" + endpoint + "'") != std::string::npos);
    return r.error().message;
  };
  CHECK(errorOf("udp://h:514").find("unknown scheme 'udp'") != std::string::npos);
  CHECK(errorOf("siem:514").find("scheme://host:port") != std::string::npos);
  CHECK(errorOf("tcp://siem").find("port is required") != std::string::npos);
  CHECK(errorOf("tcp://:514").find("host is empty") != std::string::npos);
  CHECK(errorOf("tcp://siem:0").find("not a port") != std::string::npos);
  CHECK(errorOf("tcp://siem:65536").find("not a port") != std::string::npos);
  CHECK(errorOf("tcp://siem:51x").find("not a port") != std::string::npos);
  CHECK(errorOf("tcp://siem:514/path").find("not a port") != std::string::npos);
  CHECK(errorOf("tcp://::1:514").find("brackets") != std::string::npos);
  CHECK(errorOf("tcp://[::1:514").find("unterminated") != std::string::npos);
  CHECK(errorOf("tcp://[::1]").find("port is required") != std::string::npos);
  CHECK(errorOf("tcp://user@siem:514").find("not a host") != std::string::npos);
  CHECK(errorOf("tcp://si em:514").find("not a host") != std::string::npos);
}

TEST_CASE("an output without TLS endpoints loads no TLS material", "[unit]") {
  SyslogOutputOptions o;
  o.name = "siem";
  o.endpoints = {"tcp://a:514", "relp://b:2514", "not an endpoint"};
  o.tls.ca_file = "/nonexistent/ca.pem";  // not read: nothing needs it
  auto tls = loadSyslogTlsConfig(o);
  REQUIRE(tls);
  CHECK(*tls == nullptr);
}

}  // namespace
}  // namespace cistern::transport
