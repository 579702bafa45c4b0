// `cistern status`'s table, rendered from a sample of the agent's /status JSON. The sample is the
// shape status/status_table.h documents (and the runtime's statusJson() produces).
#include <string>

#include <catch2/catch.hpp>

#include "status/status_table.h"

namespace cistern::agent {
namespace {

const char* const kSample = R"({
  "agent": {"id": "0190f1c2-7b3e-7c1a-9d2e-5f6a7b8c9d0e", "version": "0.4.0",
            "host": "sensor-7", "data_dir": "/var/lib/cistern", "uptime_s": 3723.4},
  "health": {"ok": false, "reason": "output central is down"},
  "buffer": {"frames": 1234, "records": 56789, "used_bytes": 12897484, "max_size": 1073741824,
             "oldest_time": "2024-05-01T10:00:00.000000000Z", "oldest_age_s": 192.7,
             "evicted_records": 0, "refused_queue_full": 3, "dropped_map_full": 0,
             "corrupt_frames_seen": 0, "writer_blocked": false, "commits": 77},
  "inputs": [
    {"name": "eth0", "type": "pcap", "finished": false, "healthy": true, "problem": "",
     "counters": {"packets_received": 1000, "packets_captured": 1000,
                  "packets_dropped_kernel": 7, "packets_dropped_interface": null,
                  "packets_dropped_agent": 3, "packets_stored": 990, "bytes_captured": 640000,
                  "file_errors": 0}},
    {"name": "auth-log", "type": "file", "finished": true, "healthy": true,
     "counters": {"files_watched": 1, "lines_read": 420, "lines_stored": 420,
                  "bytes_read": 40000, "read_errors": 0}},
    {"name": "syslog-udp", "type": "syslog", "finished": false, "healthy": false,
     "problem": "recv: Network is down",
     "counters": {"messages_received": 50, "messages_stored": 48, "messages_dropped_agent": 2,
                  "framing_errors": 1, "tls_handshake_failures": 0, "bytes_received": 5000}}
  ],
  "outputs": [
    {"name": "central", "type": "otlp", "state": "down",
     "endpoint": "https://collector.example:4318", "last_error": "connect: Connection refused",
     "counters": {"records_acked": 5000, "drain_rate": 0},
     "buffer": {"pending_records": 1789, "pending_frames": 12}},
    {"name": "archive", "type": "file", "state": "healthy",
     "endpoint": "/var/lib/cistern/archive", "last_error": "",
     "counters": {"records_acked": 6789, "drain_rate": 1572864},
     "buffer": {"pending_records": 0}}
  ],
  "opamp": {"enabled": true, "state": "connected",
            "endpoint": "https://opamp.example:4320/v1/opamp",
            "last_report_time": "2024-05-01T10:03:00Z", "last_report_age_s": 12,
            "remote_config_status": "APPLIED", "remote_config_hash": "9f86d081",
            "remote_config_error": "", "last_error": ""}
})";

std::string render(const std::string& json) {
  auto table = renderStatusTable(json);
  INFO(json);
  REQUIRE(table.has_value());
  return *table;
}

TEST_CASE("status table: the sample, section by section", "[unit]") {
  CHECK(render(kSample) ==
        "agent    0190f1c2-7b3e-7c1a-9d2e-5f6a7b8c9d0e  version 0.4.0  host sensor-7  up "
        "1h02m03s\n"
        "         data dir /var/lib/cistern\n"
        "health   NOT OK: output central is down\n"
        "buffer   1234 frames, 56789 records, 12.3MiB used of 1GiB (1.2%), oldest "
        "2024-05-01T10:00:00.000000000Z (3m12s ago)\n"
        "         dropped: 0 records evicted unsent, 3 refused (queue full), 0 (map full); 0 "
        "corrupt frames seen\n"
        "\n"
        "INPUT       TYPE    STATE     RECEIVED  STORED  DROPPED  ERRORS  LAST ERROR\n"
        "eth0        pcap    running   1000      990     10       0       -\n"
        "auth-log    file    finished  420       420     -        0       -\n"
        "syslog-udp  syslog  failed    50        48      2        1       recv: Network is down\n"
        "\n"
        "OUTPUT   TYPE  STATE    ENDPOINT                        ACKED  PENDING  DRAIN RATE  "
        "LAST ERROR\n"
        "central  otlp  down     https://collector.example:4318  5000   1789     -           "
        "connect: Connection refused\n"
        "archive  file  healthy  /var/lib/cistern/archive        6789   0        1.5MiB/s    -\n"
        "\n"
        "opamp    connected  server https://opamp.example:4320/v1/opamp  last report "
        "2024-05-01T10:03:00Z (12s ago)\n"
        "         remote config APPLIED (hash 9f86d081)\n");
}

