// LineScanner: cuts the bytes of a tailed file into line records (file tail internals).
//
// Bytes are fed in file order as they are read. A line is emitted once its "\n" is seen, without
// its terminator ("\n" or "\r\n"). A line longer than max_line_bytes is split into records of
// max_line_bytes (kLogLineSplit on all but the last) or cut to its first max_line_bytes
// (kLogLineTruncated, the rest skipped up to the next "\n"). At most max_line_bytes + 1 bytes of
// an incomplete line are held, however long the line, so a huge line never sits in memory.
//
// consumed() is the offset after the last byte emitted or skipped: the offset to save with the
// records emitted so far. Restarting there (reset(consumed(), discarding())) neither repeats nor
// loses a byte: in split mode the next record simply continues the line, and discarding() says
// that the rest of a truncated line is still to be skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cistern/capture/file_tail_source.h"

namespace cistern::capture::tail {

// Receives the records a LineScanner cuts; `content` is valid only during the call.
class LineHandler {
 public:
  virtual void line(std::uint64_t offset, std::uint8_t flags, std::string_view content) = 0;
  // True when the handler wants feed() to return at the next line end (its batch is full).
  [[nodiscard]] virtual bool full() const { return false; }

 protected:
  ~LineHandler() = default;
};

class LineScanner {
 public:
  // max_line_bytes >= 1.
  LineScanner(std::uint64_t max_line_bytes, LongLines mode) : max_(max_line_bytes), mode_(mode) {}

  // Starts over at file offset `offset`; `discarding`: inside the skipped rest of a truncated
  // line. Drops any incomplete line held.
  void reset(std::uint64_t offset, bool discarding);

  // Scans `data`, the file's bytes at readPosition(), emitting every record it completes.
  // Returns how many bytes it took: all of them, or fewer when `out` became full at a line end
  // (the rest is to be fed again, from the new readPosition()).
  std::size_t feed(std::string_view data, LineHandler& out);

  // The file will not grow any more (it was rotated away and read to its end): emits the
  // incomplete last line, if any, flagged kLogLineNoNewline. Returns whether it emitted one.
  bool finish(LineHandler& out);

  // Offset after the last byte emitted or skipped.
  [[nodiscard]] std::uint64_t consumed() const { return consumed_; }
  // Offset of the next byte to feed: consumed() + the bytes of an incomplete line held.
  [[nodiscard]] std::uint64_t readPosition() const { return consumed_ + pending_.size(); }
  [[nodiscard]] std::uint64_t pendingBytes() const { return pending_.size(); }
  // True while the rest of a truncated line is being skipped.
  [[nodiscard]] bool discarding() const { return discarding_; }

  // Lines truncated and lines split since the last call (each long line counted once).
  struct LongLineCounts {
    std::uint64_t truncated = 0;
    std::uint64_t split = 0;
  };
  LongLineCounts takeCounts();

 private:
  // Emits a complete line (terminator removed) that starts at consumed_.
  void emitLine(std::string_view content, std::uint8_t flags, LineHandler& out);
  // Emits what is certainly part of a long line from the incomplete line held.
  void emitHeldLongLine(LineHandler& out);
  [[nodiscard]] bool certainlyLong(std::size_t from) const;

  std::uint64_t max_;
  LongLines mode_;
  std::uint64_t consumed_ = 0;
  std::string pending_;
  bool discarding_ = false;
  bool in_split_ = false;  // records of the current line were already emitted (split mode)
  LongLineCounts counts_;
};

}  // namespace cistern::capture::tail
