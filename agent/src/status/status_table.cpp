#include "status_table.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cistern/core/units.h"

namespace cistern::agent {
namespace {

using Json = nlohmann::json;
constexpr const char* kNone = "-";

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Control characters (ESC above all) become spaces and line breaks "; ": a last_error can carry
// a remote server's text, and the table goes to a terminal.
std::string printable(std::string_view s) {
  while (!s.empty() && static_cast<unsigned char>(s.back()) <= 0x20U) s.remove_suffix(1);
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "; ";
    } else {
      out += u < 0x20U || u == 0x7FU ? ' ' : c;
    }
  }
  return out;
}

const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const Json& objectAt(const Json& object, const char* key) {
  static const Json kEmpty = Json::object();
  const Json* value = member(object, key);
  return value != nullptr && value->is_object() ? *value : kEmpty;
}

std::optional<double> number(const Json& object, const char* key) {
  const Json* value = member(object, key);
  if (value == nullptr || !value->is_number()) return std::nullopt;
  return value->get<double>();
}

std::string formatNumber(const Json& value) {
  if (value.is_number_unsigned()) return std::to_string(value.get<std::uint64_t>());
  if (value.is_number_integer()) return std::to_string(value.get<std::int64_t>());
  const double d = value.get<double>();
  if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 1e15) {
    return fmt::format("{:.0f}", d);
  }
  return fmt::format("{:.1f}", d);
}

// Any scalar as text, "-" for missing, null, empty and structured values.
std::string text(const Json& object, const char* key) {
  const Json* value = member(object, key);
  if (value == nullptr) return kNone;
  if (value->is_string()) {
    const auto& s = value->get_ref<const std::string&>();
    return s.empty() ? kNone : printable(s);
  }
  if (value->is_number()) return formatNumber(*value);
  if (value->is_boolean()) return value->get<bool>() ? "yes" : "no";
  return kNone;
}

// "45s", "3m12s", "1h02m03s", "2d03h": exact enough for an operator, short enough for a column.
std::string formatAge(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return kNone;
  const auto s = static_cast<std::uint64_t>(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}d{:02}h", s / 86400, s / 3600 % 24);
}

std::string age(const Json& object, const char* key) {
  const auto seconds = number(object, key);
  return seconds ? formatAge(*seconds) : kNone;
}

std::string size(const Json& object, const char* key) {
  const auto bytes = number(object, key);
  if (!bytes || *bytes < 0) return kNone;
  return formatSize(static_cast<std::uint64_t>(*bytes));
}

// Left-aligned columns two spaces apart; the last column is not padded.
std::string formatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    out += line;
    out += '\n';
  }
  return out;
}

// The sum of the counters whose name matches, or "-" when none does.
std::string sumCounters(const Json& counters, bool (*matches)(std::string_view)) {
  bool any = false;
  double total = 0;
  for (const auto& item : counters.items()) {
    const std::string& name = item.key();
    if (name.rfind("bytes_", 0) == 0 || !matches(name)) continue;
    // null: the source cannot know it (e.g. drops counted by the interface, on some drivers)
    if (!item.value().is_number()) continue;
    any = true;
    total += item.value().get<double>();
  }
  return any ? formatNumber(Json(total)) : kNone;
}

// "finished" (a file read to its end), "failed", "running", from the flags the runtime reports.
std::string inputState(const Json& input) {
  const Json* finished = member(input, "finished");
  if (finished != nullptr && finished->is_boolean() && finished->get<bool>()) return "finished";
  const Json* healthy = member(input, "healthy");
  if (healthy == nullptr || !healthy->is_boolean()) return kNone;
  return healthy->get<bool>() ? "running" : "failed";
}

std::vector<std::string> inputRow(const Json& input) {
  const Json& counters = objectAt(input, "counters");
  return {
      text(input, "name"),
      text(input, "type"),
      inputState(input),
      sumCounters(
          counters,
          [](std::string_view n) { return endsWith(n, "_received") || endsWith(n, "_read"); }),
      sumCounters(counters, [](std::string_view n) { return endsWith(n, "_stored"); }),
      sumCounters(counters,
                  [](std::string_view n) {
                    return endsWith(n, "_dropped") || n.find("_dropped_") != std::string_view::npos;
                  }),
      sumCounters(
          counters,
          [](std::string_view n) { return endsWith(n, "_errors") || endsWith(n, "_failures"); }),
      text(input, "problem")};
}

std::vector<std::string> outputRow(const Json& output) {
  const Json& counters = objectAt(output, "counters");
  const auto rate = number(counters, "drain_rate");
  return {text(output, "name"),
          text(output, "type"),
          text(output, "state"),
          text(output, "endpoint"),
          text(counters, "records_acked"),
          text(objectAt(output, "buffer"), "pending_records"),
          rate && *rate > 0 ? formatSize(static_cast<std::uint64_t>(*rate)) + "/s" : kNone,
          text(output, "last_error")};
}

