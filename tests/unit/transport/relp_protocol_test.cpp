// RELP framing, the incremental parser of the server's frames (split and garbage input), response
// and offer parsing.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "relp_protocol.h"

namespace cistern::transport {
namespace {

// What rsyslog 8.2302 (librelp 1.11) sent in answer to an open, two syslog commands and a close.
const std::string kTranscript =
    "1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
    "commands=syslog\n"
    "2 rsp 6 200 OK\n"
    "3 rsp 6 200 OK\n"
    "4 rsp 0\n"
    "0 serverclose 0\n";

std::vector<RelpFrame> parseAll(RelpParser& parser) {
  std::vector<RelpFrame> frames;
  RelpFrame f;
  while (parser.next(f) == RelpParser::Next::kFrame) frames.push_back(f);
  return frames;
}

void checkTranscriptFrames(const std::vector<RelpFrame>& frames) {
  REQUIRE(frames.size() == 5);
  CHECK(frames[0].txnr == 1);
  CHECK(frames[0].command == "rsp");
  CHECK(frames[0].data.size() == 93);
  CHECK(frames[1].txnr == 2);
  CHECK(frames[1].data == "200 OK");
  CHECK(frames[2].txnr == 3);
  CHECK(frames[3].txnr == 4);
  CHECK(frames[3].data.empty());
  CHECK(frames[4].txnr == 0);
  CHECK(frames[4].command == "serverclose");
}

TEST_CASE("RELP frames are TXNR SP COMMAND SP DATALEN [SP DATA] LF", "[unit]") {
  std::string out;
  appendRelpFrame(out, 2, "syslog", "<14>1 - h a - - - hi");
  CHECK(out == "2 syslog 20 <14>1 - h a - - - hi\n");
  out.clear();
  appendRelpFrame(out, 999999999, "close", "");
  CHECK(out == "999999999 close 0\n");
  CHECK(nextRelpTxnr(1) == 2);
  CHECK(nextRelpTxnr(kRelpMaxTxnr) == 1);
}

TEST_CASE("the open command offers version 0, the software and the syslog command", "[unit]") {
  CHECK(relpOpenOffers("1.2.3") == "relp_version=0\nrelp_software=cistern,1.2.3\ncommands=syslog");
  CHECK(relpOpenOffers("") == "relp_version=0\nrelp_software=cistern,unknown\ncommands=syslog");
}

TEST_CASE("the RELP parser reads rsyslog's answers whole", "[unit]") {
  RelpParser parser;
  parser.feed(kTranscript);
  checkTranscriptFrames(parseAll(parser));
  CHECK(parser.buffered() == 0);
  RelpFrame f;
  CHECK(parser.next(f) == RelpParser::Next::kNeedMore);
}

TEST_CASE("the RELP parser reads answers split at every byte", "[unit]") {
  RelpParser parser;
  std::vector<RelpFrame> frames;
  for (const char c : kTranscript) {
    parser.feed(std::string(1, c));
    auto more = parseAll(parser);
    frames.insert(frames.end(), more.begin(), more.end());
  }
  checkTranscriptFrames(frames);
}

TEST_CASE("the RELP parser reads answers split at random places", "[unit]") {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    RelpParser parser;
    std::vector<RelpFrame> frames;
    std::size_t at = 0;
    while (at < kTranscript.size()) {
      const std::size_t n = std::uniform_int_distribution<std::size_t>(1, 40)(rng);
      parser.feed(kTranscript.substr(at, n));
      at += n;
      auto more = parseAll(parser);
      frames.insert(frames.end(), more.begin(), more.end());
    }
    checkTranscriptFrames(frames);
  }
}

TEST_CASE("malformed RELP input is an error that sticks", "[unit]") {
  const auto errorOf = [](const std::string& input, std::size_t max = kRelpMaxResponseBytes) {
    RelpParser parser(max);
    parser.feed(input);
    RelpFrame f;
    while (true) {
      const auto n = parser.next(f);
      if (n == RelpParser::Next::kError) return parser.error();
      if (n == RelpParser::Next::kNeedMore) return std::string("need more");
    }
  };
  CHECK(errorOf("this is not relp\n").find("transaction number expected") != std::string::npos);
  CHECK(errorOf("1234567890 rsp 0\n").find("longer than 9 digits") != std::string::npos);
  CHECK(errorOf("1 r5p 6 200 OK\n").find("' ' expected after the command") != std::string::npos);
  CHECK(errorOf("1  rsp 6 200 OK\n").find("command expected") != std::string::npos);
  CHECK(errorOf("1 " + std::string(33, 'a') + " 0\n").find("longer than 32") != std::string::npos);
  CHECK(errorOf("1 rsp x\n").find("data length expected") != std::string::npos);
  CHECK(errorOf("1 rsp 6 200 OKX").find("as the frame trailer") != std::string::npos);
  CHECK(errorOf("1 rsp 0 \n").find("as the frame trailer") != std::string::npos);
  CHECK(errorOf("1 rsp 6\n200 OK\n").find("before the data") != std::string::npos);
  CHECK(errorOf("1 rsp 100 x", 99).find("exceeds the limit") != std::string::npos);
  CHECK(errorOf("1 rsp \x01").find("0x01") != std::string::npos);
  // Incomplete but well-formed so far: not an error.
  CHECK(errorOf("12") == "need more");
  CHECK(errorOf("12 rsp 6 200") == "need more");

  RelpParser parser;
  parser.feed("2 rsp 6 200 OK\ngarbage\n3 rsp 6 200 OK\n");
  RelpFrame f;
  CHECK(parser.next(f) == RelpParser::Next::kFrame);
  CHECK(parser.next(f) == RelpParser::Next::kError);
  parser.feed("4 rsp 6 200 OK\n");
  CHECK(parser.next(f) == RelpParser::Next::kError);  // no resynchronisation
}

TEST_CASE("random bytes never crash the RELP parser", "[unit]") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> pick(0, 9);
  const std::string alphabet = "0123456789 rspyslog\n";
  for (int round = 0; round < 2000; ++round) {
    RelpParser parser(1000);
    std::string input;
    const int length = std::uniform_int_distribution<int>(0, 64)(rng);
    for (int i = 0; i < length; ++i) {
      // Mostly characters of the grammar, so inputs get deep into frames.
      input.push_back(pick(rng) < 8
                          ? alphabet[static_cast<std::size_t>(byte(rng)) % alphabet.size()]
                          : static_cast<char>(byte(rng)));
    }
    parser.feed(input);
    RelpFrame f;
    int frames = 0;
    RelpParser::Next n;
    while ((n = parser.next(f)) == RelpParser::Next::kFrame) {
      ++frames;
      CHECK(f.command.size() >= 1);
      CHECK(f.command.size() <= 32);
      CHECK(f.data.size() <= 1000);
    }
    CHECK(frames <= 64);
    if (n == RelpParser::Next::kError) CHECK_FALSE(parser.error().empty());
  }
}

