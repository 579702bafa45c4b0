// The config tables of `outputs:` entries (otlp, syslog, file), kept apart from config.cpp's
// sections and inputs.
#pragma once

#include <vector>

#include "cistern/transport/outputs.h"
#include "schema.h"

namespace cistern::agent::config {

// One alternative per output type, for listOf("outputs", ...).
std::vector<Alternative<transport::OutputOptions>> outputAlternatives();

}  // namespace cistern::agent::config
