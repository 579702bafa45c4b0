// A strict parser of the Prometheus text exposition format 0.0.4, for tests that read /metrics
// (the renderer's unit tests, the agent's integration test against a live /metrics).
//
// Reference: https://prometheus.io/docs/instrumenting/exposition_formats/ (text-based format).
// Strict where Prometheus' own parser is lenient, so a test catches output that only happens to
// be accepted:
// - lines end with '\n' (the last one too); no '\r'; empty lines and leading/trailing blanks and
//   tabs are ignored; `#` lines other than HELP and TYPE are comments;
// - `# HELP name text` with only `\\` and `\n` escapes; `# TYPE name type` with type counter,
//   gauge, histogram, summary or untyped; at most one of each per family, TYPE before the
//   family's first sample;
// - a sample is `name[{label="value",...}] value [timestamp]`: names match
//   [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*, no label twice, label values
//   with only `\\`, `\"` and `\n` escapes, HELP and label values valid UTF-8; a value is a decimal
//   number (sign, fraction and exponent allowed), NaN, +Inf or -Inf; a timestamp is an integer;
// - a family's lines are consecutive (histogram and summary samples `_bucket`, `_sum`, `_count`
//   belong to their declared family), and no two samples have the same name and label set.
// The first violation is reported with its 1-based line number.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

namespace cistern::testing {

using PromLabels = std::vector<std::pair<std::string, std::string>>;

struct PromSample {
  std::string name;
  PromLabels labels;  // in the order written, unescaped
  double value = 0;
  std::optional<std::int64_t> timestamp_ms;
  int line = 0;

  [[nodiscard]] std::optional<std::string> label(std::string_view label_name) const {
    for (const auto& [n, v] : labels) {
      if (n == label_name) return v;
    }
    return std::nullopt;
  }
};

struct PromFamily {
  std::string name;
  std::string type = "untyped";  // as declared by TYPE, else untyped
  std::string help;              // unescaped
  bool has_help = false;
  bool has_type = false;
  std::vector<PromSample> samples;
};

struct PromParseError {
  int line = 0;
  std::string message;

  [[nodiscard]] std::string describe() const {
    return "line " + std::to_string(line) + ": " + message;
  }
};

struct PromExposition {
  std::vector<PromFamily> families;  // in the order they appear

