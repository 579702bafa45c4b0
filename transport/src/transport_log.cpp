#include "transport_log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace cistern::transport {

std::shared_ptr<spdlog::logger> transportLogger() {
  static const std::shared_ptr<spdlog::logger> instance = [] {
    if (auto existing = spdlog::get("transport")) return existing;
    try {
      return spdlog::stderr_color_mt("transport");
    } catch (const spdlog::spdlog_ex&) {
      // Registered by another thread in the meantime.
      auto existing = spdlog::get("transport");
      return existing ? existing : spdlog::default_logger();
    }
  }();
  return instance;
}

}  // namespace cistern::transport
