#include "schema.h"

#include <array>
#include <charconv>
#include <system_error>

#include "cistern/core/units.h"

namespace cistern::agent::config {
namespace {

// Longer text is no size, duration, number or choice; refusing it early keeps messages short.
constexpr std::size_t kMaxTypedText = 64;

tl::unexpected<ValueError> reject(std::string message, std::string suggestion = {}) {
  return tl::unexpected(ValueError{std::move(message), std::move(suggestion)});
}

std::string durationText(std::chrono::nanoseconds d) {
  return d.count() == 0 ? std::string("0") : formatDuration(d);
}

std::string integerRange(const KeySpec& spec) {
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  if (spec.min_integer == kMin && spec.max_integer == kMax) return "any whole number";
  if (spec.max_integer == kMax) return fmt::format("at least {}", spec.min_integer);
  if (spec.min_integer == kMin) return fmt::format("at most {}", spec.max_integer);
  return fmt::format("{} to {}", spec.min_integer, spec.max_integer);
}

std::string sizeRange(const KeySpec& spec) {
  std::string range;
  if (spec.min_size == 0 && spec.max_size == kNoSizeLimit) {
    range = "any size";
  } else if (spec.max_size == kNoSizeLimit) {
    range = fmt::format("at least {}", formatSize(spec.min_size));
  } else if (spec.min_size == 0) {
    range = fmt::format("at most {}", formatSize(spec.max_size));
  } else {
    range = fmt::format("{} to {}", formatSize(spec.min_size), formatSize(spec.max_size));
  }
  if (spec.zero_doc.empty()) return range;
  return fmt::format("0 ({}), or {}", spec.zero_doc, range);
}

std::string durationRange(const KeySpec& spec) {
  if (spec.max_duration == std::chrono::nanoseconds::max()) {
    return spec.min_duration.count() == 0
               ? std::string("any duration")
               : fmt::format("at least {}", durationText(spec.min_duration));
  }
  return fmt::format("{} to {}", durationText(spec.min_duration), durationText(spec.max_duration));
}

std::vector<std::string> choiceNames(const KeySpec& spec) {
  std::vector<std::string> names;
  names.reserve(spec.choices.size());
  for (const auto& choice : spec.choices) names.push_back(choice.name);
  return names;
}

tl::expected<Value, ValueError> convertString(std::string_view text) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20U || c == 0x7FU) {
      return reject(fmt::format("{} contains the control character \\x{:02x}", quoteText(text), c));
    }
  }
  Value value;
  value.text = text;
  return value;
}

Value boolean(bool flag) {
  Value value;
  value.flag = flag;
  return value;
}

tl::expected<Value, ValueError> convertBool(std::string_view text) {
  static constexpr std::array<std::string_view, 3> kTrue{"true", "True", "TRUE"};
  static constexpr std::array<std::string_view, 3> kFalse{"false", "False", "FALSE"};
  for (const auto word : kTrue) {
    if (text == word) return boolean(true);
  }
  for (const auto word : kFalse) {
    if (text == word) return boolean(false);
  }
  return reject(fmt::format("{} is not a boolean; use true or false", quoteText(text)));
}

tl::expected<Value, ValueError> convertInteger(const KeySpec& spec, std::string_view text) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  const std::string_view unsigned_part =
      !digits.empty() && digits.front() == '-' ? digits.substr(1) : digits;
  const bool well_formed = !unsigned_part.empty() && text.size() <= kMaxTypedText &&
                           unsigned_part.find_first_not_of("0123456789") == std::string_view::npos;
  if (!well_formed) {
    return reject(
        fmt::format("{} is not a whole number ({})", quoteText(text), integerRange(spec)));
  }
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size() || value < spec.min_integer ||
      value > spec.max_integer) {
    return reject(fmt::format("{} is out of range; use {}", quoteText(text), integerRange(spec)));
  }
  Value converted;
  converted.integer = value;
  return converted;
}

tl::expected<Value, ValueError> convertSize(const KeySpec& spec, std::string_view text) {
  if (text.size() > kMaxTypedText) {
    return reject(fmt::format("{} is not a size such as 512MiB", quoteText(text)));
  }
  const auto parsed = parseSize(text);
  if (!parsed) return reject(parsed.error().message);
  const std::uint64_t bytes = *parsed;
  Value value;
  value.bytes = bytes;
  if (bytes == 0 && !spec.zero_doc.empty()) return value;
  if (bytes < spec.min_size) {
    if (!spec.zero_doc.empty()) {
      return reject(fmt::format("{} is too small; use at least {}, or 0 ({})", quoteText(text),
                                formatSize(spec.min_size), spec.zero_doc));
    }
    return reject(fmt::format("{} is too small; the minimum is {}", quoteText(text),
                              formatSize(spec.min_size)));
  }
  if (bytes > spec.max_size) {
    return reject(fmt::format("{} is too large; the maximum is {}", quoteText(text),
                              formatSize(spec.max_size)));
  }
  return value;
}