  [[nodiscard]] const PromFamily* family(std::string_view name) const {
    for (const auto& f : families) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  // The value of the sample called `name` whose label set equals `labels` (in any order).
  [[nodiscard]] std::optional<double> value(std::string_view name, PromLabels labels = {}) const {
    std::sort(labels.begin(), labels.end());
    for (const auto& f : families) {
      for (const auto& s : f.samples) {
        if (s.name != name || s.labels.size() != labels.size()) continue;
        PromLabels mine = s.labels;
        std::sort(mine.begin(), mine.end());
        if (mine == labels) return s.value;
      }
    }
    return std::nullopt;
  }

  [[nodiscard]] std::size_t sampleCount() const {
    std::size_t n = 0;
    for (const auto& f : families) n += f.samples.size();
    return n;
  }
};

namespace prom_detail {

inline bool isBlank(char c) { return c == ' ' || c == '\t'; }
inline bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool isDigit(char c) { return c >= '0' && c <= '9'; }

inline bool validName(std::string_view s, bool allow_colon) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = isAlpha(c) || c == '_' || (allow_colon && c == ':') || (i > 0 && isDigit(c));
    if (!ok) return false;
  }
  return true;
}

inline bool validUtf8(std::string_view s) {
  std::size_t i = 0;
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const auto cont = [&](std::size_t k) { return k < s.size() && (at(k) & 0xC0U) == 0x80U; };
  while (i < s.size()) {
    const unsigned b = at(i);
    std::size_t n = 0;
    if (b < 0x80U) {
      n = 1;
    } else if (b >= 0xC2U && b <= 0xDFU && cont(i + 1)) {
      n = 2;
    } else if (b >= 0xE0U && b <= 0xEFU && cont(i + 1) && cont(i + 2) &&
               !(b == 0xE0U && at(i + 1) < 0xA0U) && !(b == 0xEDU && at(i + 1) >= 0xA0U)) {
      n = 3;
    } else if (b >= 0xF0U && b <= 0xF4U && cont(i + 1) && cont(i + 2) && cont(i + 3) &&
               !(b == 0xF0U && at(i + 1) < 0x90U) && !(b == 0xF4U && at(i + 1) >= 0x90U)) {
      n = 4;
    } else {
      return false;
    }
    i += n;
  }
  return true;
}

// Splits off the next blank-separated token.
inline std::string_view nextToken(std::string_view& rest) {
  while (!rest.empty() && isBlank(rest.front())) rest.remove_prefix(1);
  std::size_t n = 0;
  while (n < rest.size() && !isBlank(rest[n])) ++n;
  const std::string_view token = rest.substr(0, n);
  rest.remove_prefix(n);
  return token;
}

inline void skipBlanks(std::string_view& rest) {
  while (!rest.empty() && isBlank(rest.front())) rest.remove_prefix(1);
}

inline std::optional<double> parseValue(std::string_view s) {
  if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (s == "+Inf") return std::numeric_limits<double>::infinity();
  if (s == "-Inf") return -std::numeric_limits<double>::infinity();
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  // from_chars also reads "inf", "nan" and hex-less forms only; refuse the words here.
  if (s.empty() || !(isDigit(s.front()) || s.front() == '-' || s.front() == '.')) return {};
  double v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || std::isnan(v) || std::isinf(v)) return {};
  return v;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  tl::expected<PromExposition, PromParseError> run() {
    if (!text_.empty() && text_.back() != '\n') {
      const auto lines = std::count(text_.begin(), text_.end(), '\n') + 1;
      return tl::unexpected(
          PromParseError{static_cast<int>(lines), "the last line does not end with a line feed"});
    }
    std::size_t start = 0;
    int number = 0;
    while (start < text_.size()) {
      const std::size_t end = text_.find('\n', start);
      ++number;
      line_ = number;
      std::string_view line = text_.substr(start, end - start);
      start = end + 1;
      if (line.find('\r') != std::string_view::npos) return error("carriage return in the line");
      skipBlanks(line);
      while (!line.empty() && isBlank(line.back())) line.remove_suffix(1);
      if (line.empty()) continue;
      const bool ok = line.front() == '#' ? comment(line) : sample(line);
      if (!ok) return tl::unexpected(failure_);
    }
    return std::move(out_);
  }

 private:
  tl::unexpected<PromParseError> error(std::string message) {
    return tl::unexpected(PromParseError{line_, std::move(message)});
  }
  bool fail(std::string message) {
    failure_ = PromParseError{line_, std::move(message)};
    return false;
  }

  // The family `name` for a new line: the current one, or a new one when it never appeared.
  PromFamily* enter(const std::string& name) {
    if (!out_.families.empty() && out_.families.back().name == name) return &out_.families.back();
    if (const auto seen = first_line_.find(name); seen != first_line_.end()) {
      fail("family " + name + " appears again after another family (its lines started at line " +
           std::to_string(seen->second) + "); a family's lines must be consecutive");
      return nullptr;
    }
    first_line_[name] = line_;
    out_.families.push_back(PromFamily{name, "untyped", "", false, false, {}});
    return &out_.families.back();
  }

