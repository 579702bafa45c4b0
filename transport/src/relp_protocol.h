// RELP, the Reliable Event Logging Protocol, as librelp (rsyslog's imrelp) speaks it: the client
// half's framing, the server's responses and the session offers. Pure functions and a parser
// over bytes; the sender (syslog_sender.cpp) owns the connection.
//
// Frame: TXNR SP COMMAND SP DATALEN [SP DATA] LF
//   TXNR     1..9 digits; a session starts at 1, each command takes the next one, after
//            999999999 comes 1; 0 is reserved for server hints ("serverclose")
//   COMMAND  1..32 letters: open, syslog, close from the client; rsp and serverclose from the
//            server
//   DATALEN  1..9 digits, the bytes of DATA; with 0 there is neither SP nor DATA
// Response data ("rsp"): STATUS [SP HUMAN-TEXT] [LF DATA]; 200 is success, anything else an
// error. The answer to "open" carries the server's offers as DATA, one "name=value,value" per
// line. librelp answers "close" with an rsp of DATALEN 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern::transport {

inline constexpr std::uint32_t kRelpMaxTxnr = 999'999'999;
// Responses are short; a server that announces more than this is not speaking RELP.
inline constexpr std::size_t kRelpMaxResponseBytes = std::size_t{64} << 10U;

// The transaction number after `txnr` (1 after kRelpMaxTxnr).
std::uint32_t nextRelpTxnr(std::uint32_t txnr) noexcept;

// Appends one frame to `out`. `command` must be 1..32 letters and `txnr` <= kRelpMaxTxnr.
void appendRelpFrame(std::string& out, std::uint32_t txnr, std::string_view command,
                     std::string_view data);

// The offers of the client's "open": relp_version=0 (the version librelp speaks), the software
// ("cistern,<version>") and commands=syslog.
std::string relpOpenOffers(std::string_view software_version);

struct RelpFrame {
  std::uint32_t txnr = 0;
  std::string command;
  std::string data;
};

// Splits the server's byte stream into frames, incrementally: bytes may arrive split anywhere.
// Anything that is not a well-formed frame (a non-digit in TXNR, a command longer than 32
// letters, DATALEN above `max_data_bytes`, a missing LF trailer) is an error after which every
// call returns kError: RELP cannot resynchronise, the connection must be dropped.
// Not thread-safe; one per connection.
class RelpParser {
 public:
  enum class Next {
    kFrame,     // `out` holds the next frame
    kNeedMore,  // no complete frame is buffered yet
    kError,     // see error()
  };

  explicit RelpParser(std::size_t max_data_bytes = kRelpMaxResponseBytes) noexcept
      : max_data_bytes_(max_data_bytes) {}

  // Adds received bytes.
  void feed(std::string_view bytes);
  // Takes the next complete frame from what was fed.
  Next next(RelpFrame& out);
  // What was malformed; empty before an error.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  // Bytes fed and not yet returned in a frame.
  [[nodiscard]] std::size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  Next failWith(std::string message);

  std::size_t max_data_bytes_;
  std::string buf_;
  std::size_t pos_ = 0;
  std::string error_;
};

struct RelpResponse {
  int status = 0;         // 200 on success
  std::string_view text;  // the human-readable text after the status, may be empty
  std::string_view data;  // after the first LF (the offers of an "open" answer), may be empty
};

// Parses the DATA of an "rsp" frame; views point into `data`. Errors: kCorrupt when it does not
// start with a three-digit status.
Result<RelpResponse> parseRelpResponse(std::string_view data);

struct RelpOffers {
  bool has_version = false;     // the server sent relp_version
  bool syslog_command = false;  // "syslog" is among its commands
  std::string software;         // its relp_software, as sent
};

// Reads the offers of an "open" answer (RelpResponse::data): one "name=value[,value...]" per LF.
RelpOffers parseRelpOffers(std::string_view offers);

}  // namespace cistern::transport
