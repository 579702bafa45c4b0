// The config schema framework: declarative tables of keys that drive parsing, defaults,
// validation, suggestions and the generated reference.
//
// A Table<T> describes one YAML mapping that fills a struct T:
//   - keys: scalar values of a type (string, bool, integer, size, duration, enum) with a default,
//     limits, a description and where the value goes in T (a pointer to member);
//   - children: a nested mapping that fills a member struct (section()), or a list of mappings
//     that fills a std::vector member, each entry's table chosen by a discriminator key such as
//     `type` (listOf() with alternative());
//   - checks: rules across keys of the same table, with the text the docs show for them.
// Parsing a mapping with a table sets every key exactly once, from the file or from its default,
// and reports every problem to the DiagnosticSink; it never stops at the first one.
//
// Tables are built once (they are immutable afterwards) and may be shared between threads.
#pragma once

#include <cassert>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <tl/expected.hpp>

#include "diagnostics.h"
#include "yaml_document.h"

namespace cistern::agent::config {

// kStringList: a YAML list of strings, or one string meaning a list of one; `check` applies to
// each item.
enum class KeyType { kString, kBool, kInteger, kSize, kDuration, kEnum, kStringList };

// A converted value. The field that holds it follows the key's type: kString -> text,
// kBool -> flag, kInteger and kEnum -> integer (an enum's EnumChoice::value), kSize -> bytes,
// kDuration -> duration, kStringList -> list. (A plain struct rather than a std::variant: GCC 12
// with sanitizers reports false "may be used uninitialized" warnings for a variant holding a
// std::string.)
struct Value {
  std::string text;
  bool flag = false;
  std::int64_t integer = 0;
  std::uint64_t bytes = 0;
  std::chrono::nanoseconds duration{0};
  std::vector<std::string> list;
};

struct EnumChoice {
  std::string name;
  std::int64_t value = 0;
  std::string description;  // optional; the docs list it after the key's description
};

// A rule a value must meet beyond its type and range; returns why it does not.
using ValueCheck = std::function<std::optional<std::string>(const Value&)>;

inline constexpr std::uint64_t kNoSizeLimit = std::numeric_limits<std::uint64_t>::max();

// The default of a string-list key that may be empty (`headers`): byDefault(kEmptyListDefault).
// Lists without it need at least one entry.
inline constexpr std::string_view kEmptyListDefault = "[]";

// Everything about a key but where its value goes.
struct KeySpec {
  std::string name;
  KeyType type = KeyType::kString;
  std::string description;
  std::string unit;  // integers: what one unit is ("packets"); sizes are bytes, durations time
  // The default as YAML text, converted and validated exactly like a value from the file.
  std::optional<std::string> default_text;
  // A default known only at run time (the host name); default_doc says what it is for the docs.
  std::function<std::string()> computed_default;
  std::string default_doc;
  // Inclusive limits; only those of the key's type apply.
  std::int64_t min_integer = std::numeric_limits<std::int64_t>::min();
  std::int64_t max_integer = std::numeric_limits<std::int64_t>::max();
  std::uint64_t min_size = 0;
  std::uint64_t max_size = kNoSizeLimit;
  std::string zero_doc;  // sizes: when set, 0 is allowed below min_size and means this
  std::chrono::nanoseconds min_duration{0};
  std::chrono::nanoseconds max_duration = std::chrono::nanoseconds::max();
  std::vector<EnumChoice> choices;
  ValueCheck check;
  std::string check_doc;  // what `check` requires, for the docs
};

struct ValueError {
  std::string message;
  std::string suggestion;  // enums: the nearest valid value
};

// A string-list key that may be empty or absent.
inline bool optionalList(const KeySpec& spec) {
  return spec.type == KeyType::kStringList && spec.default_text == kEmptyListDefault;
}

// Converts a scalar's text to the key's type, then checks range, choices and `check`.
tl::expected<Value, ValueError> convertValue(const KeySpec& spec, std::string_view text);

// What a value of this key looks like, for "expected X, got Y": "a size such as 512MiB".
std::string expectedValue(const KeySpec& spec);

// The default as messages show it: "'1GiB'" or "the host name".
std::string defaultForMessage(const KeySpec& spec);

// One row of the Markdown key table.
std::string markdownKeyRow(std::string_view path, const KeySpec& spec);
inline constexpr std::string_view kMarkdownKeyHeader =
    "| Key | Type | Default | Allowed values | Description |\n"
    "| --- | --- | --- | --- | --- |\n";

// Where one key's value came from during one parse.
struct KeyState {
  const Node* key = nullptr;    // the key in the file, or nullptr when the default applied
  const Node* value = nullptr;  // its value (never nullptr when key is set)
  std::string text;             // the text the value was converted from
  bool failed = false;          // the value was rejected; rules that use it are skipped
};

// What a cross-key rule may ask about the keys it relates.
class CheckContext {
 public:
  CheckContext(std::vector<std::string_view> names, const std::vector<KeyState>& states)
      : names_(std::move(names)), states_(states) {}

