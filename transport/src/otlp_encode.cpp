#include "otlp_encode.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cistern/core/bytes.h"
#include "cistern/core/record.h"
#include "cistern/core/record_meta.h"

namespace cistern::transport {
namespace {

// Protobuf wire format. Every field number written here is below 16, so a tag is one byte.
constexpr std::uint8_t kWireVarint = 0;
constexpr std::uint8_t kWireFixed64 = 1;
constexpr std::uint8_t kWireLen = 2;
constexpr std::uint8_t kWireFixed32 = 5;

constexpr std::uint8_t tag(unsigned field, std::uint8_t wire) {
  return static_cast<std::uint8_t>((field << 3U) | wire);
}

// Field numbers from opentelemetry-proto (transport/proto holds the same subset as .proto).
constexpr std::uint8_t kRequestResourceLogs = tag(1, kWireLen);
constexpr std::uint8_t kResourceLogsResource = tag(1, kWireLen);
constexpr std::uint8_t kResourceLogsScopeLogs = tag(2, kWireLen);
constexpr std::uint8_t kResourceAttributes = tag(1, kWireLen);
constexpr std::uint8_t kScopeLogsScope = tag(1, kWireLen);
constexpr std::uint8_t kScopeLogsLogRecords = tag(2, kWireLen);
constexpr std::uint8_t kScopeName = tag(1, kWireLen);
constexpr std::uint8_t kScopeVersion = tag(2, kWireLen);
constexpr std::uint8_t kLogTime = tag(1, kWireFixed64);
constexpr std::uint8_t kLogSeverityNumber = tag(2, kWireVarint);
constexpr std::uint8_t kLogSeverityText = tag(3, kWireLen);
constexpr std::uint8_t kLogBody = tag(5, kWireLen);
constexpr std::uint8_t kLogAttributes = tag(6, kWireLen);
constexpr std::uint8_t kLogObservedTime = tag(11, kWireFixed64);
constexpr std::uint8_t kKeyValueKey = tag(1, kWireLen);
constexpr std::uint8_t kKeyValueValue = tag(2, kWireLen);
constexpr std::uint8_t kAnyString = tag(1, kWireLen);
constexpr std::uint8_t kAnyBool = tag(2, kWireVarint);
constexpr std::uint8_t kAnyInt = tag(3, kWireVarint);
constexpr std::uint8_t kAnyBytes = tag(7, kWireLen);

constexpr std::size_t varintSize(std::uint64_t v) {
  return (static_cast<std::size_t>(std::bit_width(v | 1U)) + 6) / 7;
}

// A length-delimited field: tag, length, content.
constexpr std::size_t lenFieldSize(std::size_t content) {
  return 1 + varintSize(content) + content;
}

// A KeyValue whose AnyValue holds `any` bytes.
constexpr std::size_t keyValueSize(std::string_view key, std::size_t any) {
  return lenFieldSize(key.size()) + lenFieldSize(any);
}

constexpr std::size_t anyIntSize(std::int64_t v) {
  return 1 + varintSize(static_cast<std::uint64_t>(v));
}
constexpr std::size_t kAnyBoolSize = 2;

std::string_view asText(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Proto3 string fields must hold UTF-8 (receivers written in Go refuse the whole request
// otherwise), so text from the outside world goes as string_value when it is UTF-8 and as
// bytes_value when it is not.
std::uint8_t textTag(std::string_view s) { return isValidUtf8(s) ? kAnyString : kAnyBytes; }

// Computes the encoded size of what an emit function writes; the same emit function then
// writes it with Writer, so sizes and bytes cannot disagree. string_value and bytes_value have
// one-byte tags of the same wire type, so a size never depends on whether text is UTF-8: that is
// decided (and counted) once, by Writer.
class Sizer {
 public:
  void fixed64(std::uint8_t /*tag*/, std::uint64_t /*v*/) { n_ += 9; }
  void varint(std::uint8_t /*tag*/, std::uint64_t v) { n_ += 1 + varintSize(v); }
  void string(std::uint8_t /*tag*/, std::string_view s) { n_ += lenFieldSize(s.size()); }
  // An AnyValue field holding a string (kAnyString) or bytes (kAnyBytes).
  void anyText(std::uint8_t /*tag*/, std::uint8_t /*any_tag*/, std::string_view s) {
    n_ += lenFieldSize(lenFieldSize(s.size()));
  }
  // A KeyValue field with a string value, or a bytes value when `value` is not UTF-8.
  void attrText(std::uint8_t /*tag*/, std::string_view key, std::string_view value) {
    n_ += lenFieldSize(keyValueSize(key, lenFieldSize(value.size())));
  }
  void attrInt(std::uint8_t /*tag*/, std::string_view key, std::int64_t v) {
    n_ += lenFieldSize(keyValueSize(key, anyIntSize(v)));
  }
  void attrBool(std::uint8_t /*tag*/, std::string_view key, bool /*v*/) {
    n_ += lenFieldSize(keyValueSize(key, kAnyBoolSize));
  }

  [[nodiscard]] std::size_t size() const { return n_; }

 private:
  std::size_t n_ = 0;
};

// Writes into a buffer sized by Sizer.
class Writer {
 public:
  explicit Writer(char* p) : p_(p) {}

  void fixed64(std::uint8_t tag, std::uint64_t v) {
    byte(tag);
    bytes::storeLe<std::uint64_t>(reinterpret_cast<std::byte*>(p_), v);
    p_ += 8;
  }
  void varint(std::uint8_t tag, std::uint64_t v) {
    byte(tag);
    putVarint(v);
  }
  void string(std::uint8_t tag, std::string_view s) {
    header(tag, s.size());
    copy(s);
  }
  void anyText(std::uint8_t tag, std::uint8_t any_tag, std::string_view s) {
    header(tag, lenFieldSize(s.size()));
    string(any_tag, s);
  }
  void attrText(std::uint8_t tag, std::string_view key, std::string_view value) {
    const std::size_t any = lenFieldSize(value.size());
    keyValue(tag, key, any);
    const std::uint8_t text_tag = textTag(value);
    if (text_tag == kAnyBytes) ++bytes_attributes_;
    string(text_tag, value);
  }
  void attrInt(std::uint8_t tag, std::string_view key, std::int64_t v) {
    keyValue(tag, key, anyIntSize(v));
    varint(kAnyInt, static_cast<std::uint64_t>(v));
  }
  void attrBool(std::uint8_t tag, std::string_view key, bool v) {
    keyValue(tag, key, kAnyBoolSize);
    varint(kAnyBool, v ? 1 : 0);
  }

  // The tag and length of an embedded message whose `size` bytes follow.
  void header(std::uint8_t tag, std::size_t size) {
    byte(tag);
    putVarint(size);
  }

  [[nodiscard]] const char* pos() const { return p_; }
  // Attribute values written as bytes_value because they were not UTF-8.
  [[nodiscard]] std::uint64_t bytesAttributes() const { return bytes_attributes_; }

 private:
  void keyValue(std::uint8_t tag, std::string_view key, std::size_t any) {
    header(tag, keyValueSize(key, any));
    string(kKeyValueKey, key);
    header(kKeyValueValue, any);
  }
  void byte(std::uint8_t b) { *p_++ = static_cast<char>(b); }
  void putVarint(std::uint64_t v) {
    while (v >= 0x80U) {
      *p_++ = static_cast<char>((v & 0x7fU) | 0x80U);
      v >>= 7U;
    }
    *p_++ = static_cast<char>(v);
  }
  void copy(std::string_view s) {
    if (s.empty()) return;
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }

  char* p_;
  std::uint64_t bytes_attributes_ = 0;
};

// A record's metadata, decoded. Decoded twice per record (once to size, once to write) rather
// than stored: decoding is a few bounds checks, storing it would cost more memory than the
// request for small records.
struct Decoded {
  PacketMeta packet;
  LogLineMeta log;
  SyslogMeta syslog;
  std::string meta_error;  // non-empty: the metadata did not decode (or the kind is unknown)
};

Decoded decodeMeta(const RecordView& r) {
  Decoded d;
  const auto take = [&d](auto result, auto& into) {
    if (result) {
      into = *result;
    } else {
      d.meta_error = std::move(result.error().message);
    }
  };
  switch (r.kind) {
    case RecordKind::kPacket:
      take(decodePacketMeta(r.meta), d.packet);
      break;
    case RecordKind::kLogLine:
      take(decodeLogLineMeta(r.meta), d.log);
      break;
    case RecordKind::kSyslog:
      take(decodeSyslogMeta(r.meta), d.syslog);
      break;
    case RecordKind::kTest:
      break;
    default:
      d.meta_error = fmt::format("unknown record kind {}", static_cast<unsigned>(r.kind));
      break;
  }
  return d;
}

// The MSG part of a syslog message (the whole message when the offset is out of range).
std::string_view syslogMessage(std::string_view payload, const SyslogMeta& meta) {
  return meta.message_offset <= payload.size() ? payload.substr(meta.message_offset) : payload;
}

// RFC 5424 STRUCTURED-DATA as received, or empty for "-" or when it cannot be found. The meta
// does not carry it, but it sits between MSGID and MSG: after the sixth space of the header
// ("<PRI>1 TS HOST APP PROCID MSGID SD"; those fields hold no spaces), up to the SP and BOM
// before MSG. Without it the body (MSG) would lose what the sender put in SD-ELEMENTs.
std::string_view structuredData(std::string_view payload, const SyslogMeta& meta) {
  if (meta.format != SyslogFormat::kRfc5424 || meta.message_offset > payload.size()) return {};
  std::string_view header = payload.substr(0, meta.message_offset);
  std::size_t start = 0;
  for (int spaces = 0; spaces < 6; ++spaces) {
    start = header.find(' ', start);
    if (start == std::string_view::npos) return {};
    ++start;
  }
  std::string_view sd = header.substr(start);
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (sd.ends_with(kBom)) sd.remove_suffix(kBom.size());
  if (sd.ends_with(' ')) sd.remove_suffix(1);
  if (sd.size() < 2 || sd.front() != '[' || sd.back() != ']') return {};
  return sd;
}

// The body text and whether it must go as bytes_value.
struct Body {
  std::string_view text;
  bool bytes = true;
};

std::string_view bodyText(const RecordView& r, const Decoded& d) {
  const std::string_view payload = asText(r.payload);
  if (d.meta_error.empty() && r.kind == RecordKind::kSyslog)
    return syslogMessage(payload, d.syslog);
  return payload;
}

// Log lines and syslog messages are text unless they are not UTF-8; everything else is bytes.
bool bodyIsBytes(const RecordView& r, const Decoded& d, std::string_view text) {
  if (!d.meta_error.empty()) return true;
  if (r.kind == RecordKind::kLogLine || r.kind == RecordKind::kSyslog) return !isValidUtf8(text);
  return true;
}

template <class Out>
void emitStringAttr(Out& out, std::string_view key, std::string_view value) {
  if (!value.empty()) out.attrText(kLogAttributes, key, value);
}

template <class Out>
void emitKindAttributes(Out& out, const RecordView& r, const Decoded& d) {
  const std::string_view payload = asText(r.payload);
  switch (r.kind) {
    case RecordKind::kPacket:
      out.attrInt(kLogAttributes, "network.link_type", d.packet.link_type);
      out.attrInt(kLogAttributes, "packet.captured_length",
                  static_cast<std::int64_t>(r.payload.size()));
      out.attrInt(kLogAttributes, "packet.original_length", d.packet.original_length);
      break;
    case RecordKind::kLogLine:
      out.attrText(kLogAttributes, "log.file.path", d.log.path);
      // Offsets fit int64 (files are smaller than 2^63 bytes).
      out.attrInt(kLogAttributes, "cistern.log.offset", static_cast<std::int64_t>(d.log.offset));
      if ((d.log.flags & kLogLineTruncated) != 0) {
        out.attrBool(kLogAttributes, "cistern.log.truncated", true);
      }
      if ((d.log.flags & kLogLineSplit) != 0) {
        out.attrBool(kLogAttributes, "cistern.log.split", true);
      }
      if ((d.log.flags & kLogLineNoNewline) != 0) {
        out.attrBool(kLogAttributes, "cistern.log.no_newline", true);
      }
      break;
    case RecordKind::kSyslog: {
      const SyslogMeta& m = d.syslog;
      out.attrText(kLogAttributes, "syslog.format", syslogFormatName(m.format));
      if (m.severity != kNoSeverity) {
        out.attrInt(kLogAttributes, "syslog.facility", m.facility);
        out.attrInt(kLogAttributes, "syslog.severity", m.severity);
      }
      emitStringAttr(out, "syslog.hostname", m.host);
      emitStringAttr(out, "syslog.appname", m.app);
      emitStringAttr(out, "syslog.procid", m.procid);
      emitStringAttr(out, "syslog.msgid", m.msgid);
      emitStringAttr(out, "syslog.structured_data", structuredData(payload, m));
      emitStringAttr(out, "client.address", m.peer);
      break;
    }
    default:
      out.attrText(kLogAttributes, "cistern.kind", recordKindName(r.kind));
      break;
  }
}

// The fields of one LogRecord, in field-number order.
template <class Out>
void emitLogRecord(Out& out, const RecordView& r, const Decoded& d, const Body& body) {
  const bool syslog = r.kind == RecordKind::kSyslog && d.meta_error.empty();
  std::uint64_t time = r.timestamp_ns;
  if (syslog && d.syslog.timestamp_ns > 0) time = static_cast<std::uint64_t>(d.syslog.timestamp_ns);
  // Zero means unknown in OTLP and is left out, as protobuf leaves out zero scalars.
  if (time != 0) out.fixed64(kLogTime, time);
  if (syslog) {
    const int number = syslogSeverityNumber(d.syslog.severity);
    if (number != 0) {
      out.varint(kLogSeverityNumber, static_cast<std::uint64_t>(number));
      out.string(kLogSeverityText, syslogSeverityName(d.syslog.severity));
    }
  }
  out.anyText(kLogBody, body.bytes ? kAnyBytes : kAnyString, body.text);
  out.attrText(kLogAttributes, "cistern.input", r.input);
  if (d.meta_error.empty()) {
    emitKindAttributes(out, r, d);
  } else {
    out.attrText(kLogAttributes, "cistern.kind", recordKindName(r.kind));
    out.attrText(kLogAttributes, "cistern.meta_error", d.meta_error);
  }
  if (r.timestamp_ns != 0) out.fixed64(kLogObservedTime, r.timestamp_ns);
}

struct FrameRange {
  FrameId first = 0;
  FrameId last = 0;
  std::uint64_t count = 0;
};

template <class Out>
void emitResource(Out& out, const Identity& id, const FrameRange& frames) {
  if (!id.host_name.empty()) out.attrText(kResourceAttributes, "host.name", id.host_name);
  out.attrText(kResourceAttributes, "service.name", "cistern");
  if (!id.version.empty()) out.attrText(kResourceAttributes, "service.version", id.version);
  if (!id.agent_id.empty()) {
    out.attrText(kResourceAttributes, "service.instance.id", id.agent_id);
    out.attrText(kResourceAttributes, "cistern.agent.id", id.agent_id);
  }
  if (frames.count > 0) {
    // Frame ids are below 2^63 in any buffer that will ever exist; int is OTLP's integer type.
    out.attrInt(kResourceAttributes, "cistern.frame.first",
                static_cast<std::int64_t>(frames.first));
    out.attrInt(kResourceAttributes, "cistern.frame.last", static_cast<std::int64_t>(frames.last));
    out.attrInt(kResourceAttributes, "cistern.frame.count",
                static_cast<std::int64_t>(frames.count));
  }
}

template <class Out>
void emitScope(Out& out, const Identity& id) {
  out.string(kScopeName, "cistern");
  // InstrumentationScope.version is a string field: only UTF-8 may go there.
  if (!id.version.empty() && isValidUtf8(id.version)) out.string(kScopeVersion, id.version);
}

// Everything of a request before its LogRecords: the ResourceLogs and ScopeLogs headers, the
// resource and the scope. `records_size` bytes of length-delimited LogRecords follow it; with
// none there is no ScopeLogs at all.
class Prefix {
 public:
  Prefix(const Identity& id, const FrameRange& frames) : id_(id), frames_(frames) {
    emitResource(resource_, id, frames);
    emitScope(scope_, id);
  }

  // The prefix's size in front of `records_size` bytes of records.
  [[nodiscard]] std::size_t size(std::size_t records_size, bool with_records) const {
    return lenFieldSize(resourceLogs(records_size, with_records)) - records_size;
  }

  // Writes the prefix at `out`, which has room for size(records_size, with_records) bytes.
  void write(char* out, std::size_t records_size, bool with_records) const {
    Writer w(out);
    w.header(kRequestResourceLogs, resourceLogs(records_size, with_records));
    w.header(kResourceLogsResource, resource_.size());
    emitResource(w, id_, frames_);
    if (with_records) {
      w.header(kResourceLogsScopeLogs, scopeLogs(records_size));
      w.header(kScopeLogsScope, scope_.size());
      emitScope(w, id_);
    }
    assert(w.pos() == out + size(records_size, with_records));
  }

 private:
  [[nodiscard]] std::size_t scopeLogs(std::size_t records_size) const {
    return lenFieldSize(scope_.size()) + records_size;
  }
  [[nodiscard]] std::size_t resourceLogs(std::size_t records_size, bool with_records) const {
    std::size_t n = lenFieldSize(resource_.size());
    if (with_records) n += lenFieldSize(scopeLogs(records_size));
    return n;
  }

  const Identity& id_;
  const FrameRange& frames_;
  Sizer resource_;
  Sizer scope_;
};

// An encoded request is about 1.6 times its records' bytes for 200-byte log lines, more for
// smaller records: twice is the total the records are first placed for (see encodeInto).
constexpr std::size_t kExpectedGrowth = 2;
// A request body grows by this much at least when it needs room (growth zero-fills it first: a
// reused body of about the right size grows little or not at all).
constexpr std::size_t kBodyGrowStep = 256U << 10U;

}  // namespace

OtlpLogsEncoder::OtlpLogsEncoder(Identity identity) : identity_(std::move(identity)) {}

OtlpRequestBody OtlpLogsEncoder::encode(const ReadBatch& batch) const {
  OtlpRequestBody out;
  out.stats = encodeInto(batch, out.body);
  return out;
}

OtlpEncodeStats OtlpLogsEncoder::encodeInto(const ReadBatch& batch, std::string& body) const {
  if (batch.empty()) {
    body = encodeEmptyRequest();
    return {};
  }
  FrameRange frames;
  frames.first = std::numeric_limits<FrameId>::max();
  for (const FrameView& frame : batch.frames()) {
    // The live lane reads newest first: the range is min..max, not first..last in batch order.
    frames.first = std::min(frames.first, frame.id);
    frames.last = std::max(frames.last, frame.id);
    ++frames.count;
  }
  const Prefix prefix(identity_, frames);

  // One pass over the records, each decoded once and written as soon as it is sized. The
  // prefix's lengths depend on the records' total, so the records go after room for the prefix
  // of an expected total, which is then written in front of them; when the real total needs a
  // prefix of another size (its varints another width), the records are moved once.
  const std::size_t expected = batch.bodyBytes() * kExpectedGrowth;
  const std::size_t room = prefix.size(expected, true);
  // The body keeps the size it has (a reused one is overwritten in place) and grows in steps;
  // the bytes beyond the records are cut at the end, which writes nothing.
  if (body.size() < room) body.resize(room);
  OtlpEncodeStats stats;
  std::size_t pos = room;
  for (const FrameView& frame : batch.frames()) {
    RecordReader reader(frame.body);
    std::uint64_t read = 0;
    while (const RecordView* r = reader.next()) {
      ++read;
      const Decoded d = decodeMeta(*r);
      const std::string_view text = bodyText(*r, d);
      const Body record_body{text, bodyIsBytes(*r, d, text)};
      if (!d.meta_error.empty()) {
        ++stats.malformed;
      } else if (record_body.bytes &&
                 (r->kind == RecordKind::kLogLine || r->kind == RecordKind::kSyslog)) {
        ++stats.bytes_bodies;
      }
      Sizer size;
      emitLogRecord(size, *r, d, record_body);
      const std::size_t end = pos + lenFieldSize(size.size());
      if (end > body.size()) body.resize(std::max(end, body.size() + kBodyGrowStep));
      Writer w(body.data() + pos);
      w.header(kScopeLogsLogRecords, size.size());
      emitLogRecord(w, *r, d, record_body);
      assert(w.pos() == body.data() + end);
      stats.bytes_attributes += w.bytesAttributes();
      pos = end;
      ++stats.records;
    }
    if (read < frame.record_count) stats.unreadable += frame.record_count - read;
  }
  const std::size_t records_size = pos - room;
  const bool with_records = stats.records > 0;
  const std::size_t actual = prefix.size(records_size, with_records);
  if (actual != room) std::memmove(body.data() + actual, body.data() + room, records_size);
  body.resize(actual + records_size);
  prefix.write(body.data(), records_size, with_records);
  return stats;
}

std::string OtlpLogsEncoder::encodeEmptyRequest() const {
  const FrameRange none;
  const Prefix prefix(identity_, none);
  std::string body(prefix.size(0, false), '\0');
  prefix.write(body.data(), 0, false);
  return body;
}

Result<OtlpExportResponse> parseExportResponse(std::string_view body) {
  // A minimal protobuf reader: ExportLogsServiceResponse { partial_success = 1 } and
  // ExportLogsPartialSuccess { rejected_log_records = 1 (int64), error_message = 2 }.
  struct Reader {
    std::string_view in;
    std::size_t pos = 0;

    bool atEnd() const { return pos >= in.size(); }
    bool varint(std::uint64_t& v) {
      v = 0;
      for (unsigned shift = 0; shift < 64; shift += 7) {
        if (pos >= in.size()) return false;
        const auto b = static_cast<std::uint8_t>(in[pos++]);
        v |= static_cast<std::uint64_t>(b & 0x7fU) << shift;
        if ((b & 0x80U) == 0) return true;
      }
      return false;
    }
    bool bytes(std::string_view& out) {
      std::uint64_t n = 0;
      if (!varint(n) || n > in.size() - pos) return false;
      out = in.substr(pos, static_cast<std::size_t>(n));
      pos += static_cast<std::size_t>(n);
      return true;
    }
    bool skip(std::uint8_t wire) {
      std::uint64_t v = 0;
      std::string_view s;
      switch (wire) {
        case kWireVarint:
          return varint(v);
        case kWireFixed64:
          if (in.size() - pos < 8) return false;
          pos += 8;
          return true;
        case kWireLen:
          return bytes(s);
        case kWireFixed32:
          if (in.size() - pos < 4) return false;
          pos += 4;
          return true;
        default:
          return false;  // groups (deprecated) and invalid wire types
      }
    }
  };

  const auto corrupt = [](const char* what) {
    return fail(ErrorCode::kCorrupt, std::string("OTLP export response: ") + what);
  };
  OtlpExportResponse response;
  Reader top{body};
  while (!top.atEnd()) {
    std::uint64_t key = 0;
    if (!top.varint(key)) return corrupt("truncated field key");
    const auto wire = static_cast<std::uint8_t>(key & 7U);
    if (key >> 3U == 1 && wire == kWireLen) {
      std::string_view partial;
      if (!top.bytes(partial)) return corrupt("truncated partial_success");
      // Repeated occurrences of an embedded message merge, as protobuf parsers do.
      Reader sub{partial};
      while (!sub.atEnd()) {
        std::uint64_t sub_key = 0;
        if (!sub.varint(sub_key)) return corrupt("truncated partial_success field key");
        const auto sub_wire = static_cast<std::uint8_t>(sub_key & 7U);
        if (sub_key >> 3U == 1 && sub_wire == kWireVarint) {
          std::uint64_t v = 0;
          if (!sub.varint(v)) return corrupt("truncated rejected_log_records");
          response.rejected_log_records = static_cast<std::int64_t>(v);
        } else if (sub_key >> 3U == 2 && sub_wire == kWireLen) {
          std::string_view msg;
          if (!sub.bytes(msg)) return corrupt("truncated error_message");
          response.error_message.assign(msg);
        } else if (!sub.skip(sub_wire)) {
          return corrupt("malformed field in partial_success");
        }
      }
    } else if (!top.skip(wire)) {
      return corrupt("malformed field");
    }
  }
  if (response.rejected_log_records < 0) return corrupt("negative rejected_log_records");
  return response;
}

bool isValidUtf8(std::string_view text) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* const end = p + text.size();
  constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;
  while (p < end) {
    // Most log text is ASCII: check 32, then 8 bytes at a time until a byte with its high bit
    // set (the compiler turns the four words into one vector test).
    while (end - p >= 32) {
      std::uint64_t words[4];
      std::memcpy(words, p, sizeof words);
      if (((words[0] | words[1] | words[2] | words[3]) & kHighBits) != 0) break;
      p += 32;
    }
    while (end - p >= 8) {
      std::uint64_t word = 0;
      std::memcpy(&word, p, sizeof word);
      if ((word & kHighBits) != 0) break;
      p += 8;
    }
    if (p == end) break;
    const unsigned c = *p;
    if (c < 0x80U) {
      ++p;
      continue;
    }
    // Unicode 15, table 3-7: the well-formed byte sequences.
    std::size_t continuation = 0;
    unsigned lo = 0x80U;
    unsigned hi = 0xBFU;
    if (c >= 0xC2U && c <= 0xDFU) {
      continuation = 1;
    } else if (c >= 0xE0U && c <= 0xEFU) {
      continuation = 2;
      if (c == 0xE0U) lo = 0xA0U;  // overlong
      if (c == 0xEDU) hi = 0x9FU;  // surrogates
    } else if (c >= 0xF0U && c <= 0xF4U) {
      continuation = 3;
      if (c == 0xF0U) lo = 0x90U;  // overlong
      if (c == 0xF4U) hi = 0x8FU;  // above U+10FFFF
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) <= continuation) return false;
    const unsigned second = p[1];
    if (second < lo || second > hi) return false;
    for (std::size_t i = 2; i <= continuation; ++i) {
      if ((p[i] & 0xC0U) != 0x80U) return false;
    }
    p += continuation + 1;
  }
  return true;
}

int syslogSeverityNumber(std::uint8_t severity) noexcept {
  static constexpr int kNumbers[] = {21, 19, 18, 17, 13, 10, 9, 5};
  return severity < 8 ? kNumbers[severity] : 0;
}

const char* syslogSeverityName(std::uint8_t severity) noexcept {
  static constexpr const char* kNames[] = {"emerg",   "alert",  "crit", "err",
                                           "warning", "notice", "info", "debug"};
  return severity < 8 ? kNames[severity] : "";
}

}  // namespace cistern::transport