  bool comment(std::string_view line) {
    line.remove_prefix(1);
    const std::string_view keyword = nextToken(line);
    if (keyword != "HELP" && keyword != "TYPE") return true;  // a plain comment
    const std::string name(nextToken(line));
    if (!validName(name, true))
      return fail("invalid metric name '" + name + "' in " + std::string(keyword));
    PromFamily* family = enter(name);
    if (family == nullptr) return false;
    if (keyword == "TYPE") {
      const std::string_view type = nextToken(line);
      skipBlanks(line);
      if (!line.empty()) return fail("text after the type in TYPE " + name);
      if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
          type != "untyped") {
        return fail("unknown type '" + std::string(type) + "' for " + name);
      }
      if (family->has_type) return fail("second TYPE line for " + name);
      if (!family->samples.empty()) return fail("TYPE for " + name + " after its samples");
      family->has_type = true;
      family->type = std::string(type);
      return true;
    }
    if (family->has_help) return fail("second HELP line for " + name);
    skipBlanks(line);
    std::string help;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (line[i] != '\\') {
        help += line[i];
        continue;
      }
      if (i + 1 == line.size()) return fail("HELP of " + name + " ends with a lone backslash");
      const char e = line[++i];
      if (e == '\\') {
        help += '\\';
      } else if (e == 'n') {
        help += '\n';
      } else {
        return fail(std::string("invalid escape \\") + e + " in HELP of " + name);
      }
    }
    if (!validUtf8(help)) return fail("HELP of " + name + " is not valid UTF-8");
    family->has_help = true;
    family->help = std::move(help);
    return true;
  }

  // The family a sample called `name` belongs to: histograms and summaries own their suffixed
  // series, everything else is its own family.
  [[nodiscard]] std::string familyOf(const std::string& name) const {
    if (!out_.families.empty()) {
      const PromFamily& f = out_.families.back();
      const bool composite = f.type == "histogram" || f.type == "summary";
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (composite && name == f.name + suffix) return f.name;
      }
    }
    return name;
  }

  bool labels(std::string_view& rest, PromLabels& out) {
    rest.remove_prefix(1);  // '{'
    while (true) {
      skipBlanks(rest);
      if (rest.empty()) return fail("unterminated label set");
      if (rest.front() == '}') {
        rest.remove_prefix(1);
        return true;
      }
      std::size_t n = 0;
      while (n < rest.size() &&
             (isAlpha(rest[n]) || isDigit(rest[n]) || rest[n] == '_' || rest[n] == ':')) {
        ++n;
      }
      const std::string name(rest.substr(0, n));
      if (!validName(name, false)) return fail("invalid label name '" + name + "'");
      rest.remove_prefix(n);
      skipBlanks(rest);
      if (rest.empty() || rest.front() != '=') return fail("no '=' after label " + name);
      rest.remove_prefix(1);
      skipBlanks(rest);
      if (rest.empty() || rest.front() != '"')
        return fail("label " + name + " has no quoted value");
      rest.remove_prefix(1);
      std::string value;
      bool closed = false;
      while (!rest.empty()) {
        const char c = rest.front();
        rest.remove_prefix(1);
        if (c == '"') {
          closed = true;
          break;
        }
        if (c != '\\') {
          value += c;
          continue;
        }
        if (rest.empty()) break;
        const char e = rest.front();
        rest.remove_prefix(1);
        if (e == '\\' || e == '"') {
          value += e;
        } else if (e == 'n') {
          value += '\n';
        } else {
          return fail(std::string("invalid escape \\") + e + " in the value of label " + name);
        }
      }
      if (!closed) return fail("unterminated value of label " + name);
      if (!validUtf8(value)) return fail("value of label " + name + " is not valid UTF-8");
      for (const auto& existing : out) {
        if (existing.first == name) return fail("label " + name + " given twice");
      }
      out.emplace_back(name, std::move(value));
      skipBlanks(rest);
      if (!rest.empty() && rest.front() == ',') {
        rest.remove_prefix(1);
      } else if (rest.empty() || rest.front() != '}') {
        return fail("expected ',' or '}' after label " + name);
      }
    }
  }

  bool sample(std::string_view line) {
    std::size_t n = 0;
    while (n < line.size() && !isBlank(line[n]) && line[n] != '{') ++n;
    PromSample s;
    s.line = line_;
    s.name = std::string(line.substr(0, n));
    if (!validName(s.name, true)) return fail("invalid metric name '" + s.name + "'");
    std::string_view rest = line.substr(n);
    skipBlanks(rest);
    if (!rest.empty() && rest.front() == '{' && !labels(rest, s.labels)) return false;
    const std::string_view value_text = nextToken(rest);
    if (value_text.empty()) return fail("sample " + s.name + " has no value");
    const auto value = parseValue(value_text);
    if (!value) return fail("invalid value '" + std::string(value_text) + "' for " + s.name);
    s.value = *value;
    if (const std::string_view ts = nextToken(rest); !ts.empty()) {
      std::int64_t t = 0;
      const auto [ptr, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), t);
      if (ec != std::errc() || ptr != ts.data() + ts.size()) {
        return fail("invalid timestamp '" + std::string(ts) + "' for " + s.name);
      }
      s.timestamp_ms = t;
    }
    skipBlanks(rest);
    if (!rest.empty()) return fail("text after the sample of " + s.name);
    PromLabels key = s.labels;
    std::sort(key.begin(), key.end());
    if (!series_.emplace(s.name, std::move(key)).second) {
      return fail("duplicate sample " + s.name + " with the same labels");
    }
    PromFamily* family = enter(familyOf(s.name));
    if (family == nullptr) return false;
    family->samples.push_back(std::move(s));
    return true;
  }

  std::string_view text_;
  int line_ = 0;
  PromExposition out_;
  PromParseError failure_;
  std::map<std::string, int> first_line_;  // family name -> its first line
  std::set<std::pair<std::string, PromLabels>> series_;
};

}  // namespace prom_detail

