// The transport module's logger ("transport"), for the syslog output's sources.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace cistern::transport {

// The "transport" logger, registered on first use (or the one another part of the module
// registered). Any thread.
std::shared_ptr<spdlog::logger> syslogLogger();

}  // namespace cistern::transport
