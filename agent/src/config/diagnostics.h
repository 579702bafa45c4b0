// Collecting config diagnostics, and the text helpers their messages share.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/agent/config.h"

namespace cistern::agent::config {

// A position in the config text. Both are 1-based; line 0 means "the whole file".
struct Mark {
  int line = 0;
  int column = 0;
};

// Collects the diagnostics of one parse. Not thread-safe; one per parse.
class DiagnosticSink {
 public:
  // Of more diagnostics than this, the ones nearest the top of the file are kept and the rest
  // counted: a file of garbage must not produce megabytes of messages.
  static constexpr std::size_t kMaxKept = 100;

  explicit DiagnosticSink(std::string_view file);

  // Records a problem. Control characters in key, message and suggestion are escaped here, so
  // callers may quote user text freely.
  void report(Mark mark, std::string_view key, std::string_view message,
              std::string_view suggestion = {});

  [[nodiscard]] bool empty() const { return reported_ == 0; }
  [[nodiscard]] std::size_t count() const { return reported_; }

  // The diagnostics sorted by position (whole-file ones first), exact repeats removed, plus one
  // that says how many were left out when there were more than kMaxKept.
  [[nodiscard]] std::vector<ConfigDiagnostic> sorted() const;

 private:
  std::string file_;
  std::vector<ConfigDiagnostic> kept_;
  std::size_t reported_ = 0;
};

// User text for a message: in single quotes, control characters escaped as \xNN, cut to about
// 64 bytes (on a UTF-8 boundary) with "..." when longer.
std::string quoteText(std::string_view text);

// A key name from the file as it appears in a dotted path: escaped and cut like quoteText(),
// without the quotes.
std::string displayName(std::string_view text);

// "buffer" + "max_size" -> "buffer.max_size"; "" + "buffer" -> "buffer".
std::string joinPath(std::string_view path, std::string_view name);

// "a, b and c"-style lists for messages: "a, b, c".
std::string joinNames(const std::vector<std::string>& names, std::string_view quote = "");

// Edit distance (optimal string alignment: insertions, deletions, substitutions and swaps of
// neighbours cost 1) after lower-casing both and reading '-' as '_'.
std::size_t editDistance(std::string_view a, std::string_view b);

// The candidate nearest to `word` if it is close enough to be a likely typo (distance at most a
// third of the candidate's length, at least 1, at most 3), else empty. Ties go to the earlier one.
std::string nearest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace cistern::agent::config
