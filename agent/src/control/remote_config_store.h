// RemoteConfigStore: the last remote config the agent applied, kept in the data directory
// (`<data_dir>/opamp/remote_config.yaml` and `remote_config.hash`), so that a sensor restarted
// while its management server is unreachable runs with what the server last gave it.
//
// Both files are written atomically (platform/files.h), the hash last: a crash between the two
// leaves a config whose hash does not match, which load() refuses, and the agent starts on its
// local file. Threads: one user at a time (the main thread).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "cistern/core/result.h"

namespace cistern::agent {

struct StoredRemoteConfig {
  std::string hash;  // the server's config hash (opaque bytes)
  std::string text;  // the YAML as the server sent it
};

class RemoteConfigStore {
 public:
  // Most a stored config may hold (the config parser's own bound is 1 MiB).
  static constexpr std::size_t kMaxBytes = std::size_t{2} << 20U;

  explicit RemoteConfigStore(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // The stored config; nullopt when none was stored (or it was cleared). Errors: kIo (cannot be
  // read), kCorrupt (the files do not belong together: the text's checksum is not the one stored
  // with the hash).
  [[nodiscard]] Result<std::optional<StoredRemoteConfig>> load() const;
  // Replaces what is stored. Errors: kIo.
  Status save(const StoredRemoteConfig& config) const;
  // Forgets the stored config (the server withdrew it). Errors: kIo.
  Status clear() const;

  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

 private:
  [[nodiscard]] std::filesystem::path textFile() const { return dir_ / "remote_config.yaml"; }
  [[nodiscard]] std::filesystem::path hashFile() const { return dir_ / "remote_config.hash"; }

  std::filesystem::path dir_;
};

// Lower-case hex of bytes ("3f2a..."), for logs, files and the status API.
std::string toHex(std::string_view bytes);

}  // namespace cistern::agent
