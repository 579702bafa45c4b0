// The agent's OpAMP instance UID: 16 bytes, a UUIDv7 made on first start and kept in the data
// directory, so a sensor is the same instance to its management server across restarts.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>

#include "cistern/core/result.h"

namespace cistern::heartbeat {

using InstanceUid = std::array<std::uint8_t, 16>;

// Reads the UID from `file` (its canonical text form, 8-4-4-4-12 hex digits), or makes a new
// UUIDv7 and writes it there (atomically: a temp file renamed over it) when the file does not
// exist. Errors: kIo (the file cannot be read or written), kCorrupt (the file holds something
// that is not a UUID: it is left alone, so an operator can look at it).
Result<InstanceUid> loadOrCreateInstanceUid(const std::filesystem::path& file);

// Writes `uid` to `file` as loadOrCreateInstanceUid() reads it (atomically). Errors: kIo.
Status saveInstanceUid(const std::filesystem::path& file, const InstanceUid& uid);

// A new UUIDv7: 48 bits of Unix milliseconds, version 7, 74 random bits, RFC 9562 variant.
InstanceUid newUuidV7();

// "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".
std::string formatUuid(const InstanceUid& uid);

}  // namespace cistern::heartbeat
