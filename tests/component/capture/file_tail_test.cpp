// FileTailSource: lines cut exactly (long lines, CRLF, empty and binary lines), start_at, files
// appearing later, rotation (rename, copytruncate, deletion), restarts from committed state in a
// real ring, inode reuse. Unit tests cover the line scanner, the state codec and fingerprints.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/buffer/ring.h"
#include "cistern/capture/file_tail_source.h"
#include "cistern/core/record_meta.h"
#include "file_tail_lines.h"
#include "file_tail_state.h"
#include "memory_sink.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::ErrorCode;
using cistern::kLogLineNoNewline;
using cistern::kLogLineSplit;
using cistern::kLogLineTruncated;
using cistern::capture::FileTailOptions;
using cistern::capture::LongLines;
using cistern::capture::makeFileTailSource;
using cistern::capture::Source;
using cistern::capture::StartAt;
using cistern::capture::tail::FileIdentity;
using cistern::capture::tail::LineScanner;
using cistern::capture::tail::SavedFile;
using cistern::testing::MemorySink;
using cistern::testing::TempDir;

namespace {

// One record as the tests look at it.
struct Line {
  std::string text;
  std::uint8_t flags = 0;
  std::uint64_t offset = 0;
  std::string path;
  bool operator==(const Line&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Line& l) {
  return os << "{'" << l.text << "' flags=" << int{l.flags} << " offset=" << l.offset << " "
            << l.path << "}";
}

// Collects what a LineScanner emits; reports itself full at `limit` lines.
struct Collect final : cistern::capture::tail::LineHandler {
  std::vector<Line> lines;
  std::size_t limit = SIZE_MAX;
  void line(std::uint64_t offset, std::uint8_t flags, std::string_view content) override {
    lines.push_back(Line{std::string(content), flags, offset, {}});
  }
  [[nodiscard]] bool full() const override { return lines.size() >= limit; }
};

std::vector<Line> scanAll(std::string_view data, std::uint64_t max, LongLines mode) {
  LineScanner s(max, mode);
  Collect c;
  s.feed(data, c);
  return c.lines;
}

Line decode(const cistern::testing::StoredRecord& r) {
  auto meta = cistern::decodeLogLineMeta(r.meta);
  REQUIRE(meta);
  return Line{r.payload, meta->flags, meta->offset, std::string(meta->path)};
}

std::vector<Line> linesOf(const MemorySink& sink) {
  std::vector<Line> out;
  for (const auto& r : sink.records()) {
    CHECK(r.kind == cistern::RecordKind::kLogLine);
    CHECK(r.input == "logs");
    out.push_back(decode(r));
  }
  return out;
}

std::vector<std::string> textsOf(const std::vector<Line>& lines) {
  std::vector<std::string> out;
  out.reserve(lines.size());
  for (const auto& l : lines) out.push_back(l.text);
  return out;
}

void appendTo(const std::filesystem::path& p, std::string_view text) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
}

FileIdentity identityOf(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// Several polls pass, so anything the source was going to read is read.
void settle() { std::this_thread::sleep_for(150ms); }

FileTailOptions options(std::vector<std::string> paths, StartAt start_at = StartAt::kBeginning) {
  FileTailOptions o;
  o.name = "logs";
  o.paths = std::move(paths);
  o.start_at = start_at;
  o.poll_interval = 10ms;
  return o;
}

std::unique_ptr<Source> startSource(const FileTailOptions& o, cistern::RecordSink& sink) {
  auto made = makeFileTailSource(o, sink);
  INFO((made ? std::string() : made.error().describe()));
  REQUIRE(made);
  auto started = (*made)->start();
  INFO((started ? std::string() : started.error().describe()));
  REQUIRE(started);
  return std::move(*made);
}

std::uint64_t counter(const Source& s, const std::string& name) {
  for (const auto& c : s.counters()) {
    if (c.name == name) return c.value;
  }
  FAIL("no counter " << name);
  return 0;
}

std::string numbered(const std::string& prefix, int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i) out += prefix + std::to_string(i) + "\n";
  return out;
}

std::vector<std::string> numberedList(const std::string& prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// Every log record of the ring, in order.
std::vector<Line> ringLines(const cistern::buffer::LmdbRing& ring) {
  std::vector<Line> out;
  cistern::buffer::ReadBatch batch;
  cistern::buffer::FrameId from = 0;
  for (;;) {
    cistern::buffer::FrameId next = 0;
    auto n = ring.scan(from, batch, {}, &next);
    REQUIRE(n);
    if (*n == 0) break;
    for (const auto& f : batch.frames()) {
      cistern::RecordReader reader(f.body);
      while (const auto* r = reader.next()) {
        auto meta = cistern::decodeLogLineMeta(r->meta);
        REQUIRE(meta);
        out.push_back(
            Line{std::string(reinterpret_cast<const char*>(r->payload.data()), r->payload.size()),
                 meta->flags, meta->offset, std::string(meta->path)});
      }
      REQUIRE_FALSE(reader.failed());
    }
    from = next;
  }
  return out;
}

cistern::buffer::RingOptions ringOptions(const std::filesystem::path& dir) {
  cistern::buffer::RingOptions o;
  o.dir = dir;
  o.max_size = 64ULL << 20U;
  o.sync = cistern::buffer::SyncMode::kNone;
  o.commit_interval = 2ms;
  return o;
}

}  // namespace

// --- LineScanner -------------------------------------------------------------------------------

TEST_CASE("the scanner cuts lines at \\n, strips \\r\\n and keeps empty and binary lines",
          "[unit]") {
  const std::string binary("a\0b\xff", 4);
  auto lines = scanAll("one\r\n\ntwo\n\r\n" + binary + "\nheld", 100, LongLines::kSplit);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == Line{"one", 0, 0, {}});
  CHECK(lines[1] == Line{"", 0, 5, {}});
  CHECK(lines[2] == Line{"two", 0, 6, {}});
  CHECK(lines[3] == Line{"", 0, 10, {}});
  CHECK(lines[4] == Line{binary, 0, 12, {}});
}

