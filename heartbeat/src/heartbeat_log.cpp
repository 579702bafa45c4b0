#include "heartbeat_log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace cistern::heartbeat {

std::shared_ptr<spdlog::logger> heartbeatLogger() {
  static const std::shared_ptr<spdlog::logger> instance = [] {
    if (auto existing = spdlog::get("heartbeat")) return existing;
    try {
      return spdlog::stderr_color_mt("heartbeat");
    } catch (const spdlog::spdlog_ex&) {
      // Registered by another thread in the meantime.
      auto existing = spdlog::get("heartbeat");
      return existing ? existing : spdlog::default_logger();
    }
  }();
  return instance;
}

}  // namespace cistern::heartbeat