tl::expected<Value, ValueError> convertDuration(const KeySpec& spec, std::string_view text) {
  if (text.size() > kMaxTypedText) {
    return reject(fmt::format("{} is not a duration such as 250ms", quoteText(text)));
  }
  std::chrono::nanoseconds duration{0};
  if (text != "0") {  // zero needs no unit
    const auto parsed = parseDuration(text);
    if (!parsed) return reject(parsed.error().message);
    duration = *parsed;
  }
  if (duration < spec.min_duration) {
    return reject(fmt::format("{} is too short; the minimum is {}", quoteText(text),
                              durationText(spec.min_duration)));
  }
  if (duration > spec.max_duration) {
    return reject(fmt::format("{} is too long; the maximum is {}", quoteText(text),
                              durationText(spec.max_duration)));
  }
  Value value;
  value.duration = duration;
  return value;
}

tl::expected<Value, ValueError> convertEnum(const KeySpec& spec, std::string_view text) {
  for (const auto& choice : spec.choices) {
    if (choice.name == text) {
      Value value;
      value.integer = choice.value;
      return value;
    }
  }
  const std::vector<std::string> names = choiceNames(spec);
  return reject(fmt::format("{} is not one of {}", quoteText(text), joinNames(names)),
                nearest(text, names));
}

std::string escapeCell(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string typeCell(const KeySpec& spec) {
  switch (spec.type) {
    case KeyType::kString:
      return "string";
    case KeyType::kBool:
      return "boolean";
    case KeyType::kInteger:
      return spec.unit.empty() ? std::string("integer") : fmt::format("integer ({})", spec.unit);
    case KeyType::kSize:
      return "size";
    case KeyType::kDuration:
      return "duration";
    case KeyType::kEnum:
      return "enum";
    case KeyType::kStringList:
      return "list of strings";
  }
  return "?";
}

std::string defaultCell(const KeySpec& spec) {
  if (spec.computed_default) return spec.default_doc;
  if (spec.default_text) return fmt::format("`{}`", *spec.default_text);
  return "required";
}

std::string allowedCell(const KeySpec& spec) {
  std::string allowed;
  switch (spec.type) {
    case KeyType::kString:
      return spec.check_doc.empty() ? std::string("any text") : spec.check_doc;
    case KeyType::kBool:
      allowed = "`true`, `false`";
      break;
    case KeyType::kInteger:
      allowed = integerRange(spec);
      break;
    case KeyType::kSize:
      allowed = sizeRange(spec);
      break;
    case KeyType::kDuration:
      allowed = durationRange(spec);
      break;
    case KeyType::kEnum:
      allowed = joinNames(choiceNames(spec), "`");
      break;
    case KeyType::kStringList:
      return spec.check_doc.empty() ? std::string("one or more strings")
                                    : "one or more strings, each " + spec.check_doc;
  }
  if (!spec.check_doc.empty()) allowed += "; " + spec.check_doc;
  return allowed;
}

std::string descriptionCell(const KeySpec& spec) {
  std::string text = spec.description;
  for (const auto& choice : spec.choices) {
    if (!choice.description.empty()) {
      text += fmt::format("<br>`{}`: {}", choice.name, choice.description);
    }
  }
  return text;
}

}  // namespace

tl::expected<Value, ValueError> convertValue(const KeySpec& spec, std::string_view text) {
  tl::expected<Value, ValueError> value = reject("unknown key type");
  switch (spec.type) {
    case KeyType::kString:
      value = convertString(text);
      break;
    case KeyType::kBool:
      value = convertBool(text);
      break;
    case KeyType::kInteger:
      value = convertInteger(spec, text);
      break;
    case KeyType::kSize:
      value = convertSize(spec, text);
      break;
    case KeyType::kDuration:
      value = convertDuration(spec, text);
      break;
    case KeyType::kEnum:
      value = convertEnum(spec, text);
      break;
    case KeyType::kStringList:
      value = convertString(text);
      if (value) value->list.push_back(value->text);
      break;
  }
  if (value && spec.check) {
    if (auto problem = spec.check(*value)) return reject(std::move(*problem));
  }
  return value;
}

std::string expectedValue(const KeySpec& spec) {
  switch (spec.type) {
    case KeyType::kString:
      return "a string";
    case KeyType::kBool:
      return "true or false";
    case KeyType::kInteger:
      return fmt::format("a whole number ({})", integerRange(spec));
    case KeyType::kSize:
      return "a size such as 512MiB";
    case KeyType::kDuration:
      return "a duration such as 250ms";
    case KeyType::kEnum:
      return fmt::format("one of {}", joinNames(choiceNames(spec)));
    case KeyType::kStringList:
      return "a list of strings";
  }
  return "a value";
}

std::string defaultForMessage(const KeySpec& spec) {
  if (spec.computed_default) return spec.default_doc;
  if (spec.default_text) return quoteText(*spec.default_text);
  return "none";
}

std::string markdownKeyRow(std::string_view path, const KeySpec& spec) {
  return fmt::format("| `{}` | {} | {} | {} | {} |\n", path, escapeCell(typeCell(spec)),
                     escapeCell(defaultCell(spec)), escapeCell(allowedCell(spec)),
                     escapeCell(descriptionCell(spec)));
}

std::string CheckContext::show(std::string_view key) const {
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] != key) continue;
    const KeyState& state = states_[i];
    if (state.key != nullptr) return fmt::format("{} ({})", key, displayName(state.text));
    return fmt::format("{} ({}, the default)", key, displayName(state.text));
  }
  assert(false && "CheckContext::show() asked for a key outside the check's table");
  return std::string(key);
}

}  // namespace cistern::agent::config