TEST_CASE("the scanner holds an incomplete line until its newline, or emits it at finish",
          "[unit]") {
  LineScanner s(100, LongLines::kSplit);
  Collect c;
  s.feed("abc", c);
  CHECK(c.lines.empty());
  CHECK(s.consumed() == 0);
  CHECK(s.readPosition() == 3);
  s.feed("def\nxy\r", c);
  REQUIRE(c.lines.size() == 1);
  CHECK(c.lines[0] == Line{"abcdef", 0, 0, {}});
  CHECK(s.consumed() == 7);
  CHECK(s.finish(c));
  REQUIRE(c.lines.size() == 2);
  CHECK(c.lines[1] == Line{"xy", kLogLineNoNewline, 7, {}});
  CHECK(s.consumed() == 10);
  CHECK_FALSE(s.finish(c));
}

TEST_CASE("the scanner returns at a line end once its handler is full", "[unit]") {
  LineScanner s(100, LongLines::kSplit);
  Collect c;
  c.limit = 2;
  const std::string data = "a\nbb\n\nccc\ntail";
  const std::size_t took = s.feed(data, c);
  CHECK(took == 5);
  CHECK(s.readPosition() == 5);
  CHECK(c.lines.size() == 2);
  c.limit = SIZE_MAX;
  CHECK(s.feed(std::string_view(data).substr(took), c) == data.size() - took);
  CHECK(textsOf(c.lines) == std::vector<std::string>{"a", "bb", "", "ccc"});
  CHECK(s.readPosition() == data.size());
}

