// Source: one configured input (a pcap interface or file, a set of tailed files, a syslog
// listener) that captures records into a RecordSink.
//
// Each source owns its threads: a pcap source one capture thread, a file tail or syslog source
// one thread running its own libuv loop (docs/architecture.md says why). The agent creates
// sources with the make*Source() factories, which check the options and acquire what can fail
// early (open the interface or file, compile the filter, bind the port), so a bad config is
// reported before anything runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cistern/core/counter.h"
#include "cistern/core/result.h"

namespace cistern::capture {

using cistern::Counter;

class Source {
 public:
  virtual ~Source() = default;

  // The input's name from the config (every record carries it).
  [[nodiscard]] virtual const std::string& name() const = 0;

  // Starts capturing on the source's own thread. Call once. Errors name the input.
  virtual Status start() = 0;

  // Stops capturing, hands what it already read to the sink, and joins its thread. Returns
  // within about a second (a blocked sink is given up on, and what was not handed over is
  // counted). Idempotent; also called by the destructor.
  virtual void stop() = 0;

  // True when a finite input (a pcap file) has read all its data and handed it to the sink, or
  // stopped on an error it reported. Always false for live inputs. Any thread.
  [[nodiscard]] virtual bool finished() const = 0;

  // A snapshot of the counters, in a stable order. Any thread.
  [[nodiscard]] virtual std::vector<Counter> counters() const = 0;

  // Where the source listens ("tcp://127.0.0.1:5514"), empty for inputs that do not listen.
  [[nodiscard]] virtual std::string localAddress() const { return {}; }
};

}  // namespace cistern::capture
