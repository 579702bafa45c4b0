#pragma once

#include <cstdint>

namespace cistern::buffer {

// Frame ids are strictly increasing across restarts and never reused; 0 is never a valid id.
using FrameId = std::uint64_t;

}  // namespace cistern::buffer
