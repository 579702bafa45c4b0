#include "file_tail_lines.h"

#include "cistern/core/record_meta.h"

namespace cistern::capture::tail {

void LineScanner::reset(std::uint64_t offset, bool discarding) {
  consumed_ = offset;
  pending_.clear();
  discarding_ = discarding;
  in_split_ = false;
}

LineScanner::LongLineCounts LineScanner::takeCounts() {
  const LongLineCounts c = counts_;
  counts_ = {};
  return c;
}

std::size_t LineScanner::feed(std::string_view data, LineHandler& out) {
  const std::size_t size = data.size();
  while (!data.empty()) {
    const std::size_t nl = data.find('\n');
    if (discarding_) {
      if (nl == std::string_view::npos) {
        consumed_ += data.size();
        return size;
      }
      consumed_ += nl + 1;
      data.remove_prefix(nl + 1);
      discarding_ = false;
      continue;
    }
    if (nl == std::string_view::npos) {
      pending_.append(data);
      emitHeldLongLine(out);
      return size;
    }
    const std::uint64_t raw_bytes = pending_.size() + nl + 1;
    std::string_view content = data.substr(0, nl);
    if (!pending_.empty()) {
      pending_.append(content);
      content = pending_;
    }
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    emitLine(content, 0, out);
    consumed_ += raw_bytes;
    pending_.clear();
    in_split_ = false;
    data.remove_prefix(nl + 1);
    if (out.full()) break;
  }
  return size - data.size();
}

bool LineScanner::finish(LineHandler& out) {
  if (discarding_ || pending_.empty()) return false;
  std::string_view content = pending_;
  // A lone "\r" at the very end is most likely the first half of a "\r\n" never written.
  if (content.back() == '\r') content.remove_suffix(1);
  emitLine(content, kLogLineNoNewline, out);
  consumed_ += pending_.size();
  pending_.clear();
  in_split_ = false;
  return true;
}

void LineScanner::emitLine(std::string_view content, std::uint8_t flags, LineHandler& out) {
  if (content.size() <= max_) {
    out.line(consumed_, flags, content);
    return;
  }
  if (mode_ == LongLines::kTruncate) {
    ++counts_.truncated;
    out.line(consumed_, static_cast<std::uint8_t>(flags | kLogLineTruncated),
             content.substr(0, max_));
    return;
  }
  if (!in_split_) ++counts_.split;
  std::uint64_t offset = consumed_;
  while (content.size() > max_) {
    out.line(offset, kLogLineSplit, content.substr(0, max_));
    offset += max_;
    content.remove_prefix(max_);
  }
  out.line(offset, flags, content);
}

// Held bytes from `from` are certainly more than one record: more than max_line_bytes + 1, or
// exactly that many without a "\r" at the end that a "\n" could still turn into a terminator.
bool LineScanner::certainlyLong(std::size_t from) const {
  const std::size_t n = pending_.size() - from;
  return n > max_ + 1 || (n == max_ + 1 && pending_[from + max_] != '\r');
}

void LineScanner::emitHeldLongLine(LineHandler& out) {
  if (!certainlyLong(0)) return;
  if (mode_ == LongLines::kTruncate) {
    ++counts_.truncated;
    out.line(consumed_, kLogLineTruncated, std::string_view(pending_).substr(0, max_));
    consumed_ += pending_.size();
    pending_.clear();
    discarding_ = true;
    return;
  }
  if (!in_split_) ++counts_.split;
  in_split_ = true;
  std::size_t from = 0;
  while (certainlyLong(from)) {
    out.line(consumed_, kLogLineSplit, std::string_view(pending_).substr(from, max_));
    consumed_ += max_;
    from += max_;
  }
  pending_.erase(0, from);
}

}  // namespace cistern::capture::tail
