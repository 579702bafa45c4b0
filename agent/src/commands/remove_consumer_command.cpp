// `cistern buffer remove-consumer NAME -c CONFIG`: deletes the cursor an output left in the ring
// after it was removed from the config. Such a cursor keeps every frame it did not acknowledge
// until eviction; with `when_full: block` it stops the writer once the ring is full, which
// blinds the sensor. The command writes the ring, so it needs the agent stopped (the ring's
// writer lock refuses it otherwise) and the agent's config: the ring opens with the agent's own
// limits, and an output the config (with the stored remote config, as the agent would start)
// still has is refused, since removing its cursor would make it send the whole ring again.
#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "cistern/agent/commands.h"
#include "cistern/buffer/ring.h"
#include "cistern/transport/outputs.h"
#include "control/control_plane.h"

namespace cistern::agent {

int bufferRemoveConsumerCommand(const RemoveConsumerOptions& options, std::FILE* out,
                                std::FILE* err) {
  auto control = ControlPlane::prepare({options.config_file, options.version});
  if (!control) {
    fmt::print(err, "{}\n", control.error().message);
    return kExitCheckFailed;
  }
  const Config& config = (*control)->startConfig();
  const bool configured =
      std::any_of(config.outputs.begin(), config.outputs.end(),
                  [&](const auto& o) { return transport::outputName(o) == options.name; });
  if (configured) {
    fmt::print(err,
               "output '{}' is still configured (in {} or the remote config it runs with): "
               "remove it there first; its cursor removed now would make it send the whole "
               "buffer again\n",
               options.name, options.config_file.string());
    return kExitCannotRun;
  }

  buffer::RingOptions ro = config.buffer;
  ro.dir = bufferDirOf(config.agent.data_dir);
  std::error_code ec;
  if (!std::filesystem::exists(ro.dir / "data.mdb", ec)) {
    fmt::print(err, "no buffer at {} (agent.data_dir of {})\n", ro.dir.string(),
               options.config_file.string());
    return kExitCannotRun;
  }
  auto ring = buffer::LmdbRing::open(ro);
  if (!ring) {
    fmt::print(err, "cannot open the buffer at {}: {}\n", ro.dir.string(), ring.error().message);
    return kExitCannotRun;
  }
  const auto consumers = (*ring)->consumerStats();
  const auto it = std::find_if(consumers.begin(), consumers.end(),
                               [&](const auto& c) { return c.name == options.name; });
  if (it == consumers.end()) {
    std::string names;
    for (const auto& c : consumers) names += (names.empty() ? "" : ", ") + c.name;
    fmt::print(err, "the buffer at {} has no consumer '{}' (it has: {})\n", ro.dir.string(),
               options.name, names.empty() ? "none" : names);
    return kExitCannotRun;
  }
  const buffer::ConsumerStats& removed = *it;
  const auto frames_before = (*ring)->stats().frames;
  if (auto st = (*ring)->removeConsumer(options.name); !st) {
    fmt::print(err, "cannot remove consumer '{}': {}\n", options.name, st.error().message);
    return kExitCannotRun;
  }
  const auto frames_after = (*ring)->stats().frames;
  if (auto st = (*ring)->close(); !st) {
    fmt::print(err, "closing the buffer at {}: {}\n", ro.dir.string(), st.error().message);
    return kExitCannotRun;
  }
  fmt::print(out,
             "removed consumer '{}' from {}: {} records in {} frames it had not acknowledged "
             "are no longer kept for it; {} frames deleted (no other consumer needed them)\n",
             removed.name, ro.dir.string(), removed.pending_records, removed.pending_frames,
             frames_before - std::min(frames_before, frames_after));
  return kExitOk;
}

}  // namespace cistern::agent