  // "max_size (16MiB)" when set in the file, "commit_max_bytes (8MiB, the default)" otherwise.
  [[nodiscard]] std::string show(std::string_view key) const;

 private:
  std::vector<std::string_view> names_;
  const std::vector<KeyState>& states_;
};

// State shared by one parse across all tables.
struct ParseContext {
  DiagnosticSink& sink;
  // Every "section.key" the schema knows, so a key in the wrong section can be pointed home.
  std::vector<std::string> known_paths;
};

template <typename T>
class Key {
 public:
  using Store = std::function<void(T&, const Value&)>;

  Key(KeySpec spec, Store store) : spec_(std::move(spec)), store_(std::move(store)) {}

  // The default, as YAML text ("1GiB", "batch"); it must pass the key's own checks.
  Key& byDefault(std::string yaml_text) {
    spec_.default_text = std::move(yaml_text);
    return *this;
  }
  // A default computed when parsing; `doc` names it for the docs ("the host name").
  Key& computedDefault(std::function<std::string()> compute, std::string doc) {
    spec_.computed_default = std::move(compute);
    spec_.default_doc = std::move(doc);
    return *this;
  }
  Key& describe(std::string text) {
    spec_.description = std::move(text);
    return *this;
  }
  Key& unit(std::string text) {
    spec_.unit = std::move(text);
    return *this;
  }
  // An extra rule; `doc` says what it requires ("1 to 255 characters of ...").
  Key& check(ValueCheck rule, std::string doc) {
    spec_.check = std::move(rule);
    spec_.check_doc = std::move(doc);
    return *this;
  }
  // Sizes: 0 is allowed below the minimum and means `doc` ("derived from max_size").
  Key& zeroMeans(std::string doc) {
    assert(spec_.type == KeyType::kSize);
    spec_.zero_doc = std::move(doc);
    return *this;
  }

  [[nodiscard]] const KeySpec& spec() const { return spec_; }
  void store(T& target, const Value& value) const { store_(target, value); }

