// cistern-bench: whole-path benchmarks. Each prints a line per run and, last, one JSON line.
#include <cstdlib>
#include <map>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "buffer_bench.h"
#include "capture_bench.h"
#include "cistern/core/units.h"
#include "deliver_bench.h"
#include "drain_bench.h"
#include "tail_bench.h"

namespace {

CLI::CheckedTransformer syncModes() {
  return CLI::CheckedTransformer(
      std::map<std::string, cistern::buffer::SyncMode>{
          {"batch", cistern::buffer::SyncMode::kBatch},
          {"always", cistern::buffer::SyncMode::kAlways},
          {"none", cistern::buffer::SyncMode::kNone}},
      CLI::ignore_case);
}

// Parses an option given as text with units (a size or a duration) into `out`; an empty text
// leaves it. False, after saying why, when the text is invalid.
template <typename T, typename Parse>
bool parseOption(const std::string& text, const char* flag, T& out, Parse parse) {
  if (text.empty()) return true;
  auto parsed = parse(text);
  if (!parsed) {
    fprintf(stderr, "%s: %s\n", flag, parsed.error().message.c_str());
    return false;
  }
  out = *parsed;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cistern-bench: benchmarks that print figures (never pass/fail on time)"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Show the agent's own log lines");

  cistern::bench::BufferBenchOptions b;
  const char* tmp = std::getenv("TMPDIR");
  b.dir =
      std::filesystem::path(tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp") / "cistern-bench";
  std::string max_size;
  bool json_only = false;
  auto* buf = app.add_subcommand("buffer", "Write N records through the ring and read them back");
  buf->add_option("--records", b.records, "Records to write")->capture_default_str();
  buf->add_option("--record-size", b.record_size, "Payload bytes per record")
      ->capture_default_str();
  buf->add_option("--sync", b.sync, "batch | always | none")->transform(syncModes());
  buf->add_option("--codec", b.codec, "none | zstd")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, cistern::buffer::Codec>{{"none", cistern::buffer::Codec::kNone},
                                                        {"zstd", cistern::buffer::Codec::kZstd}},
          CLI::ignore_case));
  buf->add_option("--consumers", b.consumers, "Consumers reading concurrently")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  buf->add_option("--ack-consumers", b.ack_consumers,
                  "How many consumers acknowledge what they read (default: all)");
  buf->add_option("--repeat", b.repeat, "Runs; figures are medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  buf->add_option("--max-size", max_size, "Ring max_size (default: room for the whole run)");
  std::string commit_max;
  std::string ingest_max;
  std::string commit_interval;
  buf->add_option("--commit-max", commit_max, "commit_max_bytes (default: the ring's)");
  buf->add_option("--ingest-max", ingest_max, "ingest_max_bytes (default: the ring's)");
  buf->add_option("--commit-interval", commit_interval, "commit_interval (default: the ring's)");
  buf->add_option("--dir", b.dir, "Where to write (the disk under test)")->capture_default_str();
  buf->add_flag("--keep", b.keep, "Keep the ring directories afterwards");
  buf->add_flag("--phases", b.phases, "Print resident memory after each phase of a run");
  buf->add_flag("--json", json_only, "Accepted for symmetry: the last line is always JSON");

  cistern::bench::CaptureBenchOptions c;
  c.dir = b.dir;
  auto* cap = app.add_subcommand(
      "capture", "Ingest a pcap file through PcapSource into a fresh ring, against tcpdump -r");
  cap->add_option("--pcap", c.pcap, "The pcap file (written first with --generate)");
  cap->add_option("--generate", c.generate,
                  "Write a pcap of N synthetic Ethernet/IPv4/UDP packets first");
  cap->add_option("--packet-size", c.packet_size, "Bytes per generated frame")
      ->check(CLI::Range(42, 65535))
      ->capture_default_str();
  cap->add_flag("--generate-only", c.generate_only, "Write the --generate file and stop");
  cap->add_option("--sync", c.sync, "batch | always | none")->transform(syncModes());
  cap->add_option("--repeat", c.repeat, "Runs; figures are medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cap->add_option("--tcpdump", c.tcpdump, "The reference program")->capture_default_str();
  cap->add_option("--dir", c.dir, "Where the rings go (the disk under test)")
      ->capture_default_str();
  cap->add_flag("--keep", c.keep, "Keep the rings (and a generated file) afterwards");
  cap->add_flag("--json", json_only, "Accepted for symmetry: the last line is always JSON");

  cistern::bench::TailBenchOptions t;
  t.dir = b.dir;
  std::string poll_interval;
  auto* tail = app.add_subcommand(
      "tail", "Tail a file of N lines through FileTailSource into a fresh ring, against a read");
  tail->add_option("--lines", t.lines, "Lines in the file")->capture_default_str();
  tail->add_option("--line-size", t.line_size, "Bytes per line, the newline included")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  tail->add_option("--sync", t.sync, "batch | always | none")->transform(syncModes());
  tail->add_option("--repeat", t.repeat, "Runs; figures are medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  tail->add_option("--poll-interval", poll_interval,
                   "The input's poll_interval (default: its own)");
  tail->add_option("--dir", t.dir, "Where the file and the rings go")->capture_default_str();
  tail->add_flag("--keep", t.keep, "Keep the file and the rings afterwards");
  tail->add_flag("--json", json_only, "Accepted for symmetry: the last line is always JSON");

  cistern::bench::DeliverBenchOptions d;
  d.dir = b.dir;
  std::string batch_bytes;
  auto* deliver = app.add_subcommand(
      "deliver", "Drain a filled ring through the otlp output to nginx, against wrk");
  deliver->add_option("--records", d.records, "Records in the ring")->capture_default_str();
  deliver->add_option("--record-size", d.record_size, "Bytes per record (log lines)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  deliver->add_flag("--gzip", d.gzip, "Gzip request bodies (the output's default; off here)");
  deliver->add_option("--in-flight", d.in_flight, "The output's max_in_flight; wrk connections")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  deliver->add_flag("--warm", d.warm, "Read the whole ring into the page cache before draining");
  deliver->add_option("--batch-bytes", batch_bytes, "The output's max_batch_bytes (default 1MiB)");
  deliver->add_option("--wrk-seconds", d.wrk_seconds, "How long wrk runs")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();
  deliver->add_option("--repeat", d.repeat, "Runs; figures are medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  deliver->add_option("--dir", d.dir, "Where the ring and nginx's files go")->capture_default_str();
  deliver->add_flag("--json", json_only, "Accepted for symmetry: the last line is always JSON");

  cistern::bench::DrainBenchOptions dr;
  dr.dir = b.dir;
  std::string drain_rate = "10MiB";
  std::string drain_ramp;
  std::string drain_heartbeat;
  auto* drain = app.add_subcommand(
      "drain",
      "Drain a backlog through the otlp output under drain.rate to nginx started after it");
  drain->add_option("--backlog-mb", dr.backlog_mib, "Backlog in the ring, MiB")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  drain->add_option("--rate", drain_rate, "drain.rate: record bytes per second, with units (10MiB)")
      ->capture_default_str();
  drain->add_option("--record-size", dr.record_size, "Bytes per backlog record (log lines)")
      ->check(CLI::Range(16, 60000))
      ->capture_default_str();
  drain->add_option("--ramp", drain_ramp, "drain.ramp (default 2s)");
  drain->add_option("--heartbeat", drain_heartbeat,
                    "heartbeat.interval and max_interval (default 1s)");
  drain->add_option("--repeat", dr.repeat, "Runs; figures are medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  drain->add_option("--dir", dr.dir, "Where the ring and nginx's files go")->capture_default_str();
  drain->add_flag("--json", json_only, "Accepted for symmetry: the last line is always JSON");

  CLI11_PARSE(app, argc, argv);
  if (!verbose) spdlog::set_level(spdlog::level::warn);
  if (*buf) {
    if (!parseOption(max_size, "--max-size", b.max_size, cistern::parseSize) ||
        !parseOption(commit_max, "--commit-max", b.commit_max_bytes, cistern::parseSize) ||
        !parseOption(ingest_max, "--ingest-max", b.ingest_max_bytes, cistern::parseSize) ||
        !parseOption(commit_interval, "--commit-interval", b.commit_interval,
                     cistern::parseDuration)) {
      return 2;
    }
    return cistern::bench::runBufferBench(b);
  }
  if (*cap) return cistern::bench::runCaptureBench(c);
  if (*tail) {
    if (!parseOption(poll_interval, "--poll-interval", t.poll_interval, cistern::parseDuration)) {
      return 2;
    }
    return cistern::bench::runTailBench(t);
  }
  if (*deliver) {
    std::uint64_t bytes = d.batch_bytes;
    if (!parseOption(batch_bytes, "--batch-bytes", bytes, cistern::parseSize)) return 2;
    d.batch_bytes = static_cast<std::size_t>(bytes);
    return cistern::bench::runDeliverBench(d);
  }
  if (*drain) {
    std::chrono::nanoseconds ramp = dr.ramp;
    std::chrono::nanoseconds heartbeat = dr.heartbeat;
    if (!parseOption(drain_rate, "--rate", dr.rate, cistern::parseSize) ||
        !parseOption(drain_ramp, "--ramp", ramp, cistern::parseDuration) ||
        !parseOption(drain_heartbeat, "--heartbeat", heartbeat, cistern::parseDuration)) {
      return 2;
    }
    dr.ramp = std::chrono::duration_cast<std::chrono::milliseconds>(ramp);
    dr.heartbeat = std::chrono::duration_cast<std::chrono::milliseconds>(heartbeat);
    if (dr.rate == 0) {
      fprintf(stderr, "--rate: the benchmark needs a limit above 0\n");
      return 2;
    }
    return cistern::bench::runDrainBench(dr);
  }
  return 0;
}
