// What LmdbRing::verify() found.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cistern/buffer/types.h"

namespace cistern::buffer {

struct VerifyReport {
  std::uint64_t frames_checked = 0;
  std::uint64_t records_checked = 0;
  std::uint64_t bytes_checked = 0;  // stored bytes read and checksummed
  // Frames whose stored form is damaged (checksum, header, records) or that disagree with the
  // index; each id appears once.
  std::vector<FrameId> bad_frames;
  // Every problem found, frame-level and ring-level (totals, consumer accounting), as text.
  std::vector<std::string> problems;

  [[nodiscard]] bool ok() const { return problems.empty(); }
};

}  // namespace cistern::buffer