 private:
  KeySpec spec_;
  Store store_;
};

// Key builders. The member's type decides how the value is stored; limits are inclusive.

template <typename T, typename M>
Key<T> stringKey(std::string name, M T::*member) {
  static_assert(std::is_constructible_v<M, const std::string&>);
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kString;
  return Key<T>(std::move(spec),
                [member](T& target, const Value& value) { target.*member = M(value.text); });
}

template <typename T>
Key<T> stringListKey(std::string name, std::vector<std::string> T::*member) {
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kStringList;
  return Key<T>(std::move(spec),
                [member](T& target, const Value& value) { target.*member = value.list; });
}

template <typename T>
Key<T> boolKey(std::string name, bool T::*member) {
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kBool;
  return Key<T>(std::move(spec),
                [member](T& target, const Value& value) { target.*member = value.flag; });
}

template <typename T, typename M>
Key<T> integerKey(std::string name, M T::*member, std::int64_t min, std::int64_t max) {
  static_assert(std::is_integral_v<M> && !std::is_same_v<M, bool>);
  assert(min <= max && std::in_range<M>(min) && std::in_range<M>(max));
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kInteger;
  spec.min_integer = min;
  spec.max_integer = max;
  return Key<T>(std::move(spec), [member](T& target, const Value& value) {
    target.*member = static_cast<M>(value.integer);
  });
}

template <typename T, typename M>
Key<T> sizeKey(std::string name, M T::*member, std::uint64_t min,
               std::uint64_t max = kNoSizeLimit) {
  static_assert(std::is_unsigned_v<M> && !std::is_same_v<M, bool>);
  if (max > std::numeric_limits<M>::max()) max = std::numeric_limits<M>::max();
  assert(min <= max);
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kSize;
  spec.min_size = min;
  spec.max_size = max;
  return Key<T>(std::move(spec), [member](T& target, const Value& value) {
    target.*member = static_cast<M>(value.bytes);
  });
}

// The member may be any std::chrono::duration; values are rounded down to its unit.
template <typename T, typename Rep, typename Period>
Key<T> durationKey(std::string name, std::chrono::duration<Rep, Period> T::*member,
                   std::chrono::nanoseconds min, std::chrono::nanoseconds max) {
  assert(min.count() >= 0 && min <= max);
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kDuration;
  spec.min_duration = min;
  spec.max_duration = max;
  return Key<T>(std::move(spec), [member](T& target, const Value& value) {
    target.*member = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(value.duration);
  });
}

// A key of a member struct offered at its owner's level: `nested(&Owner::retry, key)` reads
// the YAML key into owner.retry, so a group of settings shared by several tables (retry,
// batching) is declared once without a YAML mapping of its own.
template <typename T, typename U>
Key<T> nested(U T::*member, const Key<U>& key) {
  return Key<T>(key.spec(),
                [member, key](T& target, const Value& value) { key.store(target.*member, value); });
}

template <typename E>
struct Choice {
  std::string name;
  E value;
  std::string description;
};

template <typename T, typename E>
Key<T> enumKey(std::string name, E T::*member, std::vector<Choice<E>> choices) {
  static_assert(std::is_enum_v<E>);
  KeySpec spec;
  spec.name = std::move(name);
  spec.type = KeyType::kEnum;
  for (auto& choice : choices) {
    spec.choices.push_back(
        {std::move(choice.name),
         static_cast<std::int64_t>(static_cast<std::underlying_type_t<E>>(choice.value)),
         std::move(choice.description)});
  }
  return Key<T>(std::move(spec), [member](T& target, const Value& value) {
    target.*member = static_cast<E>(static_cast<std::underlying_type_t<E>>(value.integer));
  });
}

// A nested mapping or list under a name in a Table<T>; made by section() and listOf().
template <typename T>
struct Child {
  using Parse = std::function<void(T& target, const Node* value, const std::string& path,
                                   Mark where, ParseContext& context)>;
  using Document = std::function<void(std::string& out, const std::string& path, int level,
                                      const std::string& description)>;
  using Paths = std::function<void(const std::string& path, std::vector<std::string>& out)>;

  std::string name;
  std::string description;
  // `value` is nullptr when the file does not have the key; `where` is the key's position.
  Parse parse;
  Document document;
  Paths paths;  // may be empty: lists add no "section.key" paths
};

// A rule across keys of one table; `keys` are the keys it relates, the first one set in the file
// carries the diagnostic. It runs only when none of them was rejected on its own.
template <typename T>
struct Check {
  using Rule = std::function<std::optional<std::string>(const T&, const CheckContext&)>;
  std::vector<std::string> keys;
  std::string doc;  // the rule for the docs
  Rule rule;
};

template <typename T>
class Table {
 public:
  Table& add(Key<T> key) {
    assert(!has(key.spec().name));
    keys_.push_back(std::move(key));
    return *this;
  }
  Table& add(Child<T> child) {
    assert(!has(child.name));
    children_.push_back(std::move(child));
    return *this;
  }
  Table& check(std::vector<std::string> keys, std::string doc, typename Check<T>::Rule rule) {
    assert(!keys.empty());
    checks_.push_back({std::move(keys), std::move(doc), std::move(rule)});
    return *this;
  }

  [[nodiscard]] const std::vector<Key<T>>& keys() const { return keys_; }

  // Key names, then child names, in table order.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& key : keys_) out.push_back(key.spec().name);
    for (const auto& child : children_) out.push_back(child.name);
    return out;
  }

