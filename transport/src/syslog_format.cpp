#include "syslog_format.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <span>

#include "cistern/core/record_meta.h"

namespace cistern::transport {
namespace {

// RFC 5424 section 6: field caps.
constexpr std::size_t kMaxHostName = 255;
constexpr std::size_t kMaxAppName = 48;
constexpr std::size_t kMaxProcId = 128;
constexpr std::size_t kMaxMsgId = 32;

constexpr std::uint8_t kFacilityUser = 1;
constexpr std::uint8_t kSeverityNotice = 5;
constexpr std::uint8_t kSeverityInfo = 6;
constexpr std::uint8_t kMaxFacility = 23;
constexpr std::uint8_t kMaxSeverity = 7;

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

void appendNumber(std::string& out, std::uint64_t v, int min_digits = 1) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  const auto n = static_cast<int>(r.ptr - buf.data());
  for (int i = n; i < min_digits; ++i) out.push_back('0');
  out.append(buf.data(), r.ptr);
}

// A header field: PRINTUSASCII only (anything else becomes '_'), at most `max` bytes, NILVALUE
// when empty.
void appendHeaderField(std::string& out, std::string_view value, std::size_t max) {
  if (value.empty()) {
    out.push_back('-');
    return;
  }
  for (const char c : value.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 33 && u <= 126 ? c : '_');
  }
}

// Length of the well-formed UTF-8 sequence (RFC 3629) starting at s[i], or 0 when there is none.
std::size_t utf8Length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  const unsigned char b1 = byte(i + 1);
  if (b1 < lo || b1 > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if ((byte(i + k) & 0xC0U) != 0x80U) return 0;
  }
  return len;
}

// An SD-PARAM value (RFC 5424 section 6.3.3): UTF-8 (ill-formed bytes become U+FFFD) with '"',
// '\' and ']' escaped by a backslash; stops before the character that would exceed `budget`
// bytes, so a cut never splits an escape or a character.
void appendParamValue(std::string& out, std::string_view value, std::size_t budget) {
  std::size_t used = 0;
  std::size_t i = 0;
  while (i < value.size()) {
    const std::size_t len = utf8Length(value, i);
    std::string_view piece = len == 0 ? kReplacementChar : value.substr(i, len);
    const bool escape = len == 1 && (piece[0] == '"' || piece[0] == '\\' || piece[0] == ']');
    const std::size_t need = piece.size() + (escape ? 1 : 0);
    if (used + need > budget) return;
    if (escape) out.push_back('\\');
    out.append(piece);
    used += need;
    i += len == 0 ? 1 : len;
  }
}

// Days since 1970-01-01 to a civil date (proleptic Gregorian), Howard Hinnant's algorithm.
void civilFromDays(std::int64_t z, std::int64_t& year, unsigned& month, unsigned& day) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  day = doy - (153 * mp + 2) / 5 + 1;
  month = mp < 10 ? mp + 3 : mp - 9;
  year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0);
}

std::uint8_t priority(std::uint8_t facility, std::uint8_t severity) {
  if (severity > kMaxSeverity) return kFacilityUser * 8 + kSeverityNotice;
  const std::uint8_t f = facility > kMaxFacility ? kFacilityUser : facility;
  return static_cast<std::uint8_t>(f * 8 + severity);
}

void appendPri(std::string& out, std::uint8_t pri) {
  out.push_back('<');
  appendNumber(out, pri);
  out.append(">1 ");
}

// "udp://192.0.2.1:5514" -> "192.0.2.1", "tls://[::1]:6514" -> "::1".
std::string_view peerHost(std::string_view peer) {
  const auto scheme = peer.find("://");
  if (scheme == std::string_view::npos) return {};
  std::string_view rest = peer.substr(scheme + 3);
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    return close == std::string_view::npos ? std::string_view{} : rest.substr(1, close - 1);
  }
  return rest.substr(0, rest.rfind(':'));
}

// A raw message that still began with a valid PRI: the PRI went into the header, so it is not
// repeated in MSG.
std::string_view withoutPri(std::string_view msg) {
  if (msg.size() < 3 || msg[0] != '<') return msg;
  std::size_t i = 1;
  while (i < msg.size() && i <= 4 && msg[i] >= '0' && msg[i] <= '9') ++i;
  if (i == 1 || i >= msg.size() || msg[i] != '>') return msg;
  return msg.substr(i + 1);
}

