#include "input_error.h"

#include <fmt/format.h>

#include "cistern/core/record.h"

namespace cistern::capture {

tl::unexpected<Error> inputError(ErrorCode code, std::string_view input, std::string_view message,
                                 bool retryable) {
  return fail(code, fmt::format("input '{}': {}", input, message), retryable);
}

Status checkInputName(std::string_view input) {
  if (input.empty() || input.size() > kMaxInputNameBytes) {
    return fail(ErrorCode::kConfig, fmt::format("an input name has 1 to {} bytes; '{}' has {}",
                                                kMaxInputNameBytes, input, input.size()));
  }
  return ok();
}

}  // namespace cistern::capture
