// The config tables of what talks to the network: `outputs:` entries (otlp, syslog, file),
// `opamp:` and `status:`, kept apart from config.cpp's sections and inputs.
#pragma once

#include <vector>

#include "cistern/agent/config.h"
#include "cistern/heartbeat/opamp.h"
#include "cistern/transport/outputs.h"
#include "schema.h"

namespace cistern::agent::config {

// One alternative per output type, for listOf("outputs", ...).
std::vector<Alternative<transport::OutputOptions>> outputAlternatives();

// `opamp:`: the management server.
Table<heartbeat::OpampOptions> opampTable();

// `status:`: the local status API.
Table<StatusSection> statusTable();

}  // namespace cistern::agent::config
