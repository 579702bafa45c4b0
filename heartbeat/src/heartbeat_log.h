// The heartbeat module's logger ("heartbeat"), shared by its sources.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace cistern::heartbeat {

// The "heartbeat" logger, registered on first use (or the one another part of the program
// registered). Any thread.
std::shared_ptr<spdlog::logger> heartbeatLogger();

}  // namespace cistern::heartbeat
