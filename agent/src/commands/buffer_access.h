// Opening a ring on disk for the buffer tools, and its figures as JSON.
#pragma once

#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "cistern/buffer/ring.h"

namespace cistern::agent {

// Opens read-only the ring in `dir`: an agent data directory (the ring is under buffer/) or the
// ring directory itself. Safe beside a running agent. Errors: as LmdbRing::open().
Result<std::unique_ptr<buffer::LmdbRing>> openRingReadOnly(const std::filesystem::path& dir);

// The ring's contents and persisted totals as JSON (`buffer inspect --json`, `run`'s report).
nlohmann::json ringStatsJson(const buffer::RingStats& stats);

}  // namespace cistern::agent
