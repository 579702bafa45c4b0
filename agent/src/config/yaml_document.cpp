#include "yaml_document.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include "cistern/core/units.h"

namespace cistern::agent::config {

std::string_view describeKind(Node::Kind kind) {
  switch (kind) {
    case Node::Kind::kNull:
      return "nothing";
    case Node::Kind::kScalar:
      return "a single value";
    case Node::Kind::kSequence:
      return "a list";
    case Node::Kind::kMapping:
      return "a mapping";
  }
  return "something else";
}

namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// Splits text into lines, numbered as yaml-cpp numbers them (from 1 here); a BOM is skipped and
// columns within a line are byte offsets, as yaml-cpp counts them.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {
    if (text_.substr(0, kBom.size()) == kBom) pos_ = kBom.size();
  }
  [[nodiscard]] bool done() const { return pos_ >= text_.size(); }

  // The next line without its line break.
  std::string_view next() {
    const std::size_t end = std::min(text_.find('\n', pos_), text_.size());
    const std::string_view line = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    ++number_;
    return line;
  }
  // The number of the line next() returned last.
  [[nodiscard]] int number() const { return number_; }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  int number_ = 0;
};

// The length of the valid UTF-8 sequence starting at text[i], or 0 when it is not valid.
std::size_t utf8Length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) {
    return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0U;
  };
  const unsigned lead = byte(0);
  const auto continuation = [&](std::size_t k, unsigned lo = 0x80U, unsigned hi = 0xBFU) {
    return byte(k) >= lo && byte(k) <= hi;
  };
  if (lead < 0x80U) return 1;
  if (lead >= 0xC2U && lead <= 0xDFU) return continuation(1) ? 2 : 0;
  if (lead >= 0xE0U && lead <= 0xEFU) {
    const unsigned lo = lead == 0xE0U ? 0xA0U : 0x80U;  // no overlong forms
    const unsigned hi = lead == 0xEDU ? 0x9FU : 0xBFU;  // no UTF-16 surrogates
    return continuation(1, lo, hi) && continuation(2) ? 3 : 0;
  }
  if (lead >= 0xF0U && lead <= 0xF4U) {
    const unsigned lo = lead == 0xF0U ? 0x90U : 0x80U;
    const unsigned hi = lead == 0xF4U ? 0x8FU : 0xBFU;  // nothing above U+10FFFF
    return continuation(1, lo, hi) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

// Refuses text a config file cannot be: too large, NUL or other control bytes, not UTF-8.
bool checkText(std::string_view text, DiagnosticSink& sink) {
  if (text.size() > kMaxConfigBytes) {
    sink.report({}, "",
                fmt::format("the file is larger than {}, the limit for a config file",
                            formatSize(kMaxConfigBytes)));
    return false;
  }
  LineReader reader(text);
  while (!reader.done()) {
    const std::string_view line = reader.next();
    for (std::size_t i = 0; i < line.size();) {
      const auto c = static_cast<unsigned char>(line[i]);
      const Mark at{reader.number(), static_cast<int>(i) + 1};
      if (c == 0) {
        sink.report(at, "", "the file contains a NUL byte; a config file must be UTF-8 text");
        return false;
      }
      if ((c < 0x20U && c != '\t' && c != '\r') || c == 0x7FU) {
        sink.report(at, "",
                    fmt::format("the file contains the control character \\x{:02x}; a config "
                                "file must be UTF-8 text",
                                c));
        return false;
      }
      const std::size_t length = utf8Length(line, i);
      if (length == 0) {
        sink.report(
            at, "",
            fmt::format("the file is not valid UTF-8 (byte \\x{:02x}); save it as UTF-8", c));
        return false;
      }
      i += length;
    }
  }
  return true;
}

struct FlowOpener {
  Mark mark;
  char bracket = '[';  // or '{'; for an unclosed quote, the quote character
};

struct StructureScan {
  std::optional<Mark> too_deep;      // where the estimated nesting first went over the limit
  std::vector<Mark> tab_indents;     // block lines indented with a tab
  std::vector<FlowOpener> unclosed;  // '[' and '{' still open at the end, outermost first
  std::optional<FlowOpener> unclosed_quote;  // a quoted scalar still open at the end
};

bool isBlank(char c) { return c == ' ' || c == '\t' || c == '\r'; }
bool isFlowIndicator(char c) { return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'; }

// Estimates how deeply collections nest, without recursion, so that deep input never reaches
// yaml-cpp's recursive descent. This is a lexer, not a parser: it tracks quotes, comments, block
// scalars, flow brackets and the indentation of block collections ("- " and "? " on one line nest
// too). It may count one or two levels more than the parser will find (a scalar at a line's start
// counts as a possible mapping), which is why the caller allows that slack and the tree builder
// then enforces the exact limit. Also finds tabs used for indentation, which YAML forbids.
class StructureScanner {
 public:
  StructureScanner(std::string_view text, std::size_t limit) : text_(text), limit_(limit) {}

  StructureScan run() {
    LineReader reader(text_);
    while (!reader.done() && !result_.too_deep) {
      const std::string_view line = reader.next();
      line_number_ = reader.number();
      scanLine(line);
    }
    result_.unclosed = flow_;
    if (quote_ != Quote::kNone) result_.unclosed_quote = quote_opener_;
    return result_;
  }

 private:
  struct Level {
    std::size_t column = 0;
    bool sequence = false;
  };
  enum class Quote { kNone, kSingle, kDouble };

  [[nodiscard]] Mark at(std::size_t i) const { return {line_number_, static_cast<int>(i) + 1}; }

  void checkDepth(std::size_t i) {
    if (!result_.too_deep && block_.size() + flow_.size() > limit_) result_.too_deep = at(i);
  }

  // A block node starts at `column`: close deeper levels, then open this one unless it continues
  // a level already open. A "- " item at the column of its parent mapping's keys nests in it.
  void enterBlock(std::size_t column, bool sequence, std::size_t i) {
    while (!block_.empty() && block_.back().column > column) block_.pop_back();
    if (!block_.empty() && block_.back().column == column) {
      if (block_.back().sequence == sequence) return;
      if (sequence) {
        block_.push_back({column, true});
        checkDepth(i);
        return;
      }
      block_.pop_back();
      if (!block_.empty() && block_.back().column == column) return;
    }
    block_.push_back({column, sequence});
    checkDepth(i);
  }

  // True when line[i] is followed by a blank or the end of the line (or, in flow context, a flow
  // indicator): that is what makes '-', '?' and ':' indicators instead of scalar text.
  [[nodiscard]] bool endsToken(std::string_view line, std::size_t i) const {
    return i + 1 >= line.size() || isBlank(line[i + 1]) ||
           (!flow_.empty() && isFlowIndicator(line[i + 1]));
  }

  void scanLine(std::string_view line) {
    std::size_t i = 0;
    if (block_scalar_parent_) {
      std::size_t indent = 0;
      while (indent < line.size() && line[indent] == ' ') ++indent;
      const bool blank = line.find_first_not_of(" \t\r") == std::string_view::npos;
      if (blank || static_cast<std::ptrdiff_t>(indent) > *block_scalar_parent_) return;
      block_scalar_parent_.reset();
    }
    if (quote_ == Quote::kNone && flow_.empty()) {
      bool tab = false;
      std::size_t tab_at = 0;
      while (i < line.size() && isBlank(line[i])) {
        if (line[i] == '\t' && !tab) {
          tab = true;
          tab_at = i;
        }
        ++i;
      }
      if (i == line.size() || line[i] == '#') return;
      if (tab) result_.tab_indents.push_back(at(tab_at));
      if (i == 0 && line[0] == '%') return;  // a directive
      const std::string_view start = line.substr(i);
      if (i == 0 && (start.substr(0, 3) == "---" || start.substr(0, 3) == "...") &&
          (start.size() == 3 || isBlank(start[3]))) {
        block_.clear();
        i = 3;
      } else {
        i = enterLine(line, i);
      }
    }
    scanTokens(line, i);
  }

  // Handles the indicators that open block collections at the start of a line ("- - a: 1"),
  // returning where the first ordinary token begins.
  std::size_t enterLine(std::string_view line, std::size_t i) {
    while (i < line.size() && !result_.too_deep) {
      const char c = line[i];
      const bool indicator = (c == '-' || c == '?' || c == ':') && endsToken(line, i);
      if (!indicator) {
        if (c != '|' && c != '>') enterBlock(i, false, i);
        return i;
      }
      enterBlock(i, c == '-', i);
      ++i;
      while (i < line.size() && isBlank(line[i])) ++i;
      if (i == line.size() || line[i] == '#') return line.size();
    }
    return i;
  }

  void scanTokens(std::string_view line, std::size_t i) {
    bool token_start = true;  // a quote here opens a quoted scalar
    bool plain = false;       // inside an unquoted scalar, where quotes are text
    bool after_blank = true;  // a '#' here starts a comment
    for (; i < line.size() && !result_.too_deep; ++i) {
      const char c = line[i];
      if (quote_ == Quote::kSingle) {
        if (c == '\'') {
          if (i + 1 < line.size() && line[i + 1] == '\'') {
            ++i;
          } else {
            quote_ = Quote::kNone;
            token_start = false;
          }
        }
        continue;
      }
      if (quote_ == Quote::kDouble) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          quote_ = Quote::kNone;
          token_start = false;
        }
        continue;
      }
      if (isBlank(c)) {
        after_blank = true;
        if (!plain) token_start = true;
        continue;
      }
      if (c == '#' && after_blank) return;
      after_blank = false;
      if (plain) {
        if (c == ':' && endsToken(line, i)) {
          plain = false;
          token_start = true;
          continue;
        }
        if (flow_.empty() || !isFlowIndicator(c)) continue;
        plain = false;
      }
      switch (c) {
        case '[':
        case '{':
          flow_.push_back({at(i), c});
          checkDepth(i);
          token_start = true;
          break;
        case ']':
        case '}':
          if (!flow_.empty()) flow_.pop_back();
          token_start = false;
          break;
        case ',':
          token_start = true;
          break;
        case '\'':
        case '"':
          if (token_start) {
            quote_ = c == '\'' ? Quote::kSingle : Quote::kDouble;
            quote_opener_ = {at(i), c};
          } else {
            plain = true;
          }
          break;
        case '&':
        case '!':
        case '*':
          // Anchors, tags and aliases run to the next blank (or flow indicator).
          while (i + 1 < line.size() && !isBlank(line[i + 1]) &&
                 (flow_.empty() || !isFlowIndicator(line[i + 1]))) {
            ++i;
          }
          token_start = c != '*';
          break;
        case '|':
        case '>':
          if (token_start && flow_.empty() && startsBlockScalar(line, i)) {
            // Its text is every following line indented deeper than the node that holds it.
            block_scalar_parent_ =
                block_.empty() ? -1 : static_cast<std::ptrdiff_t>(block_.back().column);
            return;
          }
          plain = true;
          break;
        case '-':
        case '?':
        case ':':
          if (endsToken(line, i)) {
            token_start = true;
          } else {
            plain = true;
          }
          break;
        default:
          plain = true;
          token_start = false;
          break;
      }
    }
  }

  // "|", ">", "|-", ">+2" and the like, followed only by blanks or a comment.
  static bool startsBlockScalar(std::string_view line, std::size_t i) {
    std::size_t j = i + 1;
    while (j < line.size() &&
           (line[j] == '+' || line[j] == '-' || (line[j] >= '0' && line[j] <= '9'))) {
      ++j;
    }
    while (j < line.size() && isBlank(line[j])) ++j;
    return j == line.size() || (line[j] == '#' && isBlank(line[j - 1]));
  }

  std::string_view text_;
  std::size_t limit_;
  int line_number_ = 0;
  std::vector<Level> block_;
  std::vector<FlowOpener> flow_;
  Quote quote_ = Quote::kNone;
  FlowOpener quote_opener_;
  std::optional<std::ptrdiff_t> block_scalar_parent_;  // set while inside a block scalar
  StructureScan result_;
};

