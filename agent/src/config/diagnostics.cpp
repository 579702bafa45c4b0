#include "diagnostics.h"

#include <algorithm>
#include <numeric>
#include <tuple>
#include <utility>

#include <fmt/format.h>

namespace cistern::agent {

std::string ConfigDiagnostic::describe() const {
  std::string out = file;
  if (line > 0) out += fmt::format(":{}:{}", line, column);
  out += ": ";
  if (!key.empty()) {
    out += key;
    out += ": ";
  }
  out += message;
  if (!suggestion.empty()) out += fmt::format(" (did you mean '{}'?)", suggestion);
  return out;
}

namespace config {
namespace {

constexpr std::size_t kMaxShown = 64;

bool isControl(unsigned char c) { return c < 0x20U || c == 0x7FU; }

// Escapes control characters, which could otherwise rewrite the user's terminal.
std::string escapeControls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (isControl(c)) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}

// Cuts at most kMaxShown bytes, backing off to the start of a UTF-8 sequence.
std::string shorten(std::string_view text) {
  if (text.size() <= kMaxShown) return escapeControls(text);
  std::size_t cut = kMaxShown;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U) --cut;
  return escapeControls(text.substr(0, cut)) + "...";
}

char normalized(char c) {
  if (c == '-') return '_';
  if (c >= 'A' && c <= 'Z') return static_cast<char>(c - 'A' + 'a');
  return c;
}

}  // namespace

DiagnosticSink::DiagnosticSink(std::string_view file)
    : file_(file.empty() ? std::string("<config>") : escapeControls(file)) {}

void DiagnosticSink::report(Mark mark, std::string_view key, std::string_view message,
                            std::string_view suggestion) {
  ++reported_;
  const auto position = [](const ConfigDiagnostic& d) { return std::tie(d.line, d.column); };
  auto latest = kept_.end();
  if (kept_.size() >= kMaxKept) {
    // Keep the problems nearest the top of the file, where a reader starts fixing.
    latest = std::max_element(kept_.begin(), kept_.end(),
                              [&](const ConfigDiagnostic& a, const ConfigDiagnostic& b) {
                                return position(a) < position(b);
                              });
    const int line = std::max(mark.line, 0);
    if (std::tie(line, mark.column) >= position(*latest)) return;
  }
  ConfigDiagnostic d;
  d.file = file_;
  d.line = std::max(mark.line, 0);
  d.column = d.line == 0 ? 0 : std::max(mark.column, 1);
  d.key = escapeControls(key);
  d.message = escapeControls(message);
  d.suggestion = escapeControls(suggestion);
  if (latest != kept_.end()) {
    *latest = std::move(d);
  } else {
    kept_.push_back(std::move(d));
  }
}

std::vector<ConfigDiagnostic> DiagnosticSink::sorted() const {
  std::vector<ConfigDiagnostic> out = kept_;
  const auto order = [](const ConfigDiagnostic& d) {
    return std::tie(d.line, d.column, d.key, d.message, d.suggestion);
  };
  std::stable_sort(
      out.begin(), out.end(),
      [&](const ConfigDiagnostic& a, const ConfigDiagnostic& b) { return order(a) < order(b); });
  // An anchored value reached through several aliases is checked once per alias.
  out.erase(std::unique(out.begin(), out.end(),
                        [&](const ConfigDiagnostic& a, const ConfigDiagnostic& b) {
                          return order(a) == order(b);
                        }),
            out.end());
  if (reported_ > kept_.size()) {
    ConfigDiagnostic more;
    more.file = file_;
    more.message = fmt::format("{} more problems not shown; fix the ones above first",
                               reported_ - kept_.size());
    out.push_back(std::move(more));
  }
  return out;
}

std::string quoteText(std::string_view text) { return "'" + shorten(text) + "'"; }

std::string displayName(std::string_view text) { return shorten(text); }

std::string joinPath(std::string_view path, std::string_view name) {
  if (path.empty()) return std::string(name);
  std::string out(path);
  out += '.';
  out += name;
  return out;
}

std::string joinNames(const std::vector<std::string>& names, std::string_view quote) {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += ", ";
    out += quote;
    out += name;
    out += quote;
  }
  return out;
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  // Three rolling rows of the optimal-string-alignment table.
  std::vector<std::size_t> before(b.size() + 1);
  std::vector<std::size_t> previous(b.size() + 1);
  std::vector<std::size_t> current(b.size() + 1);
  std::iota(previous.begin(), previous.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const char ai = normalized(a[i - 1]);
      const char bj = normalized(b[j - 1]);
      const std::size_t substitution = previous[j - 1] + (ai == bj ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
      if (i > 1 && j > 1 && ai == normalized(b[j - 2]) && normalized(a[i - 2]) == bj) {
        current[j] = std::min(current[j], before[j - 2] + 1);
      }
    }
    std::swap(before, previous);
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  // Long garbage is no typo of a short key; it would also make the table needlessly large.
  if (word.size() > kMaxShown) return {};
  std::string best;
  std::size_t best_distance = 0;
  for (const auto& candidate : candidates) {
    const std::size_t limit = std::clamp<std::size_t>(candidate.size() / 3, 1, 3);
    const std::size_t distance = editDistance(word, candidate);
    if (distance > limit) continue;
    if (best.empty() || distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace config
}  // namespace cistern::agent