TEST_CASE("split: records of max_line_bytes, flagged on all but the last", "[unit]") {
  SECTION("exactly max bytes is one record, with \\n or \\r\\n") {
    CHECK(scanAll("abcd\n", 4, LongLines::kSplit) == std::vector<Line>{{"abcd", 0, 0, {}}});
    CHECK(scanAll("abcd\r\n", 4, LongLines::kSplit) == std::vector<Line>{{"abcd", 0, 0, {}}});
  }
  SECTION("a long line in one piece") {
    CHECK(scanAll("abcdefghij\nk\n", 4, LongLines::kSplit) ==
          std::vector<Line>{{"abcd", kLogLineSplit, 0, {}},
                            {"efgh", kLogLineSplit, 4, {}},
                            {"ij", 0, 8, {}},
                            {"k", 0, 11, {}}});
  }
  SECTION("a long line fed byte by byte gives the same records, held bytes stay bounded") {
    LineScanner s(4, LongLines::kSplit);
    Collect c;
    for (char ch : std::string("abcdefghij\r\nk\n")) {
      s.feed(std::string_view(&ch, 1), c);
      CHECK(s.pendingBytes() <= 5);
    }
    CHECK(c.lines == std::vector<Line>{{"abcd", kLogLineSplit, 0, {}},
                                       {"efgh", kLogLineSplit, 4, {}},
                                       {"ij", 0, 8, {}},
                                       {"k", 0, 12, {}}});
    CHECK(s.takeCounts().split == 1);
  }
}

TEST_CASE("truncate: the first max_line_bytes, the rest skipped without being held", "[unit]") {
  LineScanner s(4, LongLines::kTruncate);
  Collect c;
  s.feed("abcdefgh", c);
  REQUIRE(c.lines.size() == 1);
  CHECK(c.lines[0] == Line{"abcd", kLogLineTruncated, 0, {}});
  CHECK(s.discarding());
  CHECK(s.pendingBytes() == 0);
  s.feed(std::string(1000, 'x'), c);
  CHECK(s.pendingBytes() == 0);
  CHECK(s.consumed() == 1008);
  s.feed("yy\nok\nlonger\n", c);
  CHECK(c.lines == std::vector<Line>{{"abcd", kLogLineTruncated, 0, {}},
                                     {"ok", 0, 1011, {}},
                                     {"long", kLogLineTruncated, 1014, {}}});
  CHECK_FALSE(s.discarding());
  CHECK(s.takeCounts().truncated == 2);
}

// The promise behind saving consumed() with the records: restarting there after any feed gives
// exactly the records an uninterrupted scan gives, whatever the chunking.
TEST_CASE("restarting a scanner at consumed() neither repeats nor loses a record", "[unit]") {
  std::mt19937 rng(Catch::rngSeed());
  const char alphabet[] = {'a', 'b', '\r', '\n', '\n', 'c'};
  for (int round = 0; round < 300; ++round) {
    std::string data;
    const auto len = 1 + rng() % 200;
    for (std::uint32_t i = 0; i < len; ++i) data += alphabet[rng() % sizeof alphabet];
    const std::uint64_t max = 1 + rng() % 6;
    const LongLines mode = rng() % 2 == 0 ? LongLines::kSplit : LongLines::kTruncate;
    INFO("round " << round << " max " << max << " mode " << int(mode));
    const auto expected = scanAll(data, max, mode);

    Collect got;
    LineScanner s(max, mode);
    while (s.readPosition() < data.size()) {
      const std::size_t pos = s.readPosition();
      const std::size_t n = 1 + rng() % 20;
      s.feed(std::string_view(data).substr(pos, n), got);
      if (rng() % 3 == 0) {
        // A crash: what is held is lost, the saved offset and mode are what a restart gets.
        const auto offset = s.consumed();
        const bool discarding = s.discarding();
        s = LineScanner(max, mode);
        s.reset(offset, discarding);
      }
    }
    // Held bytes of a last line without newline are not emitted by either.
    CHECK(got.lines == expected);
  }
}

// --- state and fingerprints --------------------------------------------------------------------

TEST_CASE("file state round-trips and corrupt values are refused", "[unit]") {
  using namespace cistern::capture::tail;
  SavedFile f{{2049, 1234567}, {256, 0xdeadbeefcafef00dULL}, 98765, true, "/var/log/my app.log"};
  const std::string v = encodeState(f);
  auto back = decodeState(v);
  REQUIRE(back);
  CHECK(back->id == f.id);
  CHECK(back->fp == f.fp);
  CHECK(back->offset == f.offset);
  CHECK(back->discarding);
  CHECK(back->path == f.path);

  CHECK(stateKey("web", f.id) == "tail/web/2049:1234567");
  CHECK(parseStateKeySuffix("2049:1234567") == FileIdentity{2049, 1234567});
  CHECK_FALSE(parseStateKeySuffix("sub/2049:1"));
  CHECK_FALSE(parseStateKeySuffix("2049:"));
  CHECK_FALSE(parseStateKeySuffix("x:1"));

  for (const std::string& bad : std::vector<std::string>{
           "", "1", "2 2049 1234567 256 ff 98765 0 p", "1 2049 1234567 256 ff 98765 2 p",
           "1 2049 1234567 256 zz 98765 0 p", "1 -1 1234567 256 ff 98765 0 p",
           "1 2049 1234567 256 ff 98765", "garbage with spaces", v.substr(0, v.size() / 2)}) {
    INFO(bad);
    CHECK_FALSE(decodeState(bad));
  }
}

