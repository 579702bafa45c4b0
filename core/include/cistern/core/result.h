// Result<T> and Error: how every Cistern module reports failure.
//
// Environmental failures (disk, network, bad input, bad config) are returned as an Error with a
// code, a retryable flag and a message naming what failed and why, including the underlying
// library's own text. Exceptions never cross a module boundary.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace cistern {

enum class ErrorCode {
  kInvalidArgument,  // the caller passed something that can never work
  kConfig,           // a configuration value is wrong
  kNotFound,         // a named thing does not exist
  kIo,               // the operating system or a storage library failed
  kCorrupt,          // stored data failed a checksum or a structural check
  kFull,             // a bounded resource has no room; retry after it drains
  kTimeout,          // the operation did not finish in the time given
  kClosed,           // the object was closed or is shutting down
  kUnsupported,      // a valid request this build or platform cannot serve
};

// Returns the lower-case name of a code ("io", "corrupt", ...), for logs and JSON.
const char* errorCodeName(ErrorCode code) noexcept;

struct Error {
  ErrorCode code = ErrorCode::kIo;
  std::string message;
  bool retryable = false;

  // "<code>: <message>", for logs and CLI output.
  [[nodiscard]] std::string describe() const;
};

template <typename T>
using Result = tl::expected<T, Error>;

using Status = Result<void>;

inline tl::unexpected<Error> fail(ErrorCode code, std::string message, bool retryable = false) {
  return tl::unexpected<Error>(Error{code, std::move(message), retryable});
}

inline Status ok() { return {}; }

}  // namespace cistern