Mark toMark(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return {};
  return {mark.line + 1, std::max(mark.column, 0) + 1};
}

// Thrown from the event handler to stop yaml-cpp once a problem makes the rest pointless.
struct StopParsing {};

// Records where a second document starts, then stops the parser before it reads that document.
class SecondDocumentProbe final : public YAML::EventHandler {
 public:
  struct Found {
    Mark mark;
  };
  void OnDocumentStart(const YAML::Mark& mark) override { throw Found{toMark(mark)}; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnScalar(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {}
  void OnSequenceStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/,
                       YAML::anchor_t /*anchor*/, YAML::EmitterStyle::value /*style*/) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {}
  void OnMapEnd() override {}
};

std::string tooDeep() {
  return fmt::format("lists and mappings nest deeper than {} levels, the limit for a config file",
                     kMaxConfigDepth);
}

void reportUnclosedQuote(const FlowOpener& quote, DiagnosticSink& sink) {
  sink.report(quote.mark, "",
              fmt::format("invalid YAML: this {} is never closed",
                          quote.bracket == '"' ? "'\"'" : "\"'\""));
}

}  // namespace

// Builds the tree from parser events, enforcing the exact depth and node limits.
class DocumentBuilder final : public YAML::EventHandler {
 public:
  DocumentBuilder(Document& document, DiagnosticSink& sink) : document_(document), sink_(sink) {}

