#include "output_senders.h"

#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "file_sender.h"

namespace cistern::transport {

Result<OutputSenders> makeOutputSenders(platform::EventLoop& loop, const OutputOptions& options,
                                        const Identity& identity) {
  OutputSenders out;
  if (const auto* file = std::get_if<FileOutputOptions>(&options)) {
    auto sender = makeFileSender(loop, *file, identity.version);
    if (!sender) return tl::unexpected(sender.error());
    out.senders.push_back(std::move(*sender));
    return out;
  }
  return fail(ErrorCode::kUnsupported,
              fmt::format("output '{}': type {} is not built yet", outputName(options),
                          outputType(options)));
}

BatchOptions batchOptionsOf(const OutputOptions& options) {
  return std::visit([](const auto& o) { return o.batch; }, options);
}

RetryOptions retryOptionsOf(const OutputOptions& options) {
  return std::visit(
      [](const auto& o) -> RetryOptions {
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, FileOutputOptions>) {
          // A local disk has no endpoints to fail over to; retry a full or failing disk gently.
          RetryOptions r;
          r.initial_backoff = std::chrono::milliseconds(1000);
          r.max_backoff = std::chrono::milliseconds(30000);
          return r;
        } else {
          return o.retry;
        }
      },
      options);
}

}  // namespace cistern::transport
