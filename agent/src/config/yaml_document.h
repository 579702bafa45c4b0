// YAML text -> a small tree that remembers where each node was written.
//
// This is the only place yaml-cpp is used. Its node API would hide what a config checker needs
// (duplicate keys, the position of every key and value), so the tree is built from the parser's
// events instead. Before the parser sees the text it is checked for size, bytes that are not
// UTF-8 text, tab indentation and nesting depth, because yaml-cpp recurses once per nested
// collection and reports tabs with unhelpful messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "diagnostics.h"

namespace cistern::agent::config {

// More nodes than this are refused: 1 MiB of "[1,1,1,..." would otherwise cost a lot of memory.
inline constexpr std::size_t kMaxNodes = 100000;

struct Node {
  enum class Kind : std::uint8_t { kNull, kScalar, kSequence, kMapping };

  Kind kind = Kind::kNull;
  Mark mark;         // where the node starts (for a null value: where the parser noticed it)
  std::string text;  // kScalar: the value as YAML decoded it (quotes and escapes resolved)
  std::vector<const Node*> items;  // kSequence
  // kMapping: key/value pairs in file order, repeated keys kept. Neither pointer is null.
  std::vector<std::pair<const Node*, const Node*>> entries;

  [[nodiscard]] bool isNull() const { return kind == Kind::kNull; }
  [[nodiscard]] bool isScalar() const { return kind == Kind::kScalar; }
  [[nodiscard]] bool isSequence() const { return kind == Kind::kSequence; }
  [[nodiscard]] bool isMapping() const { return kind == Kind::kMapping; }
};

// "a mapping", "a list", "a value", "nothing": for "expected X, got Y" messages.
std::string_view describeKind(Node::Kind kind);

// The tree of one YAML document. Nodes live as long as the Document; an alias is a second
// pointer to its anchored node, never a copy, so the tree cannot blow up in size.
class Document {
 public:
  // The top-level node; nullptr when the text holds no document (empty or only comments).
  [[nodiscard]] const Node* root() const { return root_; }

 private:
  friend class DocumentBuilder;

  std::deque<Node> nodes_;  // a deque keeps node addresses stable while it grows
  const Node* root_ = nullptr;
};

// Checks the limits, then parses `text` (one YAML document) into a Document. Every problem goes to
// `sink`. Returns nullptr when the text cannot be used at all (a limit, a syntax error, a second
// document, an alias inside its own anchor); problems that leave the tree usable (an unsupported
// tag) are reported and the Document is returned. Never throws
// a yaml-cpp exception; std::bad_alloc may escape.
std::unique_ptr<Document> parseDocument(std::string_view text, DiagnosticSink& sink);

}  // namespace cistern::agent::config
