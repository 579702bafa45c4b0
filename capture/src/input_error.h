// Errors of an input name it first, so an operator with many inputs knows which one failed.
#pragma once

#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern::capture {

// fail(code, "input 'NAME': MESSAGE").
tl::unexpected<Error> inputError(ErrorCode code, std::string_view input, std::string_view message,
                                 bool retryable = false);

// Checks the name every input needs: 1..255 bytes (it is stored in every record).
Status checkInputName(std::string_view input);

}  // namespace cistern::capture
