#pragma once

#include "cistern/core/frames.h"

namespace cistern::buffer {

// Frame ids are strictly increasing across restarts and never reused; 0 is never a valid id.
using cistern::FrameId;

}  // namespace cistern::buffer