  void OnDocumentStart(const YAML::Mark& /*mark*/) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Node& node = make(Node::Kind::kNull, mark);
    remember(anchor, node);
    attach(node);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {  // yaml-cpp refuses unknown aliases itself; stay total anyway
      attach(make(Node::Kind::kNull, mark));
      return;
    }
    const bool open = std::any_of(stack_.begin(), stack_.end(),
                                  [&](const Frame& frame) { return frame.node == it->second; });
    if (open) {
      sink_.report(toMark(mark), path(),
                   "this alias refers to a collection that contains it, which would make it "
                   "endless");
      throw StopParsing{};
    }
    attach(*it->second);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    checkTag(mark, tag);
    if (tag == "!" && watched_quote_ && sameMark(toMark(mark), *watched_quote_)) {
      saw_watched_quote_ = true;
    }
    Node& node = make(Node::Kind::kScalar, mark);
    node.text = value;
    remember(anchor, node);
    attach(node);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    open(Node::Kind::kSequence, mark, tag, anchor);
  }
  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    open(Node::Kind::kMapping, mark, tag, anchor);
  }
  void OnMapEnd() override { close(); }

  // Notes whether a quoted scalar starts at `mark`: there the scan found a quote that is never
  // closed, which yaml-cpp accepts (it ends the scalar at the end of the file).
  void watchQuote(Mark mark) { watched_quote_ = mark; }
  [[nodiscard]] bool sawWatchedQuote() const { return saw_watched_quote_; }

  // The dotted path of the value being parsed, for the key of a syntax error: "buffer.sync".
  [[nodiscard]] std::string path() const {
    std::string out;
    for (std::size_t i = 0; i < stack_.size(); ++i) {
      const Frame& frame = stack_[i];
      const bool innermost = i + 1 == stack_.size();
      if (frame.node->isSequence()) {
        const std::size_t index = frame.node->items.size() - (innermost ? 0 : 1);
        out += fmt::format("[{}]", index);
        continue;
      }
      if (frame.node->entries.empty()) break;
      const auto& [key, value] = frame.node->entries.back();
      const bool in_value = innermost ? frame.want_value : value == stack_[i + 1].node;
      if (!in_value || !key->isScalar()) break;
      out = joinPath(out, displayName(key->text));
    }
    return out;
  }

 private:
  struct Frame {
    Node* node = nullptr;
    bool want_value = false;  // mappings: the next node is the value of the last key
  };

  Node& make(Node::Kind kind, const YAML::Mark& mark) {
    if (document_.nodes_.size() >= kMaxNodes) {
      sink_.report(toMark(mark), path(),
                   fmt::format("the file holds more than {} values, the limit for a config file",
                               kMaxNodes));
      throw StopParsing{};
    }
    Node& node = document_.nodes_.emplace_back();
    node.kind = kind;
    node.mark = toMark(mark);
    return node;
  }

  void remember(YAML::anchor_t anchor, const Node& node) {
    if (anchor != YAML::NullAnchor) anchors_[anchor] = &node;
  }

  void checkTag(const YAML::Mark& mark, const std::string& tag) {
    // "?" is an untagged plain node, "!" a quoted scalar; the YAML core tags (!!str, !!int, ...)
    // change nothing here. Other tags would be silently ignored, which misleads.
    if (tag.empty() || tag == "?" || tag == "!" || tag.rfind("tag:yaml.org,2002:", 0) == 0) {
      return;
    }
    sink_.report(toMark(mark), path(),
                 fmt::format("the tag {} is not supported in a config file", quoteText(tag)));
  }

  void open(Node::Kind kind, const YAML::Mark& mark, const std::string& tag,
            YAML::anchor_t anchor) {
    if (stack_.size() + 1 > static_cast<std::size_t>(kMaxConfigDepth)) {
      sink_.report(toMark(mark), path(), tooDeep());
      throw StopParsing{};
    }
    checkTag(mark, tag);
    Node& node = make(kind, mark);
    remember(anchor, node);
    attach(node);
    stack_.push_back({&node, false});
  }

  void close() {
    if (stack_.empty()) return;
    Frame& frame = stack_.back();
    if (frame.want_value) {  // yaml-cpp always sends a value; never leave a null pointer behind
      Node& null = document_.nodes_.emplace_back();
      null.mark = frame.node->entries.back().first->mark;
      frame.node->entries.back().second = &null;
    }
    stack_.pop_back();
  }

  void attach(const Node& node) {
    if (stack_.empty()) {
      if (document_.root_ == nullptr) document_.root_ = &node;
      return;
    }
    Frame& frame = stack_.back();
    if (frame.node->isSequence()) {
      frame.node->items.push_back(&node);
    } else if (!frame.want_value) {
      frame.node->entries.emplace_back(&node, nullptr);
      frame.want_value = true;
    } else {
      frame.node->entries.back().second = &node;
      frame.want_value = false;
    }
  }

  static bool sameMark(Mark a, Mark b) { return a.line == b.line && a.column == b.column; }

  Document& document_;
  DiagnosticSink& sink_;
  std::optional<Mark> watched_quote_;
  bool saw_watched_quote_ = false;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, const Node*> anchors_;
};

