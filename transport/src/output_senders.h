// Builds the Senders of one output from its options: one per endpoint, sharing what the
// protocol shares between endpoints (an OTLP output's HTTP client).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "cistern/core/result.h"
#include "cistern/platform/event_loop.h"
#include "cistern/transport/outputs.h"
#include "sender.h"

namespace cistern::transport {

// What an output's senders share; closed after the senders (on the loop thread).
class SharedResources {
 public:
  virtual ~SharedResources() = default;
  // Releases connections and handles; `closed` runs on the loop thread when done.
  virtual void close(std::function<void()> closed) = 0;
};

struct OutputSenders {
  std::vector<std::unique_ptr<Sender>> senders;  // one per endpoint, in the configured order
  std::unique_ptr<SharedResources> shared;       // may be null
};

// On the loop thread. Errors (kConfig) name the output: a bad endpoint, unreadable TLS files.
Result<OutputSenders> makeOutputSenders(platform::EventLoop& loop, const OutputOptions& options,
                                        const Identity& identity);

BatchOptions batchOptionsOf(const OutputOptions& options);
RetryOptions retryOptionsOf(const OutputOptions& options);
// The file output has no receiver to probe or spare: defaults, and no drain limit.
HeartbeatOptions heartbeatOptionsOf(const OutputOptions& options);
DrainOptions drainOptionsOf(const OutputOptions& options);

}  // namespace cistern::transport