TEST_CASE("a provisional fingerprint keeps matching as the file grows past it", "[unit]") {
  using namespace cistern::capture::tail;
  const std::string content = numbered("line ", 0, 100);
  const auto small = takeFingerprint(content.substr(0, 10), 256);
  CHECK(small.length == 10);
  // Grown: the first 10 bytes still match, and the fingerprint is retaken over 256 bytes.
  auto grown = matchFingerprint(content.substr(0, 300), small, 256);
  REQUIRE(grown);
  CHECK(grown->length == 256);
  CHECK(*grown == takeFingerprint(content, 256));
  CHECK(matchFingerprint(content, *grown, 256) == grown);
  // Another file with the same inode, or the same file rewritten: the first bytes differ.
  std::string other = content;
  other[3] = 'X';
  CHECK_FALSE(matchFingerprint(other, small, 256));
  CHECK_FALSE(matchFingerprint(other, *grown, 256));
  // Shorter than what was fingerprinted: not the same file any more.
  CHECK_FALSE(matchFingerprint(content.substr(0, 100), *grown, 256));
}

// --- the source --------------------------------------------------------------------------------

TEST_CASE("options are checked when the source is made", "[component]") {
  TempDir dir("cistern-tail");
  MemorySink sink;
  auto o = options({(dir / "*.log").string()});
  CHECK(makeFileTailSource(o, sink));  // matching nothing yet is fine

  auto bad = o;
  bad.paths = {(dir / "missing/*.log").string()};
  auto r = makeFileTailSource(bad, sink);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kConfig);
  CHECK(r.error().message.rfind("input 'logs': ", 0) == 0);

  bad = o;
  bad.paths.clear();
  CHECK_FALSE(makeFileTailSource(bad, sink));
  bad = o;
  bad.name = "";
  CHECK_FALSE(makeFileTailSource(bad, sink));
  bad = o;
  bad.max_line_bytes = 0;
  CHECK_FALSE(makeFileTailSource(bad, sink));
}

TEST_CASE("start_at: end skips what was there, beginning reads it", "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  appendTo(log, numbered("old ", 0, 5) + "being writ");
  MemorySink sink;

  SECTION("end") {
    auto src = startSource(options({log.string()}, StartAt::kEnd), sink);
    appendTo(log, "ten\n" + numbered("new ", 0, 3));
    REQUIRE(eventually([&] { return sink.size() >= 4; }));
    settle();
    // The line being written when the source started is read whole.
    CHECK(textsOf(linesOf(sink)) ==
          std::vector<std::string>{"being written", "new 0", "new 1", "new 2"});
    CHECK(linesOf(sink)[0].offset == 30);
    CHECK(linesOf(sink)[0].path == log.string());
  }
  SECTION("beginning") {
    auto src = startSource(options({log.string()}, StartAt::kBeginning), sink);
    appendTo(log, "ten\n");
    REQUIRE(eventually([&] { return sink.size() >= 6; }));
    settle();
    auto expected = numberedList("old ", 0, 5);
    expected.emplace_back("being written");
    CHECK(textsOf(linesOf(sink)) == expected);
    CHECK(counter(*src, "lines_read") == 6);
    CHECK(counter(*src, "lines_stored") == 6);
    CHECK(counter(*src, "files_watched") == 1);
    CHECK(counter(*src, "bytes_read") == 5 * 6 + 14);
  }
}

