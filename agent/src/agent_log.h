// The agent module's logger ("agent"), shared by the runtime, the control plane, the status API
// and the commands. Callable from any thread: two threads racing to create it both get the one
// that was registered.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace cistern::agent {

std::shared_ptr<spdlog::logger> agentLogger();

}  // namespace cistern::agent
