#include "cistern/core/result.h"

namespace cistern {

const char* errorCodeName(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kConfig:
      return "config";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kCorrupt:
      return "corrupt";
    case ErrorCode::kFull:
      return "full";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kClosed:
      return "closed";
    case ErrorCode::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

std::string Error::describe() const { return std::string(errorCodeName(code)) + ": " + message; }

}  // namespace cistern