  // Fills `target` from `node`: a mapping, or null/nullptr for "absent or empty" (all defaults).
  // `path` is this mapping's dotted path ("" at the top); `where` is the position of the key
  // that holds it, used for problems of keys the file does not have. Keys in `reserved` are
  // accepted but left alone (a list's discriminator).
  void parse(T& target, const Node* node, const std::string& path, Mark where,
             ParseContext& context, const std::vector<std::string>& reserved = {}) const {
    std::vector<KeyState> states(keys_.size());
    std::vector<std::pair<const Node*, Mark>> child_values(children_.size(), {nullptr, where});
    const bool is_mapping = node != nullptr && node->isMapping();
    if (node != nullptr && !node->isNull() && !is_mapping) {
      context.sink.report(node->mark, path,
                          fmt::format("expected a mapping with keys such as {}, got {}",
                                      joinNames(names()), describeKind(node->kind)));
    }
    if (where.line == 0 && node != nullptr) where = node->mark;
    std::vector<std::pair<const Node*, const Node*>> repeats;
    if (is_mapping) repeats = readEntries(*node, path, context, reserved, states, child_values);
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      applyKey(keys_[i], target, states[i], path, where, context);
    }
    for (std::size_t i = 0; i < children_.size(); ++i) {
      children_[i].parse(target, child_values[i].first, joinPath(path, children_[i].name),
                         child_values[i].second, context);
    }
    if (node == nullptr || node->isNull() || is_mapping) {
      runChecks(target, states, path, where, context);
    }
    for (const auto& [key, value] : repeats) {
      checkRepeat(target, *key, *value, path, where, context);
    }
  }

  // Appends this table's reference: a heading (unless `heading` is empty), the description, the
  // key table, the rules, then the children one heading level deeper.
  void document(std::string& out, const std::string& path, int level, const std::string& heading,
                const std::string& description) const {
    if (!heading.empty()) {
      out += fmt::format("{} {}\n\n", std::string(static_cast<std::size_t>(level), '#'), heading);
    }
    if (!description.empty()) out += description + "\n\n";
    if (!keys_.empty()) {
      out += kMarkdownKeyHeader;
      for (const auto& key : keys_) {
        out += markdownKeyRow(joinPath(path, key.spec().name), key.spec());
      }
      out += "\n";
    }
    if (!checks_.empty()) {
      out += "Rules across keys:\n\n";
      for (const auto& check : checks_) out += fmt::format("- {}\n", check.doc);
      out += "\n";
    }
    const int child_level = heading.empty() ? level : level + 1;
    for (const auto& child : children_) {
      child.document(out, joinPath(path, child.name), child_level, child.description);
    }
  }

  // Appends the dotted path of every key of this table and its nested sections.
  void collectPaths(const std::string& path, std::vector<std::string>& out) const {
    for (const auto& key : keys_) out.push_back(joinPath(path, key.spec().name));
    for (const auto& child : children_) {
      if (child.paths) child.paths(joinPath(path, child.name), out);
    }
  }

 private:
  [[nodiscard]] bool has(std::string_view name) const {
    for (const auto& key : keys_) {
      if (key.spec().name == name) return true;
    }
    for (const auto& child : children_) {
      if (child.name == name) return true;
    }
    return false;
  }

  [[nodiscard]] std::optional<std::size_t> keyIndex(std::string_view name) const {
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i].spec().name == name) return i;
    }
    return std::nullopt;
  }

  [[nodiscard]] std::optional<std::size_t> childIndex(std::string_view name) const {
    for (std::size_t i = 0; i < children_.size(); ++i) {
      if (children_[i].name == name) return i;
    }
    return std::nullopt;
  }

  // Sorts the mapping's entries into key states and child values; reports keys that are not
  // plain names, unknown keys and repeats. Returns the repeats, whose values are still checked.
  std::vector<std::pair<const Node*, const Node*>> readEntries(
      const Node& node, const std::string& path, ParseContext& context,
      const std::vector<std::string>& reserved, std::vector<KeyState>& states,
      std::vector<std::pair<const Node*, Mark>>& child_values) const {
    std::unordered_map<std::string_view, const Node*> seen;
    std::vector<std::pair<const Node*, const Node*>> repeats;
    for (const auto& [key, value] : node.entries) {
      if (!key->isScalar()) {
        context.sink.report(
            key->mark, path,
            fmt::format("a key must be a plain name, not {}", describeKind(key->kind)));
        continue;
      }
      const std::string key_path = joinPath(path, displayName(key->text));
      const auto [first, inserted] = seen.emplace(key->text, key);
      if (!inserted) {
        context.sink.report(key->mark, key_path,
                            fmt::format("duplicate key: it is already set on line {}; keep one",
                                        first->second->mark.line));
        repeats.emplace_back(key, value);
        continue;
      }
      bool is_reserved = false;
      for (const auto& name : reserved) is_reserved = is_reserved || name == key->text;
      if (is_reserved) continue;
      if (const auto i = keyIndex(key->text)) {
        states[*i].key = key;
        states[*i].value = value;
      } else if (const auto c = childIndex(key->text)) {
        child_values[*c] = {value, key->mark};
      } else {
        reportUnknown(*key, path, key_path, context);
      }
    }
    return repeats;
  }

  // A repeated key is an error already, but a wrong value under it is a second problem the user
  // should hear about in the same run: check it against a scratch copy of the target.
  void checkRepeat(const T& target, const Node& key, const Node& value, const std::string& path,
                   Mark where, ParseContext& context) const {
    if constexpr (std::is_copy_constructible_v<T>) {
      T scratch = target;
      if (const auto i = keyIndex(key.text)) {
        KeyState state;
        state.key = &key;
        state.value = &value;
        applyKey(keys_[*i], scratch, state, path, where, context);
      } else if (const auto c = childIndex(key.text)) {
        children_[*c].parse(scratch, &value, joinPath(path, children_[*c].name), key.mark, context);
      }
    }
  }

  void reportUnknown(const Node& key, const std::string& path, const std::string& key_path,
                     ParseContext& context) const {
    const std::string_view noun = keys_.empty() && !children_.empty() ? "section" : "key";
    if (key.text == "<<") {
      context.sink.report(key.mark, key_path,
                          "YAML merge keys ('<<') are not supported; write the keys out");
      return;
    }
    const std::vector<std::string> candidates = names();
    const std::string suggestion = nearest(key.text, candidates);
    if (!suggestion.empty()) {
      context.sink.report(key.mark, key_path, fmt::format("unknown {}", noun), suggestion);
      return;
    }
    // The right key in the wrong section is a common slip; point it home.
    for (const auto& known : context.known_paths) {
      const std::size_t dot = known.rfind('.');
      if (dot == std::string::npos || known.compare(0, dot, path) == 0) continue;
      const std::string_view name = std::string_view(known).substr(dot + 1);
      if (name.size() == key.text.size() && editDistance(name, key.text) == 0) {
        context.sink.report(key.mark, key_path,
                            fmt::format("unknown {} here; {} is a key of '{}'", noun,
                                        quoteText(key.text), known.substr(0, dot)),
                            known);
        return;
      }
    }
    context.sink.report(
        key.mark, key_path,
        fmt::format("unknown {0}; valid {0}s are {1}", noun, joinNames(candidates, "'")));
  }

  void applyKey(const Key<T>& key, T& target, KeyState& state, const std::string& path, Mark where,
                ParseContext& context) const {
    const KeySpec& spec = key.spec();
    const std::string key_path = joinPath(path, spec.name);
    if (state.value != nullptr) {
      const Node& value = *state.value;
      if (value.isNull()) {
        state.failed = true;
        const bool has_default = spec.default_text || spec.computed_default;
        context.sink.report(state.key->mark, key_path,
                            has_default
                                ? fmt::format("has no value; give {} or remove the key to use the "
                                              "default ({})",
                                              expectedValue(spec), defaultForMessage(spec))
                                : fmt::format("has no value; give {}", expectedValue(spec)));
        return;
      }
      if (spec.type == KeyType::kStringList && value.isSequence()) {
        Value list;
        for (std::size_t i = 0; i < value.items.size(); ++i) {
          const Node& item = *value.items[i];
          const std::string item_path = fmt::format("{}[{}]", key_path, i);
          if (!item.isScalar()) {
            state.failed = true;
            context.sink.report(item.mark, item_path,
                                fmt::format("expected a string, got {}", describeKind(item.kind)));
            continue;
          }
          auto converted = convertValue(spec, item.text);
          if (!converted) {
            state.failed = true;
            context.sink.report(item.mark, item_path, converted.error().message);
            continue;
          }
          list.list.push_back(item.text);
        }
        if (list.list.empty() && !state.failed && !optionalList(spec)) {
          state.failed = true;
          context.sink.report(value.mark, key_path, "the list is empty; give at least one entry");
        }
        if (!state.failed) key.store(target, list);
        return;
      }
      if (!value.isScalar()) {
        state.failed = true;
        context.sink.report(
            value.mark, key_path,
            fmt::format("expected {}, got {}", expectedValue(spec), describeKind(value.kind)));
        return;
      }
      auto converted = convertValue(spec, value.text);
      if (!converted) {
        state.failed = true;
        context.sink.report(value.mark, key_path, converted.error().message,
                            converted.error().suggestion);
        return;
      }
      state.text = value.text;
      key.store(target, *converted);
      return;
    }
    if (spec.computed_default) {
      state.text = spec.computed_default();
    } else if (spec.default_text) {
      state.text = *spec.default_text;
    } else {
      state.failed = true;
      context.sink.report(where, key_path,
                          fmt::format("is missing; it is required ({})", expectedValue(spec)));
      return;
    }
    if (optionalList(spec) && state.text == kEmptyListDefault) {
      key.store(target, Value{});
      return;
    }
    auto converted = convertValue(spec, state.text);
    if (!converted) {
      state.failed = true;
      context.sink.report(
          where, key_path,
          fmt::format("is not set and its default ({}, {}) does not work: {}; "
                      "set it in the file",
                      defaultForMessage(spec), quoteText(state.text), converted.error().message));
      return;
    }
    key.store(target, *converted);
  }

  void runChecks(const T& target, const std::vector<KeyState>& states, const std::string& path,
                 Mark where, ParseContext& context) const {
    std::vector<std::string_view> key_names;
    for (const auto& key : keys_) key_names.push_back(key.spec().name);
    const CheckContext check_context(key_names, states);
    for (const auto& check : checks_) {
      bool usable = true;
      for (const auto& name : check.keys) {
        const auto i = keyIndex(name);
        assert(i.has_value());
        usable = usable && i && !states[*i].failed;
      }
      if (!usable) continue;
      const std::optional<std::string> problem = check.rule(target, check_context);
      if (!problem) continue;
      Mark mark = where;
      std::string key_path = joinPath(path, check.keys.front());
      for (const auto& name : check.keys) {
        const KeyState& state = states[*keyIndex(name)];
        if (state.value != nullptr) {
          mark = state.value->mark;
          key_path = joinPath(path, name);
          break;
        }
      }
      context.sink.report(mark, key_path, *problem);
    }
  }

  std::vector<Key<T>> keys_;
  std::vector<Child<T>> children_;
  std::vector<Check<T>> checks_;
};

