// Splitting a batch for a receiver that refused it as too large (HTTP 413).
#pragma once

#include <optional>
#include <utility>

#include "cistern/core/frames.h"

namespace cistern::transport {

// The records of `batch` in two non-empty halves, in order. A batch of several frames is cut
// between frames, where the halves' body bytes are closest; a batch of one frame is cut between
// its records, at half their count, into two frames with the frame's id. nullopt when it cannot
// be cut: fewer than two records, or one frame whose body does not decode. Pure.
std::optional<std::pair<ReadBatch, ReadBatch>> splitBatch(const ReadBatch& batch);

}  // namespace cistern::transport