TEST_CASE("a file created after the start is found by the glob and read from its beginning",
          "[component]") {
  TempDir dir("cistern-tail");
  MemorySink sink;
  auto src = startSource(options({(dir / "*.log").string()}, StartAt::kEnd), sink);
  settle();
  CHECK(counter(*src, "files_watched") == 0);
  appendTo(dir / "later.log", numbered("x", 0, 3));
  appendTo(dir / "later.txt", "not matched\n");
  REQUIRE(eventually([&] { return sink.size() >= 3; }));
  settle();
  const auto lines = linesOf(sink);
  CHECK(textsOf(lines) == numberedList("x", 0, 3));
  CHECK(lines[0].path == (dir / "later.log").string());
  CHECK(counter(*src, "files_watched") == 1);
}

TEST_CASE(
    "rename rotation: the old file is read to its end through its descriptor, the new one "
    "from its start",
    "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  const auto rotated = dir / "app.log.1";
  appendTo(log, numbered("a", 0, 3));
  MemorySink sink;

  SECTION("the rotated name is not matched: the old file is finished and closed") {
    auto src = startSource(options({log.string()}, StartAt::kBeginning), sink);
    REQUIRE(eventually([&] { return sink.size() >= 3; }));
    // The application keeps writing to its descriptor after the rename, then reopens.
    const int old_fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    REQUIRE(old_fd >= 0);
    std::filesystem::rename(log, rotated);
    appendTo(log, numbered("b", 0, 2));
    const std::string late = "a3\nunfinished";
    REQUIRE(::write(old_fd, late.data(), late.size()) == static_cast<ssize_t>(late.size()));
    ::close(old_fd);
    REQUIRE(eventually([&] { return sink.size() >= 7; }));
    settle();
    std::vector<std::string> from_old;
    std::vector<std::string> from_new;
    for (const auto& l : linesOf(sink)) {
      if (l.path == log.string() && l.text[0] == 'b') {
        from_new.push_back(l.text);
        CHECK(l.flags == 0);
      } else {
        from_old.push_back(l.text);
        CHECK(l.flags == (l.text == "unfinished" ? kLogLineNoNewline : 0));
      }
    }
    CHECK(from_old == std::vector<std::string>{"a0", "a1", "a2", "a3", "unfinished"});
    CHECK(from_new == numberedList("b", 0, 2));
    CHECK(counter(*src, "files_rotated") == 1);
    CHECK(eventually([&] { return counter(*src, "files_watched") == 1; }));
    CHECK(sink.size() == 7);
  }
  SECTION("the rotated name is matched too: the old file goes on under its new name") {
    auto src = startSource(options({(dir / "app.log*").string()}, StartAt::kBeginning), sink);
    REQUIRE(eventually([&] { return sink.size() >= 3; }));
    const int old_fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    REQUIRE(old_fd >= 0);
    std::filesystem::rename(log, rotated);
    settle();
    REQUIRE(::write(old_fd, "a3\n", 3) == 3);
    ::close(old_fd);
    appendTo(log, numbered("b", 0, 2));
    REQUIRE(eventually([&] { return sink.size() >= 6; }));
    settle();
    const auto lines = linesOf(sink);
    REQUIRE(lines.size() == 6);
    std::vector<Line> old_lines;
    for (const auto& l : lines) {
      if (l.text[0] == 'a') old_lines.push_back(l);
    }
    REQUIRE(old_lines.size() == 4);
    CHECK(old_lines[3] == Line{"a3", 0, 9, rotated.string()});
    CHECK(counter(*src, "files_rotated") == 1);
    CHECK(counter(*src, "files_watched") == 2);
  }
}