// Parses `text` (a whole /metrics body) or reports the first violation of the format.
inline tl::expected<PromExposition, PromParseError> parsePrometheusText(std::string_view text) {
  return prom_detail::Parser(text).run();
}

// What a parsed exposition does against the Prometheus naming conventions (units in the names,
// base units only, `_total` on counters), for tests that hold the agent to them. Empty when
// nothing. `prefix`: every family's name must start with it ("cistern_"), when not empty.
inline std::vector<std::string> namingProblems(const PromExposition& exposition,
                                               std::string_view prefix = "") {
  // Suffix words that mean a unit other than the base one (seconds, bytes, ratios 0..1).
  static const std::set<std::string, std::less<>> kNonBaseUnits = {
      "ms",        "milliseconds", "us",  "microseconds", "ns",        "nanoseconds", "minutes",
      "hours",     "days",         "kb",  "kib",          "kilobytes", "mb",          "mib",
      "megabytes", "gb",           "gib", "gigabytes",    "percent",   "bits"};
  std::vector<std::string> problems;
  const auto endsWith = [](std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
  };
  for (const auto& f : exposition.families) {
    if (!prefix.empty() && f.name.rfind(prefix, 0) != 0) {
      problems.push_back(f.name + ": does not start with " + std::string(prefix));
    }
    if (!f.has_help || f.help.empty()) problems.push_back(f.name + ": no HELP text");
    if (!f.has_type) problems.push_back(f.name + ": no TYPE line");
    if (f.type == "counter" && !endsWith(f.name, "_total")) {
      problems.push_back(f.name + ": a counter's name must end in _total");
    }
    if (f.type != "counter" && endsWith(f.name, "_total")) {
      problems.push_back(f.name + ": _total on a " + f.type);
    }
    std::string_view rest = f.name;
    while (!rest.empty()) {
      const auto cut = rest.find('_');
      const std::string_view word = rest.substr(0, cut);
      if (kNonBaseUnits.count(word) != 0) {
        problems.push_back(f.name + ": unit '" + std::string(word) +
                           "' is not a base unit (use seconds, bytes or a 0..1 ratio)");
      }
      if (cut == std::string_view::npos) break;
      rest.remove_prefix(cut + 1);
    }
    for (const auto& s : f.samples) {
      if (f.type == "counter" && s.value < 0) {
        problems.push_back(f.name + ": negative counter value at line " + std::to_string(s.line));
      }
    }
  }
  return problems;
}

}  // namespace cistern::testing
