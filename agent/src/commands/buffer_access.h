// Opening a ring on disk for the read-only buffer tools.
#pragma once

#include <filesystem>
#include <memory>

#include "cistern/buffer/ring.h"

namespace cistern::agent {

// Opens read-only the ring in `dir`: an agent data directory (the ring is under buffer/) or the
// ring directory itself. Safe beside a running agent. Errors: as LmdbRing::open().
Result<std::unique_ptr<buffer::LmdbRing>> openRingReadOnly(const std::filesystem::path& dir);

}  // namespace cistern::agent
