#include "syslog_parse.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>

namespace cistern::capture {
namespace {

constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
constexpr std::int64_t kNanosPerDay = 86'400 * kNanosPerSecond;
// Timestamps further than this from the epoch (about year 2255) do not fit in i64 nanoseconds.
constexpr std::int64_t kMaxAbsSeconds = 9'000'000'000;
constexpr int kMaxFractionDigits = 9;
constexpr std::size_t kMaxOctetCountDigits = 10;

// RFC 5424 6.2 field limits; RFC 3164 tags and pids get the APP-NAME and PROCID limits too, which
// also keeps the encoded metadata far below its 64 KiB bound.
constexpr std::size_t kMaxHost = 255;
constexpr std::size_t kMaxApp = 48;
constexpr std::size_t kMaxProcId = 128;
constexpr std::size_t kMaxMsgId = 32;
constexpr std::size_t kMaxSdName = 32;

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

bool isDigit(char c) noexcept { return c >= '0' && c <= '9'; }
int digitValue(char c) noexcept { return c - '0'; }
bool isPrintUsAscii(char c) noexcept { return c >= 33 && c <= 126; }
bool isSdNameChar(char c) noexcept { return isPrintUsAscii(c) && c != '=' && c != ']' && c != '"'; }

// A read position in a message; every accessor checks the bound.
class Cursor {
 public:
  explicit Cursor(std::string_view s) noexcept : s_(s) {}

