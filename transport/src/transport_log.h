// The transport module's logger ("transport"), shared by all its sources.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace cistern::transport {

// The "transport" logger, registered on first use (or the one another part of the module
// registered). Any thread.
std::shared_ptr<spdlog::logger> transportLogger();

}  // namespace cistern::transport