TEST_CASE("copytruncate: a file that shrinks or is rewritten is read again from its start",
          "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  appendTo(log, numbered("first ", 0, 20));
  MemorySink sink;
  auto o = options({log.string()}, StartAt::kBeginning);
  o.fingerprint_bytes = 16;

  SECTION("shrunk below the offset at the next poll") {
    auto src = startSource(o, sink);
    REQUIRE(eventually([&] { return sink.size() >= 20; }));
    std::filesystem::copy_file(log, dir / "copy");
    std::filesystem::resize_file(log, 0);
    settle();
    appendTo(log, numbered("second ", 0, 2));
    REQUIRE(eventually([&] { return sink.size() >= 22; }));
    settle();
    const auto lines = linesOf(sink);
    REQUIRE(lines.size() == 22);
    CHECK(lines[20] == Line{"second 0", 0, 0, log.string()});
    CHECK(lines[21] == Line{"second 1", 0, 9, log.string()});
    CHECK(counter(*src, "files_truncated") == 1);
  }
  SECTION("truncated and written past the old offset before the next poll") {
    o.poll_interval = 300ms;
    auto src = startSource(o, sink);
    REQUIRE(eventually([&] { return sink.size() >= 20; }));
    // Right after a poll, so the truncation and the rewrite land between two polls.
    std::this_thread::sleep_for(50ms);
    std::filesystem::resize_file(log, 0);
    appendTo(log, numbered("second ", 0, 40));
    REQUIRE(eventually([&] { return sink.size() >= 60; }));
    settle();
    const auto lines = linesOf(sink);
    REQUIRE(lines.size() == 60);
    CHECK(lines[20] == Line{"second 0", 0, 0, log.string()});
    CHECK(textsOf(std::vector<Line>(lines.begin() + 20, lines.end())) ==
          numberedList("second ", 0, 40));
    CHECK(counter(*src, "files_truncated") == 1);
  }
}

TEST_CASE("a file deleted while open is read to its end, then closed", "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  appendTo(log, numbered("a", 0, 2));
  MemorySink sink;
  auto src = startSource(options({(dir / "*.log").string()}, StartAt::kBeginning), sink);
  REQUIRE(eventually([&] { return sink.size() >= 2; }));
  const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::filesystem::remove(log);
  REQUIRE(::write(fd, "a2\nlast", 7) == 7);
  ::close(fd);
  REQUIRE(eventually([&] { return counter(*src, "files_watched") == 0; }));
  const auto lines = linesOf(sink);
  REQUIRE(lines.size() == 4);
  CHECK(lines[2] == Line{"a2", 0, 6, log.string()});
  CHECK(lines[3] == Line{"last", kLogLineNoNewline, 9, log.string()});
  CHECK(counter(*src, "files_rotated") == 0);
  // The inode may be reused: its state is a tombstone now.
  auto state = sink.readStatePrefix("tail/logs/");
  REQUIRE(state);
  REQUIRE(state->size() == 1);
  CHECK(state->front().value.empty());
}

TEST_CASE("long lines are split or truncated, also when written in pieces", "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  MemorySink sink;
  auto o = options({log.string()}, StartAt::kBeginning);
  o.max_line_bytes = 1000;
  const std::string head(1000, 'h');
  const std::string rest(2500, 'r');

  SECTION("split") {
    o.long_lines = LongLines::kSplit;
    appendTo(log, "short\n");
    auto src = startSource(o, sink);
    REQUIRE(eventually([&] { return sink.size() >= 1; }));
    appendTo(log, head);
    settle();
    appendTo(log, rest);
    settle();
    appendTo(log, "\r\nnext\n");
    REQUIRE(eventually([&] { return sink.size() >= 6; }));
    settle();
    const auto lines = linesOf(sink);
    REQUIRE(lines.size() == 6);
    CHECK(lines[1] == Line{head, kLogLineSplit, 6, log.string()});
    CHECK(lines[2] == Line{std::string(1000, 'r'), kLogLineSplit, 1006, log.string()});
    CHECK(lines[3] == Line{std::string(1000, 'r'), kLogLineSplit, 2006, log.string()});
    CHECK(lines[4] == Line{std::string(500, 'r'), 0, 3006, log.string()});
    CHECK(lines[5] == Line{"next", 0, 3508, log.string()});
    CHECK(counter(*src, "lines_split") == 1);
    CHECK(counter(*src, "lines_truncated") == 0);
  }
  SECTION("truncate") {
    o.long_lines = LongLines::kTruncate;
    appendTo(log, "short\n");
    auto src = startSource(o, sink);
    REQUIRE(eventually([&] { return sink.size() >= 1; }));
    appendTo(log, head + "r");
    REQUIRE(eventually([&] { return sink.size() >= 2; }));
    appendTo(log, rest);
    settle();
    // A line of many MiB is skipped without being held.
    appendTo(log, std::string(8U << 20U, 'z') + "\nnext\n");
    REQUIRE(eventually([&] { return sink.size() >= 3; }));
    settle();
    const auto lines = linesOf(sink);
    REQUIRE(lines.size() == 3);
    CHECK(lines[1] == Line{head, kLogLineTruncated, 6, log.string()});
    CHECK(lines[2].text == "next");
    CHECK(counter(*src, "lines_truncated") == 1);
    CHECK(counter(*src, "lines_split") == 0);
  }
}

