// Prometheus text exposition format 0.0.4: what `GET /metrics` serves.
//
// Reference: https://prometheus.io/docs/instrumenting/exposition_formats/ (text-based format).
//
// Units. Format 0.0.4 has no UNIT line (that is OpenMetrics); a unit is part of the metric name,
// in base units, as the Prometheus naming guide asks: `_bytes`, `_seconds`, and a counter ends in
// `_total` after the unit (`cistern_output_down_seconds_total`). The renderer appends `_total` to
// a counter that lacks it but never converts values: a name in milliseconds or kilobytes is the
// StatusSource's bug, caught by namingProblems() in tests/fakes/prometheus_text.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "status_source.h"

namespace cistern::agent {

// The Content-Type of format 0.0.4, as Prometheus' own client libraries send it.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Renders every metric as exposition text, never failing:
// - One family per name, in the order names first appear; samples of a name that reappears later
//   join their family (the format requires a family's samples to be consecutive). A family has a
//   `# HELP` line (its first sample's help, omitted when empty) and a `# TYPE` line (counter or
//   gauge; any other type is written as untyped).
// - Metric names are sanitized (sanitizeMetricName), counters get `_total` when they lack it.
// - Label names are sanitized (sanitizeLabelName); a label name repeated in one sample keeps its
//   first value. Label values are made valid UTF-8 (bad bytes become U+FFFD) and escaped (`\\`,
//   `\"`, `\n`); HELP text is escaped (`\\`, `\n`).
// - A second sample with the same name and labels as an earlier one is dropped: Prometheus
//   rejects a scrape with duplicate series.
// - Values as formatPrometheusValue().
// Every line ends with '\n'; no metrics give an empty text.
std::string renderPrometheus(const std::vector<Metric>& metrics);

// A valid metric name, [a-zA-Z_:][a-zA-Z0-9_:]*: every other byte becomes '_', a leading digit
// gets a '_' before it, an empty name becomes "_".
std::string sanitizeMetricName(std::string_view name);

// A valid label name, [a-zA-Z_][a-zA-Z0-9_]* (no ':', unlike metric names): as
// sanitizeMetricName otherwise.
std::string sanitizeLabelName(std::string_view name);

// A sample value: integral values below 2^63 in magnitude as plain integers ("1234567", never
// "1.234567e+06"), so counters read and diff exactly; other finite values in the shortest form
// that reads back to the same double; "NaN", "+Inf", "-Inf"; -0 as "0".
std::string formatPrometheusValue(double value);

}  // namespace cistern::agent
