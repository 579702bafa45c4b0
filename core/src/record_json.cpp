#include "cistern/core/record_json.h"

#include <ctime>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cistern/core/record_meta.h"

namespace cistern {
namespace {

std::string_view text(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::string base64(std::span<const std::byte> in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const auto v = (std::to_integer<std::uint32_t>(in[i]) << 16U) |
                   (std::to_integer<std::uint32_t>(in[i + 1]) << 8U) |
                   std::to_integer<std::uint32_t>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> static_cast<unsigned>(s)) & 63U];
  }
  if (i < in.size()) {
    std::uint32_t v = std::to_integer<std::uint32_t>(in[i]) << 16U;
    if (i + 1 < in.size()) v |= std::to_integer<std::uint32_t>(in[i + 1]) << 8U;
    out += kAlphabet[(v >> 18U) & 63U];
    out += kAlphabet[(v >> 12U) & 63U];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6U) & 63U] : '=';
    out += '=';
  }
  return out;
}

void addPacket(nlohmann::json& j, const RecordView& r) {
  auto meta = decodePacketMeta(r.meta);
  if (meta) {
    j["link_type"] = meta->link_type;
    j["captured_length"] = r.payload.size();
    j["original_length"] = meta->original_length;
  } else {
    j["meta_error"] = meta.error().message;
  }
  j["data_base64"] = base64(r.payload);
}

void addLogLine(nlohmann::json& j, const RecordView& r) {
  auto meta = decodeLogLineMeta(r.meta);
  if (!meta) {
    j["meta_error"] = meta.error().message;
    j["raw"] = text(r.payload);
    return;
  }
  j["path"] = meta->path;
  j["offset"] = meta->offset;
  j["message"] = text(r.payload);
  if ((meta->flags & kLogLineTruncated) != 0) j["truncated"] = true;
  if ((meta->flags & kLogLineSplit) != 0) j["split"] = true;
  if ((meta->flags & kLogLineNoNewline) != 0) j["no_newline"] = true;
}

void addSyslog(nlohmann::json& j, const RecordView& r) {
  const std::string_view raw = text(r.payload);
  auto meta = decodeSyslogMeta(r.meta);
  if (!meta) {
    j["meta_error"] = meta.error().message;
    j["raw"] = raw;
    return;
  }
  j["format"] = syslogFormatName(meta->format);
  if (meta->severity != kNoSeverity) {
    j["facility"] = meta->facility;
    j["severity"] = meta->severity;
  }
  if (meta->timestamp_ns != 0) j["timestamp"] = formatTimestamp(meta->timestamp_ns);
  j["host"] = meta->host;
  j["app"] = meta->app;
  j["procid"] = meta->procid;
  j["msgid"] = meta->msgid;
  j["peer"] = meta->peer;
  j["message"] = meta->message_offset <= raw.size() ? raw.substr(meta->message_offset) : raw;
  j["raw"] = raw;
}

}  // namespace

std::string formatTimestamp(std::int64_t ns) {
  if (ns == 0) return "-";
  constexpr std::int64_t kBillion = 1'000'000'000;
  std::int64_t secs = ns / kBillion;
  std::int64_t frac = ns % kBillion;
  if (frac < 0) {
    frac += kBillion;
    --secs;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

std::string recordToJson(const RecordView& record) {
  nlohmann::json j;
  j["time"] = formatTimestamp(static_cast<std::int64_t>(record.timestamp_ns));
  j["ts_ns"] = record.timestamp_ns;
  j["input"] = record.input;
  j["kind"] = recordKindName(record.kind);
  switch (record.kind) {
    case RecordKind::kPacket:
      addPacket(j, record);
      break;
    case RecordKind::kLogLine:
      addLogLine(j, record);
      break;
    case RecordKind::kSyslog:
      addSyslog(j, record);
      break;
    case RecordKind::kTest:
      j["data_base64"] = base64(record.payload);
      break;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace cistern