std::string agentSection(const Json& agent) {
  std::string out =
      fmt::format("agent    {}  version {}  host {}  up {}\n", text(agent, "id"),
                  text(agent, "version"), text(agent, "host"), age(agent, "uptime_s"));
  out += fmt::format("         data dir {}\n", text(agent, "data_dir"));
  return out;
}

std::string healthSection(const Json& status) {
  const Json* health = member(status, "health");
  if (health == nullptr || !health->is_object()) return {};
  const Json* ok = member(*health, "ok");
  const std::string verdict =
      ok == nullptr || !ok->is_boolean() ? kNone : (ok->get<bool>() ? "ok" : "NOT OK");
  const std::string reason = text(*health, "reason");
  return reason == kNone ? fmt::format("health   {}\n", verdict)
                         : fmt::format("health   {}: {}\n", verdict, reason);
}

std::string bufferSection(const Json& buffer) {
  std::string fill;
  const auto used = number(buffer, "used_bytes");
  const auto max = number(buffer, "max_size");
  if (used && max && *max > 0) fill = fmt::format(" ({:.1f}%)", 100.0 * *used / *max);
  std::string oldest = text(buffer, "oldest_time");
  if (const std::string ago = age(buffer, "oldest_age_s"); ago != kNone) {
    oldest += " (" + ago + " ago)";
  }
  std::string out = fmt::format("buffer   {} frames, {} records, {} used of {}{}, oldest {}\n",
                                text(buffer, "frames"), text(buffer, "records"),
                                size(buffer, "used_bytes"), size(buffer, "max_size"), fill, oldest);
  out += fmt::format(
      "         dropped: {} records evicted unsent, {} refused (queue full), {} (map full); {} "
      "corrupt frames seen\n",
      text(buffer, "evicted_records"), text(buffer, "refused_queue_full"),
      text(buffer, "dropped_map_full"), text(buffer, "corrupt_frames_seen"));
  if (const Json* blocked = member(buffer, "writer_blocked");
      blocked != nullptr && blocked->is_boolean() && blocked->get<bool>()) {
    out += "         FULL: the writer waits for outputs to acknowledge (when_full: block)\n";
  }
  return out;
}

std::string listSection(const Json& status, const char* key, std::vector<std::string> header,
                        std::vector<std::string> (*row)(const Json&)) {
  const Json* list = member(status, key);
  std::vector<std::vector<std::string>> rows{std::move(header)};
  if (list != nullptr && list->is_array()) {
    for (const Json& entry : *list) rows.push_back(row(entry));
  }
  if (rows.size() == 1) return fmt::format("{}: none\n", key);
  return formatTable(rows);
}

std::string opampSection(const Json& status) {
  const Json* opamp = member(status, "opamp");
  if (opamp == nullptr || !opamp->is_object()) return "opamp    -\n";
  if (const Json* enabled = member(*opamp, "enabled");
      enabled != nullptr && enabled->is_boolean() && !enabled->get<bool>()) {
    return "opamp    disabled\n";
  }
  std::string report = text(*opamp, "last_report_time");
  if (const std::string ago = age(*opamp, "last_report_age_s"); ago != kNone) {
    report += " (" + ago + " ago)";
  }
  std::string out = fmt::format("opamp    {}  server {}  last report {}\n", text(*opamp, "state"),
                                text(*opamp, "endpoint"), report);
  out += fmt::format("         remote config {} (hash {})", text(*opamp, "remote_config_status"),
                     text(*opamp, "remote_config_hash"));
  if (const std::string error = text(*opamp, "remote_config_error"); error != kNone) {
    out += ": " + error;
  }
  out += '\n';
  if (const std::string error = text(*opamp, "last_error"); error != kNone) {
    out += fmt::format("         last error {}\n", error);
  }
  return out;
}

}  // namespace

Result<std::string> renderStatusTable(std::string_view status_json) {
  const Json status = Json::parse(status_json, nullptr, /*allow_exceptions=*/false);
  if (status.is_discarded()) return fail(ErrorCode::kCorrupt, "the status is not valid JSON");
  if (!status.is_object()) return fail(ErrorCode::kCorrupt, "the status is not a JSON object");
  std::string out = agentSection(objectAt(status, "agent"));
  out += healthSection(status);
  out += bufferSection(objectAt(status, "buffer"));
  out += '\n';
  out += listSection(
      status, "inputs",
      {"INPUT", "TYPE", "STATE", "RECEIVED", "STORED", "DROPPED", "ERRORS", "LAST ERROR"},
      &inputRow);
  out += '\n';
  out += listSection(
      status, "outputs",
      {"OUTPUT", "TYPE", "STATE", "ENDPOINT", "ACKED", "PENDING", "DRAIN RATE", "LAST ERROR"},
      &outputRow);
  out += '\n';
  out += opampSection(status);
  return out;
}

}  // namespace cistern::agent