TEST_CASE("RELP responses: status, text and data", "[unit]") {
  auto ok = parseRelpResponse("200 OK");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(ok->text == "OK");
  CHECK(ok->data.empty());

  auto open = parseRelpResponse("200 OK\nrelp_version=0\ncommands=syslog");
  REQUIRE(open);
  CHECK(open->text == "OK");
  CHECK(open->data == "relp_version=0\ncommands=syslog");

  auto refused = parseRelpResponse("500 message too long");
  REQUIRE(refused);
  CHECK(refused->status == 500);
  CHECK(refused->text == "message too long");

  auto bare = parseRelpResponse("200");
  REQUIRE(bare);
  CHECK(bare->status == 200);
  CHECK(bare->text.empty());

  CHECK_FALSE(parseRelpResponse(""));
  CHECK_FALSE(parseRelpResponse("20"));
  CHECK_FALSE(parseRelpResponse("OK 200"));
  CHECK_FALSE(parseRelpResponse("2000 OK"));
}

TEST_CASE("RELP offers: version, software and commands", "[unit]") {
  auto o = parseRelpOffers(
      "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
      "commands=syslog");
  CHECK(o.has_version);
  CHECK(o.syslog_command);
  CHECK(o.software == "librelp,1.11.0,http://librelp.adiscon.com");

  auto several = parseRelpOffers("commands=eventlog,syslog\nrelp_version=1\n");
  CHECK(several.syslog_command);
  CHECK(several.has_version);

  auto none = parseRelpOffers("relp_version=\ncommands=eventlog\nunknown_offer");
  CHECK_FALSE(none.has_version);
  CHECK_FALSE(none.syslog_command);
  CHECK_FALSE(parseRelpOffers("").has_version);
}

}  // namespace
}  // namespace cistern::transport