// A nested mapping `name:` that fills the member `member` of T with `table`.
template <typename T, typename U>
Child<T> section(const std::string& name, U T::*member, Table<U> table,
                 const std::string& description) {
  auto shared = std::make_shared<const Table<U>>(std::move(table));
  Child<T> child;
  child.name = name;
  child.description = description;
  child.parse = [shared, member](T& target, const Node* value, const std::string& path, Mark where,
                                 ParseContext& context) {
    shared->parse(target.*member, value, path, where, context);
  };
  child.document = [shared](std::string& out, const std::string& path, int level,
                            const std::string& text) {
    shared->document(out, path, level, fmt::format("`{}`", path), text);
  };
  child.paths = [shared](const std::string& path, std::vector<std::string>& out) {
    shared->collectPaths(path, out);
  };
  return child;
}

// One kind of entry of a list made by listOf(): the entries whose discriminator is `type`.
template <typename V>
struct Alternative {
  using Parse = std::function<V(const Node& entry, const std::string& path, ParseContext& context,
                                const std::vector<std::string>& reserved)>;
  using Document = std::function<void(std::string& out, const std::string& path, int level,
                                      const std::string& heading)>;
  std::string type;
  std::string description;
  Parse parse;
  Document document;
};

// Entries of type `type` are parsed with `table` into an Item, then stored in the list as V(item)
// (V is Item itself or, say, a std::variant that holds it).
template <typename V, typename Item>
Alternative<V> alternative(const std::string& type, Table<Item> table,
                           const std::string& description) {
  static_assert(std::is_constructible_v<V, Item&&>);
  auto shared = std::make_shared<const Table<Item>>(std::move(table));
  Alternative<V> alt;
  alt.type = type;
  alt.description = description;
  alt.parse = [shared](const Node& entry, const std::string& path, ParseContext& context,
                       const std::vector<std::string>& reserved) {
    Item item{};
    shared->parse(item, &entry, path, entry.mark, context, reserved);
    return V(std::move(item));
  };
  alt.document = [shared, text = alt.description](std::string& out, const std::string& path,
                                                  int level, const std::string& heading) {
    shared->document(out, path, level, heading, text);
  };
  return alt;
}