TEST_CASE("CRLF, empty and binary lines are stored exactly", "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  const std::string binary("\0\x01\xfe\xff bin", 8);
  appendTo(log, "dos\r\n\n\r\n" + binary + "\nend\n");
  MemorySink sink;
  auto src = startSource(options({log.string()}, StartAt::kBeginning), sink);
  REQUIRE(eventually([&] { return sink.size() >= 5; }));
  settle();
  CHECK(textsOf(linesOf(sink)) == std::vector<std::string>{"dos", "", "", binary, "end"});
  // More empty lines than one append carries.
  appendTo(log, std::string(10000, '\n') + "last\n");
  REQUIRE(eventually([&] { return sink.size() >= 10006; }));
  settle();
  const auto lines = linesOf(sink);
  REQUIRE(lines.size() == 10006);
  std::size_t wrong = 0;
  for (std::size_t i = 5; i < 10005; ++i) {
    if (!(lines[i] == Line{"", 0, 21 + (i - 5), log.string()})) ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(lines[10005].text == "last");
}

TEST_CASE("a restart resumes each file at its committed offset, also after a rotation",
          "[component]") {
  TempDir dir("cistern-tail");
  const auto logs = dir / "logs";
  std::filesystem::create_directory(logs);
  const auto log = logs / "app.log";
  auto o = options({(logs / "app.log*").string()}, StartAt::kBeginning);
  o.fingerprint_bytes = 64;
  appendTo(log, "tiny\n");  // shorter than fingerprint_bytes: a provisional fingerprint

  auto runOnce = [&](const std::function<void()>& meanwhile, std::size_t expect_total) {
    auto ring = cistern::buffer::LmdbRing::open(ringOptions(dir / "ring"));
    REQUIRE(ring);
    {
      auto src = startSource(o, **ring);
      if (meanwhile) meanwhile();
      REQUIRE(eventually([&] { return ringLines(**ring).size() >= expect_total; }, 10s));
      settle();
      src->stop();
    }
    REQUIRE((*ring)->close());
  };

  runOnce({}, 1);
  appendTo(log, numbered("a", 0, 50));  // grows past fingerprint_bytes while stopped
  runOnce({}, 51);
  // Rotated while stopped, half read before: the old file is found again under its new name.
  appendTo(log, numbered("a", 50, 60));
  std::filesystem::rename(log, logs / "app.log.1");
  appendTo(log, numbered("b", 0, 5));
  runOnce({}, 66);
  // With start_at=end too: committed offsets win over it.
  appendTo(logs / "app.log.1", "a60\n");
  appendTo(log, numbered("b", 5, 7));
  o.start_at = StartAt::kEnd;
  runOnce([&] { appendTo(log, "b7\n"); }, 70);

  auto ring = cistern::buffer::LmdbRing::open(ringOptions(dir / "ring"));
  REQUIRE(ring);
  const auto lines = ringLines(**ring);
  std::vector<std::string> a;
  std::vector<std::string> b;
  for (const auto& l : lines) (l.text[0] == 'b' ? b : a).push_back(l.text);
  auto expected_a = numberedList("a", 0, 61);
  expected_a.insert(expected_a.begin(), "tiny");
  CHECK(a == expected_a);
  CHECK(b == numberedList("b", 0, 8));
  CHECK(lines.size() == 70);
}

TEST_CASE("a reused inode (same device and inode, other first bytes) is read as a new file",
          "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  appendTo(log, numbered("new ", 0, 40));
  const auto id = identityOf(log);
  MemorySink sink;
  // What the previous file with this inode left behind: another fingerprint, a large offset.
  SavedFile previous{id, cistern::capture::tail::takeFingerprint(numbered("old ", 0, 40), 256), 200,
                     false, log.string()};
  const std::vector<cistern::StateWrite> state{{cistern::capture::tail::stateKey("logs", id),
                                                cistern::capture::tail::encodeState(previous)}};
  REQUIRE(sink.append({}, state, cistern::Wait::kYes));

  SECTION("another fingerprint: from the start") {
    auto src = startSource(options({log.string()}, StartAt::kEnd), sink);
    REQUIRE(eventually([&] { return sink.size() >= 40; }));
    settle();
    CHECK(textsOf(linesOf(sink)) == numberedList("new ", 0, 40));
  }
  SECTION("the same fingerprint: from the saved offset") {
    previous.fp = cistern::capture::tail::takeFingerprint(numbered("new ", 0, 40), 256);
    const std::vector<cistern::StateWrite> same{{cistern::capture::tail::stateKey("logs", id),
                                                 cistern::capture::tail::encodeState(previous)}};
    REQUIRE(sink.append({}, same, cistern::Wait::kYes));
    auto src = startSource(options({log.string()}, StartAt::kBeginning), sink);
    REQUIRE(eventually([&] { return sink.size() >= 10; }));
    settle();
    CHECK(textsOf(linesOf(sink)) == numberedList("new ", 30, 40));  // 30 lines of 6 bytes + 20
  }
  SECTION("a corrupt saved value is ignored (start_at applies)") {
    const std::vector<cistern::StateWrite> corrupt{
        {cistern::capture::tail::stateKey("logs", id), "1 garbage"}};
    REQUIRE(sink.append({}, corrupt, cistern::Wait::kYes));
    auto src = startSource(options({log.string()}, StartAt::kEnd), sink);
    appendTo(log, "after\n");
    REQUIRE(eventually([&] { return sink.size() >= 1; }));
    settle();
    CHECK(textsOf(linesOf(sink)) == std::vector<std::string>{"after"});
  }
}

TEST_CASE("a real inode reuse after deletion is read from the start", "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  appendTo(log, numbered("first ", 0, 30));
  const auto first_id = identityOf(log);
  auto o = options({log.string()}, StartAt::kEnd);
  {
    auto ring = cistern::buffer::LmdbRing::open(ringOptions(dir / "ring"));
    REQUIRE(ring);
    auto src = startSource(o, **ring);
    settle();
    src->stop();
    REQUIRE((*ring)->close());
  }
  // Delete and create until the filesystem hands out the same inode (ext4 usually does at once;
  // filesystems that never reuse inode numbers skip this test).
  std::filesystem::remove(log);
  bool reused = false;
  for (int i = 0; i < 200 && !reused; ++i) {
    appendTo(log, numbered("second ", 0, 30));
    reused = identityOf(log) == first_id;
    if (!reused) std::filesystem::remove(log);
  }
  if (!reused) {
    WARN("this filesystem did not reuse the inode; covered by the crafted-state test");
    return;
  }
  auto ring = cistern::buffer::LmdbRing::open(ringOptions(dir / "ring"));
  REQUIRE(ring);
  auto src = startSource(o, **ring);
  REQUIRE(eventually([&] { return ringLines(**ring).size() >= 30; }));
  settle();
  CHECK(textsOf(ringLines(**ring)) == numberedList("second ", 0, 30));
}

TEST_CASE("stop() returns when the sink it is blocked on is closed", "[component]") {
  TempDir dir("cistern-tail");
  const auto log = dir / "app.log";
  appendTo(log, numbered("x", 0, 10));
  MemorySink sink;
  sink.setFull(true);
  auto src = startSource(options({log.string()}, StartAt::kBeginning), sink);
  REQUIRE(eventually([&] { return counter(*src, "lines_read") == 10; }));
  std::thread stopper([&] { src->stop(); });
  std::this_thread::sleep_for(50ms);
  sink.close();
  stopper.join();
  CHECK(counter(*src, "lines_stored") == 0);
  CHECK(counter(*src, "lines_read") == 10);
  CHECK(sink.size() == 0);
}