std::string_view asText(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void appendMsg(std::string& out, std::string_view msg, std::size_t& msg_start) {
  if (msg.empty()) {
    msg_start = out.size();
    return;
  }
  out.push_back(' ');
  msg_start = out.size();
  out.append(msg);
}

FormatResult formatSyslogRecord(const RecordView& record, std::string& out,
                                std::size_t& msg_start) {
  auto meta = decodeSyslogMeta(record.meta);
  if (!meta) return {FormatOutcome::kCorrupt, false, meta.error().message};
  const std::string_view payload = asText(record.payload);
  const std::size_t offset = std::min<std::size_t>(meta->message_offset, payload.size());
  if (meta->format == SyslogFormat::kRfc5424) {
    out.append(payload);
    msg_start = offset;
    return {};
  }
  appendPri(out, priority(meta->facility, meta->severity));
  const std::int64_t ts =
      meta->timestamp_ns != 0 ? meta->timestamp_ns : static_cast<std::int64_t>(record.timestamp_ns);
  out += rfc3339Micros(ts);
  out.push_back(' ');
  appendHeaderField(out, meta->host.empty() ? peerHost(meta->peer) : meta->host, kMaxHostName);
  out.push_back(' ');
  appendHeaderField(out, meta->app, kMaxAppName);
  out.push_back(' ');
  appendHeaderField(out, meta->procid, kMaxProcId);
  out.push_back(' ');
  appendHeaderField(out, meta->msgid, kMaxMsgId);
  out.append(" -");
  std::string_view msg = payload.substr(offset);
  if (meta->format == SyslogFormat::kRaw && meta->severity != kNoSeverity) msg = withoutPri(msg);
  appendMsg(out, msg, msg_start);
  return {};
}

FormatResult formatLogLine(const RecordView& record, const SyslogFormatOptions& options,
                           std::size_t max_bytes, std::string& out, std::size_t& msg_start) {
  auto meta = decodeLogLineMeta(record.meta);
  if (!meta) return {FormatOutcome::kCorrupt, false, meta.error().message};
  appendPri(out, priority(kFacilityUser, kSeverityInfo));
  out += rfc3339Micros(static_cast<std::int64_t>(record.timestamp_ns));
  out.push_back(' ');
  appendHeaderField(out, options.host_name, kMaxHostName);
  out.push_back(' ');
  appendHeaderField(out, record.input, kMaxAppName);
  out.append(" - - [");
  out.append(kCisternSdId);
  out.append(" path=\"");
  std::string tail = "\" offset=\"";
  appendNumber(tail, meta->offset);
  tail.append("\"]");
  // The path gets what room the message has left, so that cutting the message can never leave
  // the structured data unterminated.
  const std::size_t fixed = out.size() + tail.size();
  appendParamValue(out, meta->path, max_bytes > fixed ? max_bytes - fixed : 0);
  out.append(tail);
  appendMsg(out, asText(record.payload), msg_start);
  return {};
}

}  // namespace

std::string rfc3339Micros(std::int64_t ns) {
  constexpr std::int64_t kNsPerSecond = 1'000'000'000;
  std::int64_t secs = ns / kNsPerSecond;
  std::int64_t frac = ns % kNsPerSecond;
  if (frac < 0) {
    frac += kNsPerSecond;
    --secs;
  }
  constexpr std::int64_t kSecondsPerDay = 86400;
  std::int64_t days = secs / kSecondsPerDay;
  std::int64_t rem = secs % kSecondsPerDay;
  if (rem < 0) {
    rem += kSecondsPerDay;
    --days;
  }
  std::int64_t year = 0;
  unsigned month = 0;
  unsigned day = 0;
  civilFromDays(days, year, month, day);
  std::string out;
  out.reserve(27);
  appendNumber(out, static_cast<std::uint64_t>(year), 4);
  out.push_back('-');
  appendNumber(out, month, 2);
  out.push_back('-');
  appendNumber(out, day, 2);
  out.push_back('T');
  appendNumber(out, static_cast<std::uint64_t>(rem / 3600), 2);
  out.push_back(':');
  appendNumber(out, static_cast<std::uint64_t>(rem / 60 % 60), 2);
  out.push_back(':');
  appendNumber(out, static_cast<std::uint64_t>(rem % 60), 2);
  out.push_back('.');
  appendNumber(out, static_cast<std::uint64_t>(frac / 1000), 6);
  out.push_back('Z');
  return out;
}

FormatResult formatRfc5424(const RecordView& record, const SyslogFormatOptions& options,
                           std::string& out) {
  out.clear();
  const std::size_t max_bytes = std::max(options.max_message_bytes, kMinMessageBytes);
  std::size_t msg_start = 0;
  FormatResult result;
  switch (record.kind) {
    case RecordKind::kSyslog:
      result = formatSyslogRecord(record, out, msg_start);
      break;
    case RecordKind::kLogLine:
      result = formatLogLine(record, options, max_bytes, out, msg_start);
      break;
    default:
      return {FormatOutcome::kSkipped, false, {}};
  }
  if (result.outcome != FormatOutcome::kFormatted) {
    out.clear();
    return result;
  }
  if (out.size() > max_bytes) {
    std::size_t cut = max_bytes;
    // Back off to the start of a character split by the cut (at most three continuation bytes;
    // MSG that is not UTF-8 is cut where it is).
    const auto continuation = [&](std::size_t at) {
      return (static_cast<unsigned char>(out[at]) & 0xC0U) == 0x80U;
    };
    std::size_t back = cut;
    for (int steps = 0; steps < 3 && back > msg_start && continuation(back); ++steps) --back;
    if (!continuation(back)) cut = back;
    out.resize(cut);
    result.truncated = true;
  }
  return result;
}

void appendOctetCounted(std::string& out, std::string_view message) {
  appendNumber(out, message.size());
  out.push_back(' ');
  out.append(message);
}

}  // namespace cistern::transport