// A list `name:` of mappings that fills the std::vector member `member` of T. With a
// `discriminator` (such as "type"), each entry must have that key and its value picks the
// alternative whose table parses the entry; with an empty discriminator there must be exactly one
// alternative. An absent or empty list leaves the vector empty.
template <typename T, typename V>
Child<T> listOf(const std::string& name, std::vector<V> T::*member, std::string discriminator,
                std::vector<Alternative<V>> alternatives, const std::string& description) {
  assert(!alternatives.empty() && (!discriminator.empty() || alternatives.size() == 1));
  auto alts = std::make_shared<const std::vector<Alternative<V>>>(std::move(alternatives));
  std::vector<std::string> types;
  for (const auto& alt : *alts) types.push_back(alt.type);
  Child<T> child;
  child.name = name;
  child.description = description;
  child.parse = [alts, types, member, discriminator](T& target, const Node* value,
                                                     const std::string& path, Mark /*where*/,
                                                     ParseContext& context) {
    auto& list = target.*member;
    list.clear();
    if (value == nullptr || value->isNull()) return;
    if (!value->isSequence()) {
      context.sink.report(
          value->mark, path,
          fmt::format("expected a list of entries, got {}", describeKind(value->kind)));
      return;
    }
    const std::vector<std::string> reserved{discriminator};
    for (std::size_t i = 0; i < value->items.size(); ++i) {
      const Node& entry = *value->items[i];
      const std::string entry_path = fmt::format("{}[{}]", path, i);
      if (!entry.isMapping()) {
        context.sink.report(
            entry.mark, entry_path,
            fmt::format("expected a mapping{}, got {}",
                        discriminator.empty() ? std::string()
                                              : fmt::format(" with a '{}' key", discriminator),
                        describeKind(entry.kind)));
        continue;
      }
      const Alternative<V>* chosen = discriminator.empty() ? &alts->front() : nullptr;
      if (chosen == nullptr) {
        const Node* type = nullptr;
        for (const auto& [key, val] : entry.entries) {
          if (type == nullptr && key->isScalar() && key->text == discriminator) type = val;
        }
        const std::string type_path = joinPath(entry_path, discriminator);
        if (type == nullptr) {
          context.sink.report(entry.mark, entry_path,
                              fmt::format("has no '{}' key; it must be one of {}", discriminator,
                                          joinNames(types, "'")));
          continue;
        }
        if (!type->isScalar()) {
          context.sink.report(type->mark, type_path,
                              fmt::format("expected one of {}, got {}", joinNames(types, "'"),
                                          describeKind(type->kind)));
          continue;
        }
        for (const auto& alt : *alts) {
          if (alt.type == type->text) chosen = &alt;
        }
        if (chosen == nullptr) {
          context.sink.report(type->mark, type_path,
                              fmt::format("unknown {} {}; use one of {}", discriminator,
                                          quoteText(type->text), joinNames(types, "'")),
                              nearest(type->text, types));
          continue;
        }
      }
      list.push_back(chosen->parse(entry, entry_path, context, reserved));
    }
  };
  child.document = [alts, types, discriminator](std::string& out, const std::string& path,
                                                int level, const std::string& text) {
    out += fmt::format("{} `{}`\n\n", std::string(static_cast<std::size_t>(level), '#'), path);
    if (!text.empty()) out += text + "\n\n";
    if (!discriminator.empty()) {
      out += fmt::format("A list of mappings; the `{}` key of each entry selects its keys: {}.\n\n",
                         discriminator, joinNames(types, "`"));
    }
    for (const auto& alt : *alts) {
      const std::string heading =
          discriminator.empty()
              ? fmt::format("`{}` entries", path)
              : fmt::format("`{}` entries with `{}: {}`", path, discriminator, alt.type);
      alt.document(out, path + "[]", level + 1, heading);
    }
  };
  return child;
}

}  // namespace cistern::agent::config
