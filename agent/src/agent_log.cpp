#include "agent_log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace cistern::agent {

std::shared_ptr<spdlog::logger> agentLogger() {
  if (auto existing = spdlog::get("agent")) return existing;
  try {
    return spdlog::stderr_color_mt("agent");
  } catch (const spdlog::spdlog_ex&) {
    auto existing = spdlog::get("agent");
    return existing ? existing : spdlog::default_logger();
  }
}

}  // namespace cistern::agent
