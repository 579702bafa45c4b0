#include "relp_protocol.h"

#include <cassert>
#include <charconv>

#include <fmt/format.h>

namespace cistern::transport {
namespace {

constexpr std::size_t kMaxNumberDigits = 9;
constexpr std::size_t kMaxCommandLetters = 32;
// Consumed bytes are dropped from the buffer once this many have piled up, so the buffer stays
// about one response large without moving bytes after every frame.
constexpr std::size_t kCompactAfter = 4096;

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// A printable rendering of a byte for error messages (the server's bytes are untrusted).
std::string showByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return fmt::format("'{}'", c);
  return fmt::format("0x{:02x}", u);
}

}  // namespace

std::uint32_t nextRelpTxnr(std::uint32_t txnr) noexcept {
  return txnr >= kRelpMaxTxnr ? 1 : txnr + 1;
}

void appendRelpFrame(std::string& out, std::uint32_t txnr, std::string_view command,
                     std::string_view data) {
  assert(txnr <= kRelpMaxTxnr && !command.empty() && command.size() <= kMaxCommandLetters);
  fmt::format_to(std::back_inserter(out), "{} {} {}", txnr, command, data.size());
  if (!data.empty()) {
    out.push_back(' ');
    out.append(data);
  }
  out.push_back('\n');
}

std::string relpOpenOffers(std::string_view software_version) {
  return fmt::format("relp_version=0\nrelp_software=cistern,{}\ncommands=syslog",
                     software_version.empty() ? "unknown" : software_version);
}

void RelpParser::feed(std::string_view bytes) {
  if (!error_.empty()) return;
  if (pos_ >= kCompactAfter || pos_ == buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

RelpParser::Next RelpParser::failWith(std::string message) {
  error_ = std::move(message);
  buf_.clear();
  pos_ = 0;
  return Next::kError;
}

RelpParser::Next RelpParser::next(RelpFrame& out) {
  if (!error_.empty()) return Next::kError;
  const std::string_view in = std::string_view(buf_).substr(pos_);
  std::size_t i = 0;

  // Reads 1..9 digits ended by a non-digit; kNeedMore when the input ends inside.
  const auto number = [&](const char* what, std::uint64_t& value, Next& status) {
    const std::size_t start = i;
    value = 0;
    while (i < in.size() && isDigit(in[i])) {
      if (i - start == kMaxNumberDigits) {
        status = failWith(fmt::format("RELP {} longer than {} digits", what, kMaxNumberDigits));
        return false;
      }
      value = value * 10 + static_cast<std::uint64_t>(in[i] - '0');
      ++i;
    }
    if (i == in.size()) {
      status = Next::kNeedMore;
      return false;
    }
    if (i == start) {
      status = failWith(fmt::format("RELP {} expected, got {}", what, showByte(in[i])));
      return false;
    }
    return true;
  };
  const auto expect = [&](char c, const char* where, Next& status) {
    if (i == in.size()) {
      status = Next::kNeedMore;
      return false;
    }
    if (in[i] != c) {
      status = failWith(
          fmt::format("RELP frame: {} expected {}, got {}", showByte(c), where, showByte(in[i])));
      return false;
    }
    ++i;
    return true;
  };

  Next status = Next::kNeedMore;
  std::uint64_t txnr = 0;
  if (!number("transaction number", txnr, status)) return status;
  if (!expect(' ', "after the transaction number", status)) return status;
  const std::size_t command_start = i;
  while (i < in.size() && isLetter(in[i])) {
    if (i - command_start == kMaxCommandLetters) {
      return failWith(fmt::format("RELP command longer than {} letters", kMaxCommandLetters));
    }
    ++i;
  }
  if (i == in.size()) return Next::kNeedMore;
  if (i == command_start) {
    return failWith(fmt::format("RELP command expected, got {}", showByte(in[i])));
  }
  const std::string_view command = in.substr(command_start, i - command_start);
  if (!expect(' ', "after the command", status)) return status;
  std::uint64_t datalen = 0;
  if (!number("data length", datalen, status)) return status;
  if (datalen > max_data_bytes_) {
    return failWith(
        fmt::format("RELP data length {} exceeds the limit of {}", datalen, max_data_bytes_));
  }
  std::string_view data;
  if (datalen > 0) {
    if (!expect(' ', "before the data", status)) return status;
    if (in.size() - i < datalen) return Next::kNeedMore;
    data = in.substr(i, datalen);
    i += datalen;
  }
  if (!expect('\n', "as the frame trailer", status)) return status;

  out.txnr = static_cast<std::uint32_t>(txnr);
  out.command.assign(command);
  out.data.assign(data);
  pos_ += i;
  return Next::kFrame;
}

Result<RelpResponse> parseRelpResponse(std::string_view data) {
  if (data.size() < 3 || !isDigit(data[0]) || !isDigit(data[1]) || !isDigit(data[2]) ||
      (data.size() > 3 && data[3] != ' ' && data[3] != '\n')) {
    return fail(ErrorCode::kCorrupt, "RELP response does not start with a three-digit status");
  }
  RelpResponse r;
  std::from_chars(data.data(), data.data() + 3, r.status);
  std::string_view rest = data.substr(3);
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  const auto lf = rest.find('\n');
  r.text = rest.substr(0, lf);
  if (lf != std::string_view::npos) r.data = rest.substr(lf + 1);
  return r;
}

RelpOffers parseRelpOffers(std::string_view offers) {
  RelpOffers result;
  while (!offers.empty()) {
    const auto lf = offers.find('\n');
    const std::string_view line = offers.substr(0, lf);
    offers = lf == std::string_view::npos ? std::string_view{} : offers.substr(lf + 1);
    const auto eq = line.find('=');
    const std::string_view name = line.substr(0, eq);
    std::string_view values =
        eq == std::string_view::npos ? std::string_view{} : line.substr(eq + 1);
    if (name == "relp_version") {
      result.has_version = !values.empty();
    } else if (name == "relp_software") {
      result.software.assign(values);
    } else if (name == "commands") {
      while (!values.empty()) {
        const auto comma = values.find(',');
        if (values.substr(0, comma) == "syslog") result.syslog_command = true;
        values = comma == std::string_view::npos ? std::string_view{} : values.substr(comma + 1);
      }
    }
  }
  return result;
}

}  // namespace cistern::transport
