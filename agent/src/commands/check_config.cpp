#include <fmt/format.h>

#include "cistern/agent/commands.h"
#include "cistern/agent/config.h"
#include "cistern/core/units.h"

namespace cistern::agent {

std::filesystem::path bufferDirOf(const std::filesystem::path& data_dir) {
  return data_dir / "buffer";
}

int checkConfigCommand(const std::filesystem::path& file, std::FILE* out, std::FILE* err) {
  std::vector<ConfigDiagnostic> diagnostics;
  auto config = loadConfigFile(file, &diagnostics);
  if (!config) {
    if (diagnostics.empty()) {
      fmt::print(err, "{}\n", config.error().message);
    }
    for (const auto& d : diagnostics) fmt::print(err, "{}\n", d.describe());
    fmt::print(err, "{}: {} problem{} found\n", file.string(), diagnostics.size(),
               diagnostics.size() == 1 ? "" : "s");
    return config.error().code == ErrorCode::kConfig ? kExitCheckFailed : kExitCannotRun;
  }
  const auto& b = config->buffer;
  fmt::print(out, "{}: valid\n", file.string());
  fmt::print(out, "  agent.id        {}\n", config->agent.id);
  fmt::print(out, "  agent.data_dir  {}\n", config->agent.data_dir.string());
  fmt::print(out, "  buffer          {} max, sync {}, when full {}, commit every {} or {}\n",
             formatSize(b.max_size),
             b.sync == buffer::SyncMode::kBatch    ? "batch"
             : b.sync == buffer::SyncMode::kAlways ? "always"
                                                   : "none",
             b.when_full == buffer::FullPolicy::kBlock ? "block" : "drop_oldest",
             formatDuration(b.commit_interval), formatSize(b.commit_max_bytes));
  return kExitOk;
}

}  // namespace cistern::agent