std::unique_ptr<Document> parseDocument(std::string_view text, DiagnosticSink& sink) {
  if (!checkText(text, sink)) return nullptr;

  // The scan may overcount by a level or two; the builder below enforces the exact limit.
  constexpr std::size_t kScanSlack = 2;
  const StructureScan scan =
      StructureScanner(text, static_cast<std::size_t>(kMaxConfigDepth) + kScanSlack).run();
  if (scan.too_deep) {
    sink.report(*scan.too_deep, "", tooDeep());
    return nullptr;
  }
  if (!scan.tab_indents.empty()) {
    for (const Mark& mark : scan.tab_indents) {
      sink.report(mark, "", "a tab is used for indentation; YAML indents with spaces only");
    }
    return nullptr;
  }

  auto document = std::make_unique<Document>();
  std::istringstream in{std::string(text)};
  DocumentBuilder builder(*document, sink);
  if (scan.unclosed_quote) builder.watchQuote(scan.unclosed_quote->mark);
  try {
    YAML::Parser parser(in);
    if (!parser.HandleNextDocument(builder)) return document;
    if (builder.sawWatchedQuote()) {
      reportUnclosedQuote(*scan.unclosed_quote, sink);
      return nullptr;
    }
    SecondDocumentProbe probe;
    try {
      parser.HandleNextDocument(probe);
    } catch (const SecondDocumentProbe::Found& found) {
      sink.report(found.mark, "",
                  "a second YAML document starts here; a config file holds exactly one");
      return nullptr;
    }
  } catch (const StopParsing&) {
    return nullptr;
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports an unclosed '[' or '{' at the start of the file; point at the bracket.
    if (!scan.unclosed.empty() && e.msg.find("flow") != std::string::npos) {
      const FlowOpener& opener = scan.unclosed.back();
      sink.report(opener.mark, "",
                  fmt::format("invalid YAML: this '{}' is never closed", opener.bracket));
    } else if (scan.unclosed_quote && e.msg.find("scalar") != std::string::npos) {
      reportUnclosedQuote(*scan.unclosed_quote, sink);
    } else {
      sink.report(toMark(e.mark), builder.path(), fmt::format("invalid YAML: {}", e.msg));
    }
    return nullptr;
  }
  return document;
}

}  // namespace cistern::agent::config
