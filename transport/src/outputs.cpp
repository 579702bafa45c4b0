#include "cistern/transport/outputs.h"

#include <type_traits>

namespace cistern::transport {

const std::string& outputName(const OutputOptions& output) {
  return std::visit([](const auto& o) -> const std::string& { return o.name; }, output);
}

const char* outputType(const OutputOptions& output) {
  return std::visit(
      [](const auto& o) -> const char* {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, OtlpOutputOptions>) {
          return "otlp";
        } else if constexpr (std::is_same_v<T, SyslogOutputOptions>) {
          return "syslog";
        } else {
          return "file";
        }
      },
      output);
}

}  // namespace cistern::transport
