#include "prometheus.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace cistern::agent {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string sanitizeName(std::string_view name, bool allow_colon) {
  if (name.empty()) return "_";
  std::string out;
  out.reserve(name.size() + 1);
  if (isDigit(name.front())) out += '_';
  for (const char c : name) {
    const bool ok = isAlpha(c) || isDigit(c) || c == '_' || (allow_colon && c == ':');
    out += ok ? c : '_';
  }
  return out;
}

// Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF) at the start of `s`, or 0 when its first byte does not start one.
std::size_t utf8SequenceLength(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto continuation = [&](std::size_t i) {
    return i < s.size() && (byte(i) & 0xC0U) == 0x80U;
  };
  const unsigned b0 = byte(0);
  if (b0 < 0x80U) return 1;
  if (b0 >= 0xC2U && b0 <= 0xDFU) return continuation(1) ? 2 : 0;
  if (b0 >= 0xE0U && b0 <= 0xEFU) {
    if (!continuation(1) || !continuation(2)) return 0;
    const unsigned b1 = byte(1);
    if (b0 == 0xE0U && b1 < 0xA0U) return 0;   // overlong
    if (b0 == 0xEDU && b1 >= 0xA0U) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (b0 >= 0xF0U && b0 <= 0xF4U) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    const unsigned b1 = byte(1);
    if (b0 == 0xF0U && b1 < 0x90U) return 0;   // overlong
    if (b0 == 0xF4U && b1 >= 0x90U) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// Appends `text` escaped for a label value (quote too) or a HELP line, with every byte that is
// not part of valid UTF-8 replaced: Prometheus refuses a whole scrape over one bad byte.
void appendEscaped(std::string& out, std::string_view text, bool escape_quote) {
  while (!text.empty()) {
    const std::size_t n = utf8SequenceLength(text);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      text.remove_prefix(1);
      continue;
    }
    const char c = text.front();
    if (n == 1 && c == '\\') {
      out += "\\\\";
    } else if (n == 1 && c == '\n') {
      out += "\\n";
    } else if (n == 1 && c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out.append(text.substr(0, n));
    }
    text.remove_prefix(n);
  }
}

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string familyName(const Metric& m) {
  std::string name = sanitizeMetricName(m.name);
  if (m.type == "counter" && !endsWith(name, "_total")) name += "_total";
  return name;
}

struct Family {
  std::string name;
  const Metric* first = nullptr;
  std::vector<const Metric*> samples;
  std::unordered_set<std::string> series;  // label sets seen, to drop duplicates
};

// The sample's labels with sanitized names, a repeated name dropped (first value kept).
Labels cleanLabels(const Metric& m) {
  Labels out;
  out.reserve(m.labels.size());
  for (const auto& [name, value] : m.labels) {
    std::string clean = sanitizeLabelName(name);
    const bool repeated = std::any_of(out.begin(), out.end(),
                                      [&](const auto& label) { return label.first == clean; });
    if (!repeated) out.emplace_back(std::move(clean), value);
  }
  return out;
}

// The same set of labels gives the same key whatever their order.
std::string seriesKey(Labels labels) {
  std::sort(labels.begin(), labels.end());
  std::string key;
  for (const auto& [name, value] : labels) {
    key += name;
    key += '\0';
    key += value;
    key += '\0';
  }
  return key;
}

}  // namespace

std::string sanitizeMetricName(std::string_view name) { return sanitizeName(name, true); }

std::string sanitizeLabelName(std::string_view name) { return sanitizeName(name, false); }

std::string formatPrometheusValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0) return "0";  // also -0, which reads as a reset to a careless eye
  constexpr double kInt64Bound = 9223372036854775808.0;  // 2^63
  if (std::trunc(value) == value && std::fabs(value) < kInt64Bound) {
    return std::to_string(static_cast<std::int64_t>(value));
  }
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return {buffer, result.ptr};
}

std::string renderPrometheus(const std::vector<Metric>& metrics) {
  std::vector<Family> families;
  std::unordered_map<std::string, std::size_t> index;
  std::vector<Labels> labels_of;  // per metric, parallel to `metrics`
  labels_of.reserve(metrics.size());
  for (const Metric& m : metrics) {
    labels_of.push_back(cleanLabels(m));
    std::string name = familyName(m);
    auto [it, added] = index.try_emplace(name, families.size());
    if (added) families.push_back(Family{std::move(name), &m, {}, {}});
    Family& family = families[it->second];
    if (family.series.insert(seriesKey(labels_of.back())).second) family.samples.push_back(&m);
  }

  std::string out;
  for (const Family& family : families) {
    if (!family.first->help.empty()) {
      out += "# HELP ";
      out += family.name;
      out += ' ';
      appendEscaped(out, family.first->help, false);
      out += '\n';
    }
    const std::string& type = family.first->type;
    out += "# TYPE ";
    out += family.name;
    out += type == "counter" || type == "gauge" ? " " + type + "\n" : std::string(" untyped\n");
    for (const Metric* sample : family.samples) {
      out += family.name;
      const Labels& labels = labels_of[static_cast<std::size_t>(sample - metrics.data())];
      if (!labels.empty()) {
        out += '{';
        for (std::size_t i = 0; i < labels.size(); ++i) {
          if (i > 0) out += ',';
          out += labels[i].first;
          out += "=\"";
          appendEscaped(out, labels[i].second, true);
          out += '"';
        }
        out += '}';
      }
      out += ' ';
      out += formatPrometheusValue(sample->value);
      out += '\n';
    }
  }
  return out;
}

}  // namespace cistern::agent