TEST_CASE("status table: an empty object shows every field as '-'", "[unit]") {
  CHECK(render("{}") ==
        "agent    -  version -  host -  up -\n"
        "         data dir -\n"
        "buffer   - frames, - records, - used of -, oldest -\n"
        "         dropped: - records evicted unsent, - refused (queue full), - (map full); - "
        "corrupt frames seen\n"
        "\n"
        "inputs: none\n"
        "\n"
        "outputs: none\n"
        "\n"
        "opamp    -\n");
}

TEST_CASE("status table: values of unexpected types do not break it", "[unit]") {
  const std::string table = render(R"({
    "agent": "not an object",
    "health": {"ok": "yes"},
    "buffer": {"frames": "many", "used_bytes": -5, "max_size": 0, "oldest_age_s": "old",
               "writer_blocked": "yes"},
    "inputs": [3, {"name": 5, "counters": [1, 2]}, {"name": "x", "counters": {"a_read": "7"}}],
    "outputs": {"name": "not a list"},
    "opamp": {"enabled": false}
  })");
  CHECK_THAT(table, Catch::Contains("agent    -  version -  host -  up -\n"));
  CHECK_THAT(table, Catch::Contains("health   -\n"));
  CHECK_THAT(table, Catch::Contains("buffer   many frames, - records, - used of 0B, oldest -\n"));
  CHECK_THAT(table,
             Catch::Contains("\n-      -     -      -         -       -        -       -\n"));
  CHECK_THAT(table,
             Catch::Contains("\n5      -     -      -         -       -        -       -\n"));
  CHECK_THAT(table, Catch::Contains("\nx      -     -      -         -"));
  CHECK_THAT(table, Catch::Contains("outputs: none\n"));
  CHECK_THAT(table, Catch::Contains("opamp    disabled\n"));
}

TEST_CASE("status table: control characters from the agent cannot reach the terminal", "[unit]") {
  const std::string table = render(
      R"({"outputs": [{"name": "o", "last_error": "\u001b[2J\u001b]0;pwned\u0007 refused\nnow"}]})");
  CHECK(table.find('\x1b') == std::string::npos);
  CHECK(table.find('\a') == std::string::npos);
  CHECK_THAT(table, Catch::Contains(" [2J ]0;pwned  refused; now\n"));
}

TEST_CASE("status table: health reasons on one line; a blocked writer is called out", "[unit]") {
  const std::string table = render(R"({"health": {"ok": false,
      "reason": "input eth0: device went down\ninput tail: permission denied\n"},
      "buffer": {"writer_blocked": true}})");
  CHECK_THAT(table, Catch::Contains(
                        "\nhealth   NOT OK: input eth0: device went down; input tail: permission "
                        "denied\n"));
  CHECK_THAT(table, Catch::Contains("\n         FULL: the writer waits for outputs to "
                                    "acknowledge (when_full: block)\n"));
  CHECK_THAT(render(R"({"health": {"ok": true, "reason": "inputs running\n"}})"),
             Catch::Contains("\nhealth   ok: inputs running\n"));
}

TEST_CASE("status table: opamp details and errors", "[unit]") {
  const std::string table = render(R"({"opamp": {"state": "unreachable",
      "endpoint": "http://127.0.0.1:4320/v1/opamp", "remote_config_status": "FAILED",
      "remote_config_error": "inputs[0].type: unknown type 'pcapp'",
      "last_error": "connect: Connection refused"}})");
  CHECK_THAT(table,
             Catch::Contains("opamp    unreachable  server http://127.0.0.1:4320/v1/opamp  last "
                             "report -\n"
                             "         remote config FAILED (hash -): inputs[0].type: unknown "
                             "type 'pcapp'\n"
                             "         last error connect: Connection refused\n"));
}

TEST_CASE("status table: ages and sizes", "[unit]") {
  const auto agentLine = [](const char* uptime) {
    const std::string table = render(std::string(R"({"agent": {"uptime_s": )") + uptime + "}}");
    return table.substr(0, table.find('\n'));
  };
  CHECK(agentLine("0") == "agent    -  version -  host -  up 0s");
  CHECK(agentLine("59.9") == "agent    -  version -  host -  up 59s");
  CHECK(agentLine("60") == "agent    -  version -  host -  up 1m00s");
  CHECK(agentLine("86399") == "agent    -  version -  host -  up 23h59m59s");
  CHECK(agentLine("90061") == "agent    -  version -  host -  up 1d01h");
  CHECK(agentLine("-1") == "agent    -  version -  host -  up -");
}

TEST_CASE("status table: what is not a JSON object is an error", "[unit]") {
  CHECK_FALSE(renderStatusTable("").has_value());
  CHECK_FALSE(renderStatusTable("{\"agent\": ").has_value());
  const auto array = renderStatusTable("[1, 2]");
  REQUIRE_FALSE(array.has_value());
  CHECK(array.error().code == ErrorCode::kCorrupt);
  CHECK_THAT(array.error().message, Catch::Contains("not a JSON object"));
}

}  // namespace
}  // namespace cistern::agent
