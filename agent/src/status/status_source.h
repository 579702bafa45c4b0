// StatusSource: what the local status API serves, provided by the agent's runtime.
//
// The status server (status_server.h) calls these from its own threads; implementations are
// thread-safe and quick (they read counters and snapshots, never wait for I/O).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace cistern::agent {

// One sample of a Prometheus metric family.
struct Metric {
  // Prometheus name, units in the name as Prometheus does (`cistern_output_records_acked_total`,
  // `cistern_buffer_used_bytes`, `cistern_output_down_seconds_total`).
  std::string name;
  std::string help;                                         // one line
  std::string type;                                         // "counter" or "gauge"
  std::vector<std::pair<std::string, std::string>> labels;  // {"output", "processor"}
  double value = 0;
};

class StatusSource {
 public:
  virtual ~StatusSource() = default;

  struct Health {
    bool ok = true;
    std::string reason;  // why not, one line per problem; or a summary when ok
  };

  // Every counter and gauge, grouped by name (samples of one name are consecutive).
  [[nodiscard]] virtual std::vector<Metric> metrics() const = 0;
  // The agent's state as one JSON object (what `cistern status` shows).
  [[nodiscard]] virtual std::string statusJson() const = 0;
  // Healthy: every input runs and the buffer is writable.
  [[nodiscard]] virtual Health health() const = 0;
};

}  // namespace cistern::agent
