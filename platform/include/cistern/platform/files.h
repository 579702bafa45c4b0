// Small files the agent keeps in its data directory (the instance UID, the last applied remote
// config), written so that a crash or power loss leaves either the old content or the new one.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "cistern/core/result.h"

namespace cistern::platform {

// Writes `content` to `file` atomically: a temporary file beside it, fsync, rename over `file`,
// fsync of the directory. Creates the parent directories. Errors: kIo naming the file and the
// system's reason (the temporary file is removed).
Status writeFileAtomically(const std::filesystem::path& file, std::string_view content);

// The whole file, at most `max_bytes` (more is an error, so a huge file is never slurped).
// Errors: kNotFound when it does not exist, kIo otherwise, naming the file and the reason.
Result<std::string> readSmallFile(const std::filesystem::path& file, std::size_t max_bytes);

}  // namespace cistern::platform
