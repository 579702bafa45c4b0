// The /metrics renderer against the exposition format 0.0.4, checked by the strict parser in
// tests/fakes/prometheus_text.h (itself tested here on malformed input).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "prometheus_text.h"
#include "status/prometheus.h"

namespace cistern::agent {
namespace {

using testing::namingProblems;
using testing::parsePrometheusText;
using testing::PromExposition;
using testing::PromLabels;

Metric counter(std::string name, PromLabels labels, double value, std::string help = "Help.") {
  return Metric{std::move(name), std::move(help), "counter", std::move(labels), value};
}

Metric gauge(std::string name, PromLabels labels, double value, std::string help = "Help.") {
  return Metric{std::move(name), std::move(help), "gauge", std::move(labels), value};
}

PromExposition parse(const std::string& text) {
  auto parsed = parsePrometheusText(text);
  INFO(text);
  REQUIRE(parsed.has_value());
  return std::move(*parsed);
}

TEST_CASE("prometheus: families render with HELP and TYPE, exactly", "[unit]") {
  const std::vector<Metric> metrics = {
      counter("cistern_output_records_acked_total", {{"output", "central"}}, 1234,
              "Records the receiver confirmed."),
      counter("cistern_output_records_acked_total", {{"output", "archive"}}, 5,
              "Records the receiver confirmed."),
      gauge("cistern_buffer_used_bytes", {}, 1048576, "Bytes the ring occupies."),
  };
  CHECK(renderPrometheus(metrics) ==
        "# HELP cistern_output_records_acked_total Records the receiver confirmed.\n"
        "# TYPE cistern_output_records_acked_total counter\n"
        "cistern_output_records_acked_total{output=\"central\"} 1234\n"
        "cistern_output_records_acked_total{output=\"archive\"} 5\n"
        "# HELP cistern_buffer_used_bytes Bytes the ring occupies.\n"
        "# TYPE cistern_buffer_used_bytes gauge\n"
        "cistern_buffer_used_bytes 1048576\n");
}

TEST_CASE("prometheus: what is rendered parses back to the same samples", "[unit]") {
  const std::vector<Metric> metrics = {
      counter("cistern_input_packets_captured_total", {{"input", "eth0"}, {"type", "pcap"}}, 10),
      counter("cistern_input_packets_captured_total", {{"input", "eth1"}, {"type", "pcap"}}, 0),
      gauge("cistern_buffer_oldest_age_seconds", {}, 12.5),
      gauge("cistern_output_state", {{"output", "central"}, {"state", "down"}}, 1),
      counter("cistern_buffer_records_evicted_total", {}, 18446744073709551615.0),
  };
  const PromExposition parsed = parse(renderPrometheus(metrics));
  REQUIRE(parsed.families.size() == 4);
  CHECK(parsed.sampleCount() == metrics.size());
  for (const auto& m : metrics) {
    const auto value = parsed.value(m.name, m.labels);
    INFO(m.name);
    REQUIRE(value.has_value());
    CHECK(*value == m.value);
  }
  CHECK(parsed.families[0].type == "counter");
  CHECK(parsed.families[1].type == "gauge");
  CHECK(parsed.families[0].help == "Help.");
  CHECK(namingProblems(parsed, "cistern_").empty());
}

TEST_CASE("prometheus: label values and HELP are escaped and read back unchanged", "[unit]") {
  const std::string nasty =
      "C:\\path \"quoted\"\nsecond line, caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA6";
  const std::vector<Metric> metrics = {
      gauge("cistern_input_up", {{"path", nasty}, {"empty", ""}}, 1,
            "Backslash \\ and\nnewline; \"quotes\" stay as they are."),
  };
  const std::string text = renderPrometheus(metrics);
  CHECK(text ==
        "# HELP cistern_input_up Backslash \\\\ and\\nnewline; \"quotes\" stay as they are.\n"
        "# TYPE cistern_input_up gauge\n"
        "cistern_input_up{path=\"C:\\\\path \\\"quoted\\\"\\nsecond line, caf\xC3\xA9 "
        "\xE2\x82\xAC \xF0\x9F\x93\xA6\",empty=\"\"} 1\n");
  const PromExposition parsed = parse(text);
  CHECK(parsed.families[0].help == "Backslash \\ and\nnewline; \"quotes\" stay as they are.");
  CHECK(parsed.families[0].samples[0].label("path") == nasty);
  CHECK(parsed.families[0].samples[0].label("empty") == "");
}

TEST_CASE("prometheus: bytes that are not UTF-8 become U+FFFD, so the scrape stays valid",
          "[unit]") {
  const std::vector<Metric> metrics = {
      gauge("cistern_x", {{"iface", std::string("et\xFFh\xC3", 5)}}, 1, "Over\xC0\xAFlong."),
      gauge("cistern_y", {{"v", "\xED\xA0\x80"}}, 1),  // a UTF-16 surrogate, encoded
  };
  const PromExposition parsed = parse(renderPrometheus(metrics));
  CHECK(parsed.families[0].samples[0].label("iface") == "et\xEF\xBF\xBDh\xEF\xBF\xBD");
  CHECK(parsed.families[0].help == "Over\xEF\xBF\xBD\xEF\xBF\xBDlong.");
  CHECK(parsed.families[1].samples[0].label("v") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_CASE("prometheus: metric and label names are sanitized", "[unit]") {
  CHECK(sanitizeMetricName("cistern_ok:sub") == "cistern_ok:sub");
  CHECK(sanitizeMetricName("cistern.output-records acked") == "cistern_output_records_acked");
  CHECK(sanitizeMetricName("5xx_responses") == "_5xx_responses");
  CHECK(sanitizeMetricName("") == "_");
  CHECK(sanitizeMetricName("caf\xC3\xA9") == "caf__");
  CHECK(sanitizeLabelName("output") == "output");
  CHECK(sanitizeLabelName("a:b") == "a_b");
  CHECK(sanitizeLabelName("0day") == "_0day");
  CHECK(sanitizeLabelName("") == "_");

  const std::vector<Metric> metrics = {
      gauge("cistern.buffer-frames", {{"a-b", "first"}, {"a_b", "second"}, {"ns:x", "y"}}, 3),
  };
  const std::string text = renderPrometheus(metrics);
  CHECK(text ==
        "# HELP cistern_buffer_frames Help.\n"
        "# TYPE cistern_buffer_frames gauge\n"
        "cistern_buffer_frames{a_b=\"first\",ns_x=\"y\"} 3\n");
  parse(text);
}

TEST_CASE("prometheus: counters end in _total; other types are untyped", "[unit]") {
  const std::vector<Metric> metrics = {
      counter("cistern_output_requests_failed", {}, 2),
      counter("cistern_output_down_seconds_total", {}, 1.5),
      gauge("cistern_output_batches_in_flight", {}, 3),
      Metric{"cistern_mystery", "What?", "histogram", {}, 4},
  };
  const PromExposition parsed = parse(renderPrometheus(metrics));
  REQUIRE(parsed.families.size() == 4);
  CHECK(parsed.families[0].name == "cistern_output_requests_failed_total");
  CHECK(parsed.families[0].type == "counter");
  CHECK(parsed.families[1].name == "cistern_output_down_seconds_total");
  CHECK(parsed.families[2].name == "cistern_output_batches_in_flight");
  CHECK(parsed.families[3].type == "untyped");
  CHECK(parsed.value("cistern_output_requests_failed_total") == 2);
}

TEST_CASE("prometheus: families keep their first order; stray samples join their family",
          "[unit]") {
  const std::vector<Metric> metrics = {
      counter("b_total", {{"o", "1"}}, 1),
      gauge("a", {}, 2),
      counter("b_total", {{"o", "2"}}, 3),  // not consecutive in the source
      gauge("c", {}, 4),
  };
  const PromExposition parsed = parse(renderPrometheus(metrics));
  REQUIRE(parsed.families.size() == 3);
  CHECK(parsed.families[0].name == "b_total");
  CHECK(parsed.families[0].samples.size() == 2);
  CHECK(parsed.families[0].samples[1].label("o") == "2");
  CHECK(parsed.families[1].name == "a");
  CHECK(parsed.families[2].name == "c");
}

TEST_CASE("prometheus: a repeated series is dropped, the first kept", "[unit]") {
  const std::vector<Metric> metrics = {
      gauge("g", {{"x", "1"}, {"y", "2"}}, 1),
      gauge("g", {{"y", "2"}, {"x", "1"}}, 2),  // the same label set in another order
      gauge("g", {{"x", "1"}}, 3),
  };
  const PromExposition parsed = parse(renderPrometheus(metrics));
  REQUIRE(parsed.families[0].samples.size() == 2);
  CHECK(parsed.value("g", {{"x", "1"}, {"y", "2"}}) == 1);
  CHECK(parsed.value("g", {{"x", "1"}}) == 3);
}

TEST_CASE("prometheus: HELP is left out when empty; no metrics is an empty text", "[unit]") {
  CHECK(renderPrometheus({}).empty());
  CHECK(parse("").families.empty());
  const std::string text = renderPrometheus({gauge("g", {}, 1, "")});
  CHECK(text == "# TYPE g gauge\ng 1\n");
  const PromExposition parsed = parse(text);
  CHECK_FALSE(parsed.families[0].has_help);
}

TEST_CASE("prometheus: values are exact, integers without exponent", "[unit]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(formatPrometheusValue(0) == "0");
  CHECK(formatPrometheusValue(-0.0) == "0");
  CHECK(formatPrometheusValue(1) == "1");
  CHECK(formatPrometheusValue(-1) == "-1");
  CHECK(formatPrometheusValue(1234567) == "1234567");
  CHECK(formatPrometheusValue(1e15) == "1000000000000000");
  CHECK(formatPrometheusValue(9007199254740993.0) == "9007199254740992");  // 2^53 + 1 rounds
  CHECK(formatPrometheusValue(0.5) == "0.5");
  CHECK(formatPrometheusValue(0.1) == "0.1");
  CHECK(formatPrometheusValue(12.25) == "12.25");
  CHECK(formatPrometheusValue(1e-7) == "1e-07");
  CHECK(formatPrometheusValue(1.5e300) == "1.5e+300");
  // From 2^63 on, the shortest form that reads back exactly (std::to_chars).
  CHECK(formatPrometheusValue(18446744073709551615.0) == "18446744073709551616");
  CHECK(formatPrometheusValue(1e19) == "1e+19");
  CHECK(formatPrometheusValue(-1e300) == "-1e+300");
  CHECK(formatPrometheusValue(nan) == "NaN");
  CHECK(formatPrometheusValue(inf) == "+Inf");
  CHECK(formatPrometheusValue(-inf) == "-Inf");

  // Every value reads back to the same double.
  for (const double v : {0.1, 1.0 / 3, 123456.789, 1e-300, 1.7976931348623157e308, -2.5,
                         9007199254740992.0, 1e18, 1e19}) {
    const PromExposition parsed = parse(renderPrometheus({gauge("g", {}, v)}));
    CHECK(parsed.families[0].samples[0].value == v);
  }
  const PromExposition specials =
      parse(renderPrometheus({gauge("g", {{"k", "nan"}}, nan), gauge("g", {{"k", "+"}}, inf),
                              gauge("g", {{"k", "-"}}, -inf)}));
  CHECK(std::isnan(*specials.value("g", {{"k", "nan"}})));
  CHECK(*specials.value("g", {{"k", "+"}}) == inf);
  CHECK(*specials.value("g", {{"k", "-"}}) == -inf);
}

TEST_CASE("prometheus text parser: accepts what the format allows", "[unit]") {
  const std::string text =
      "# A comment\n"
      "\n"
      "# HELP http_requests_total The total number of HTTP requests.\n"
      "# TYPE http_requests_total counter\n"
      "http_requests_total{method=\"post\",code=\"200\",} 1027 1395066363000\n"
      "http_requests_total { method = \"post\" , code=\"400\" }\t3   1395066363000\n"
      "  metric_without_timestamp_and_labels 12.47  \n"
      "# TYPE rpc_duration_seconds histogram\n"
      "rpc_duration_seconds_bucket{le=\"0.05\"} 24054\n"
      "rpc_duration_seconds_bucket{le=\"+Inf\"} 144320\n"
      "rpc_duration_seconds_sum 53423\n"
      "rpc_duration_seconds_count 144320\n"
      "something_weird{problem=\"division by zero\"} +Inf -3982045\n"
      "nan_value NaN\n"
      "plus_sign +1.5e3\n";
  const PromExposition parsed = parse(text);
  REQUIRE(parsed.families.size() == 6);
  CHECK(parsed.families[0].samples.size() == 2);
  CHECK(parsed.families[0].samples[0].timestamp_ms == 1395066363000);
  CHECK(parsed.value("http_requests_total", {{"code", "400"}, {"method", "post"}}) == 3);
  CHECK(parsed.value("metric_without_timestamp_and_labels") == 12.47);
  CHECK(parsed.families[2].name == "rpc_duration_seconds");
  CHECK(parsed.families[2].samples.size() == 4);
  CHECK(parsed.families[3].samples[0].timestamp_ms == -3982045);
  CHECK(parsed.value("plus_sign") == 1500);
}

TEST_CASE("prometheus text parser: rejects malformed input with its line", "[unit]") {
  struct Case {
    const char* text;
    int line;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"a 1\nb 2", 2, "line feed"},
      {"a 1\r\n", 1, "carriage return"},
      {"a 1\n9bad 1\n", 2, "invalid metric name"},
      {"a{0x=\"1\"} 1\n", 1, "invalid label name"},
      {"a{x=\"1\",x=\"2\"} 1\n", 1, "given twice"},
      {"a{x=\"1} 1\n", 1, "unterminated"},
      {"a{x=1} 1\n", 1, "quoted value"},
      {"a{x=\"1\" y=\"2\"} 1\n", 1, "expected ','"},
      {"a{x=\"\\t\"} 1\n", 1, "invalid escape"},
      {"a{x=\"\xFF\"} 1\n", 1, "UTF-8"},
      {"a\n", 1, "no value"},
      {"a one\n", 1, "invalid value"},
      {"a nan\n", 1, "invalid value"},
      {"a 1 12.5\n", 1, "invalid timestamp"},
      {"a 1 2 3\n", 1, "text after"},
      {"# TYPE a counter\n# TYPE a counter\n", 2, "second TYPE"},
      {"# HELP a x\n# HELP a y\n", 2, "second HELP"},
      {"# TYPE a gauge\na 1\n# TYPE a gauge\n", 3, "second TYPE"},
      {"a 1\n# TYPE a gauge\n", 2, "after its samples"},
      {"# TYPE a countr\n", 1, "unknown type"},
      {"# TYPE a gauge extra\n", 1, "text after the type"},
      {"# HELP a bad \\t escape\n", 1, "invalid escape"},
      {"a{x=\"1\"} 1\nb 1\na{x=\"2\"} 2\n", 3, "consecutive"},
      {"a{x=\"1\"} 1\na{x=\"1\"} 2\n", 2, "duplicate sample"},
  };
  for (const auto& c : cases) {
    const auto parsed = parsePrometheusText(c.text);
    INFO(c.text);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().line == c.line);
    CHECK_THAT(parsed.error().message, Catch::Contains(c.says));
  }
}

TEST_CASE("prometheus naming check: units in names, base units, _total on counters", "[unit]") {
  const PromExposition parsed = parse(
      "# HELP cistern_ok_seconds_total Fine.\n# TYPE cistern_ok_seconds_total counter\n"
      "cistern_ok_seconds_total 1\n"
      "# HELP cistern_latency_ms Latency.\n# TYPE cistern_latency_ms gauge\ncistern_latency_ms 1\n"
      "# HELP cistern_sent Sent.\n# TYPE cistern_sent counter\ncistern_sent -1\n"
      "# TYPE other_total gauge\nother_total 1\n");
  const auto problems = namingProblems(parsed, "cistern_");
  const auto has = [&](const std::string& needle) {
    for (const auto& p : problems) {
      if (p.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  CHECK(has("cistern_latency_ms: unit 'ms'"));
  CHECK(has("cistern_sent: a counter's name must end in _total"));
  CHECK(has("cistern_sent: negative counter value"));
  CHECK(has("other_total: does not start with cistern_"));
  CHECK(has("other_total: no HELP"));
  CHECK(has("other_total: _total on a gauge"));
  CHECK_FALSE(has("cistern_ok_seconds_total"));
  CHECK(problems.size() == 6);
}

}  // namespace
}  // namespace cistern::agent