  [[nodiscard]] bool atEnd() const noexcept { return pos_ >= s_.size(); }
  [[nodiscard]] std::size_t pos() const noexcept { return pos_; }
  void seek(std::size_t pos) noexcept { pos_ = std::min(pos, s_.size()); }
  // The current byte; call only when !atEnd().
  [[nodiscard]] char cur() const noexcept { return s_[pos_]; }
  void advance() noexcept {
    if (!atEnd()) ++pos_;
  }
  [[nodiscard]] bool peekIs(char c) const noexcept { return !atEnd() && s_[pos_] == c; }
  [[nodiscard]] bool peekDigit() const noexcept { return !atEnd() && isDigit(s_[pos_]); }
  bool consume(char c) noexcept {
    if (!peekIs(c)) return false;
    ++pos_;
    return true;
  }
  bool consume(std::string_view lit) noexcept {
    if (s_.size() - pos_ < lit.size() || s_.compare(pos_, lit.size(), lit) != 0) return false;
    pos_ += lit.size();
    return true;
  }
  // Exactly `n` decimal digits.
  bool fixedDigits(int n, int& value) noexcept {
    const auto count = static_cast<std::size_t>(n);
    if (s_.size() - pos_ < count) return false;
    int v = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const char c = s_[pos_ + i];
      if (!isDigit(c)) return false;
      v = v * 10 + digitValue(c);
    }
    pos_ += count;
    value = v;
    return true;
  }
  // Advances over bytes satisfying `pred`; returns them.
  template <typename Pred>
  std::string_view run(Pred pred) noexcept {
    const std::size_t start = pos_;
    while (!atEnd() && pred(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

struct DateTime {
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  std::int64_t fraction_ns = 0;
  int offset_seconds = 0;  // local time minus UTC
};

std::optional<std::int64_t> toUnixNanos(const DateTime& t) noexcept {
  using std::chrono::day;
  using std::chrono::month;
  using std::chrono::year;
  if (t.month < 1 || t.month > 12 || t.day < 1 || t.day > 31) return std::nullopt;
  const std::chrono::year_month_day ymd{year{t.year}, month{static_cast<unsigned>(t.month)},
                                        day{static_cast<unsigned>(t.day)}};
  // Second 60 is a leap second; it lands on the next minute's first second.
  if (!ymd.ok() || t.hour > 23 || t.minute > 59 || t.second > 60) return std::nullopt;
  const auto days =
      static_cast<std::int64_t>(std::chrono::sys_days{ymd}.time_since_epoch().count());
  const std::int64_t seconds = days * 86'400 + std::int64_t{t.hour} * 3'600 +
                               std::int64_t{t.minute} * 60 + t.second - t.offset_seconds;
  if (seconds > kMaxAbsSeconds || seconds < -kMaxAbsSeconds) return std::nullopt;
  return seconds * kNanosPerSecond + t.fraction_ns;
}

// "." 1*9DIGIT, when present; false when the dot has no digits or more than 9.
bool parseFraction(Cursor& c, std::int64_t& fraction_ns) noexcept {
  fraction_ns = 0;
  if (!c.consume('.')) return true;
  int digits = 0;
  while (c.peekDigit()) {
    if (digits == kMaxFractionDigits) return false;
    fraction_ns = fraction_ns * 10 + digitValue(c.cur());
    ++digits;
    c.advance();
  }
  if (digits == 0) return false;
  for (; digits < kMaxFractionDigits; ++digits) fraction_ns *= 10;
  return true;
}

bool parseTimeOfDay(Cursor& c, DateTime& t) noexcept {
  return c.fixedDigits(2, t.hour) && c.consume(':') && c.fixedDigits(2, t.minute) &&
         c.consume(':') && c.fixedDigits(2, t.second) && parseFraction(c, t.fraction_ns);
}

// RFC 3339 as RFC 5424 6.2.3 restricts it: FULL-DATE "T" PARTIAL-TIME TIME-OFFSET. Lower-case
// 't' and 'z' (allowed by RFC 3339 5.6) are accepted too.
bool parseRfc3339(Cursor& c, std::int64_t& ns) noexcept {
  DateTime t;
  if (!c.fixedDigits(4, t.year) || !c.consume('-') || !c.fixedDigits(2, t.month) ||
      !c.consume('-') || !c.fixedDigits(2, t.day)) {
    return false;
  }
  if (!c.consume('T') && !c.consume('t')) return false;
  if (!parseTimeOfDay(c, t)) return false;
  if (!c.consume('Z') && !c.consume('z')) {
    int sign = 0;
    if (c.consume('+')) {
      sign = 1;
    } else if (c.consume('-')) {
      sign = -1;
    } else {
      return false;
    }
    int hours = 0;
    int minutes = 0;
    if (!c.fixedDigits(2, hours) || !c.consume(':') || !c.fixedDigits(2, minutes) || hours > 23 ||
        minutes > 59) {
      return false;
    }
    t.offset_seconds = sign * (hours * 3'600 + minutes * 60);
  }
  const auto v = toUnixNanos(t);
  if (!v) return false;
  ns = *v;
  return true;
}

// "Mmm dd hh:mm:ss" (RFC 3164 4.1.2), a day below 10 padded with a space or not. With no year in
// the message, the year is the one that puts it at most a day after `now_ns`.
bool parseBsdTimestamp(Cursor& c, std::int64_t now_ns, std::int64_t& ns) noexcept {
  DateTime t;
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (c.consume(kMonths[i])) {
      t.month = static_cast<int>(i) + 1;
      break;
    }
  }
  if (t.month == 0 || !c.consume(' ')) return false;
  c.consume(' ');
  if (!c.peekDigit()) return false;
  t.day = digitValue(c.cur());
  c.advance();
  if (c.peekDigit()) {
    t.day = t.day * 10 + digitValue(c.cur());
    c.advance();
  }
  if (!c.consume(' ') || !parseTimeOfDay(c, t)) return false;

  using namespace std::chrono;
  const auto now_days = floor<days>(sys_time<nanoseconds>(nanoseconds(now_ns)));
  const int this_year = static_cast<int>(year_month_day{now_days}.year());
  const bool can_add_day = now_ns <= std::numeric_limits<std::int64_t>::max() - kNanosPerDay;
  for (const int candidate : {this_year, this_year - 1}) {
    t.year = candidate;
    const auto v = toUnixNanos(t);
    if (!v) continue;  // Feb 29 outside a leap year
    if (candidate == this_year && can_add_day && *v > now_ns + kNanosPerDay) continue;
    ns = *v;
    return true;
  }
  return false;
}

// NILVALUE or 1*max PRINTUSASCII (RFC 5424 6.2.4 - 6.2.7); NILVALUE yields an empty view.
bool headerField(Cursor& c, std::size_t max, std::string_view& out) noexcept {
  const std::string_view v = c.run(isPrintUsAscii);
  if (v.empty() || v.size() > max) return false;
  out = v == "-" ? std::string_view() : v;
  return true;
}

bool sdName(Cursor& c) noexcept {
  const std::string_view v = c.run(isSdNameChar);
  return !v.empty() && v.size() <= kMaxSdName;
}

// 1*SD-ELEMENT (RFC 5424 6.3).
bool parseStructuredData(Cursor& c) noexcept {
  if (!c.peekIs('[')) return false;
  while (c.consume('[')) {
    if (!sdName(c)) return false;
    while (c.consume(' ')) {
      if (!sdName(c) || !c.consume('=') || !c.consume('"')) return false;
      // PARAM-VALUE ends at the first unescaped '"'; a backslash escapes the byte after it.
      for (;;) {
        if (c.atEnd()) return false;
        const char ch = c.cur();
        c.advance();
        if (ch == '"') break;
        if (ch == '\\') {
          if (c.atEnd()) return false;
          c.advance();
        }
      }
    }
    if (!c.consume(']')) return false;
  }
  return true;
}

std::string_view slice(std::string_view s, std::size_t from, std::size_t to) noexcept {
  return s.substr(from, to - from);
}

// After PRI: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG].
bool parse5424(std::string_view msg, Cursor c, ParsedSyslog& out) noexcept {
  if (!c.consume('1') || !c.consume(' ')) return false;
  std::int64_t ts = 0;
  if (!c.consume('-') && !parseRfc3339(c, ts)) return false;
  ParsedSyslog p = out;
  if (!c.consume(' ') || !headerField(c, kMaxHost, p.host) || !c.consume(' ') ||
      !headerField(c, kMaxApp, p.app) || !c.consume(' ') || !headerField(c, kMaxProcId, p.procid) ||
      !c.consume(' ') || !headerField(c, kMaxMsgId, p.msgid) || !c.consume(' ')) {
    return false;
  }
  const std::size_t sd_start = c.pos();
  if (!c.consume('-')) {
    if (!parseStructuredData(c)) return false;
    p.structured_data = slice(msg, sd_start, c.pos());
  }
  if (c.atEnd()) {
    p.message_offset = msg.size();
  } else {
    if (!c.consume(' ')) return false;
    c.consume(kUtf8Bom);
    p.message_offset = c.pos();
  }
  p.format = SyslogFormat::kRfc5424;
  p.timestamp_ns = ts;
  out = p;
  return true;
}

// TAG ["[" PID "]"] ":" [SP] at the cursor; consumes nothing and returns false when there is none.
bool parseTag(Cursor& c, std::string_view& app, std::string_view& procid) noexcept {
  const std::size_t start = c.pos();
  const std::string_view tag =
      c.run([](char ch) { return isPrintUsAscii(ch) && ch != '[' && ch != ':'; });
  std::string_view pid;
  bool ok = !tag.empty() && tag.size() <= kMaxApp;
  if (ok && c.consume('[')) {
    pid = c.run([](char ch) { return isPrintUsAscii(ch) && ch != ']'; });
    ok = c.consume(']') && !pid.empty() && pid.size() <= kMaxProcId;
  }
  if (!ok || !c.consume(':')) {
    c.seek(start);
    return false;
  }
  c.consume(' ');
  app = tag;
  procid = pid;
  return true;
}

// After PRI: TIMESTAMP [SP HOSTNAME] [SP TAG[PID]:] [SP] MSG.
bool parse3164(std::string_view msg, Cursor c, std::int64_t now_ns, ParsedSyslog& out) noexcept {
  std::int64_t ts = 0;
  if (c.peekDigit() ? !parseRfc3339(c, ts) : !parseBsdTimestamp(c, now_ns, ts)) return false;
  ParsedSyslog p = out;
  p.format = SyslogFormat::kRfc3164;
  p.timestamp_ns = ts;
  if (c.atEnd()) {
    p.message_offset = msg.size();
    out = p;
    return true;
  }
  if (!c.consume(' ')) return false;

  const std::size_t word_start = c.pos();
  const std::string_view word = c.run([](char ch) { return ch != ' '; });
  const bool word_is_tag =
      !word.empty() && (word.back() == ':' || word.find('[') != std::string_view::npos);
  const bool word_is_host =
      !word_is_tag && !word.empty() && word.size() <= kMaxHost &&
      std::all_of(word.begin(), word.end(), [](char ch) { return isPrintUsAscii(ch); });
  if (word_is_host) {
    p.host = word;
    c.consume(' ');
  } else {
    c.seek(word_start);
  }
  parseTag(c, p.app, p.procid);
  p.message_offset = c.pos();
  out = p;
  return true;
}

bool parsePri(Cursor& c, int& pri) noexcept {
  if (!c.consume('<')) return false;
  int value = 0;
  int digits = 0;
  while (c.peekDigit()) {
    if (digits == 3) return false;
    value = value * 10 + digitValue(c.cur());
    ++digits;
    c.advance();
  }
  if (digits == 0 || !c.consume('>') || value > 191) return false;
  pri = value;
  return true;
}

}  // namespace

ParsedSyslog parseSyslog(std::string_view msg, std::int64_t now_ns) noexcept {
  ParsedSyslog out;
  Cursor c(msg);
  int pri = 0;
  if (!parsePri(c, pri)) return out;
  out.facility = static_cast<std::uint8_t>(pri / 8);
  out.severity = static_cast<std::uint8_t>(pri % 8);
  ParsedSyslog parsed = out;
  if (parse5424(msg, c, parsed)) return parsed;
  parsed = out;
  if (parse3164(msg, c, now_ns, parsed)) return parsed;
  return out;
}

std::string_view trimMessage(std::string_view msg) noexcept {
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r' || msg.back() == '\0')) {
    msg.remove_suffix(1);
  }
  return msg;
}

StreamFramer::StreamFramer(std::size_t max_message_bytes) noexcept
    : max_(std::max<std::size_t>(max_message_bytes, 1)) {}

void StreamFramer::append(std::string_view bytes) { buf_.append(bytes); }

void StreamFramer::compact() {
  buf_.erase(0, pos_);
  scanned_ = scanned_ > pos_ ? scanned_ - pos_ : 0;
  pos_ = 0;
}

std::string_view StreamFramer::message(const Frame& frame) const noexcept {
  return std::string_view(buf_).substr(frame.offset, frame.size);
}

bool StreamFramer::midFrame() const noexcept {
  return error_.empty() && mode_ == Mode::kFrameStart && pos_ < buf_.size();
}

StreamFramer::Next StreamFramer::fail(std::string message) {
  error_ = std::move(message);
  return Next::kError;
}

StreamFramer::Next StreamFramer::next(Frame& out) {
  if (!error_.empty()) return Next::kError;
  // The tail of a cut message is skipped here, as it arrives, so it is never buffered whole.
  if (mode_ == Mode::kSkipOctets) {
    const std::uint64_t n = std::min<std::uint64_t>(skip_, buf_.size() - pos_);
    pos_ += n;
    skip_ -= n;
    if (skip_ > 0) return Next::kNeedMore;
    mode_ = Mode::kFrameStart;
  }
  if (mode_ == Mode::kDiscardLine) {
    const std::size_t lf = buf_.find('\n', pos_);
    if (lf == std::string::npos) {
      pos_ = buf_.size();
      return Next::kNeedMore;
    }
    pos_ = lf + 1;
    mode_ = Mode::kFrameStart;
  }
  scanned_ = std::max(scanned_, pos_);
  if (pos_ == buf_.size()) return Next::kNeedMore;

  if (isDigit(buf_[pos_])) {
    if (buf_[pos_] == '0') return fail("octet count starts with 0");
    std::uint64_t len = 0;
    std::size_t i = pos_;
    for (; i < buf_.size() && isDigit(buf_[i]); ++i) {
      if (i - pos_ == kMaxOctetCountDigits) return fail("octet count has more than 10 digits");
      len = len * 10 + static_cast<std::uint64_t>(digitValue(buf_[i]));
    }
    if (i == buf_.size()) return Next::kNeedMore;
    if (buf_[i] != ' ') return fail("octet count is not followed by a space");
    const std::size_t start = i + 1;
    const std::uint64_t keep = std::min<std::uint64_t>(len, max_);
    if (buf_.size() - start < keep) return Next::kNeedMore;
    out = Frame{start, keep, len > max_};
    pos_ = start + keep;
    scanned_ = pos_;
    if (len > max_) {
      mode_ = Mode::kSkipOctets;
      skip_ = len - max_;
    }
    return Next::kFrame;
  }

  // LF framing: look for the terminator within max_ + 1 bytes only, so that a line without one
  // is cut at max_ bytes instead of being buffered without bound.
  const std::size_t avail = buf_.size() - pos_;
  const std::size_t limit = avail > max_ ? pos_ + max_ + 1 : buf_.size();
  if (scanned_ < limit) {
    const void* lf = std::memchr(buf_.data() + scanned_, '\n', limit - scanned_);
    if (lf != nullptr) {
      const auto at = static_cast<std::size_t>(static_cast<const char*>(lf) - buf_.data());
      out = Frame{pos_, at - pos_, false};
      pos_ = at + 1;
      scanned_ = pos_;
      return Next::kFrame;
    }
    scanned_ = limit;
  }
  if (avail > max_) {
    out = Frame{pos_, max_, true};
    pos_ += max_;
    scanned_ = pos_;
    mode_ = Mode::kDiscardLine;
    return Next::kFrame;
  }
  return Next::kNeedMore;
}

}  // namespace cistern::capture
