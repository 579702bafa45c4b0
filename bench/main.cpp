// cistern-bench: whole-path benchmarks. Each prints a line per run and, last, one JSON line.
#include <cstdlib>
#include <map>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "buffer_bench.h"
#include "cistern/core/units.h"

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
  buf->add_option("--sync", b.sync, "batch | always | none")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, cistern::buffer::SyncMode>{
              {"batch", cistern::buffer::SyncMode::kBatch},
              {"always", cistern::buffer::SyncMode::kAlways},
              {"none", cistern::buffer::SyncMode::kNone}},
          CLI::ignore_case));
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

  CLI11_PARSE(app, argc, argv);
  if (!verbose) spdlog::set_level(spdlog::level::warn);
  if (*buf) {
    if (!max_size.empty()) {
      auto parsed = cistern::parseSize(max_size);
      if (!parsed) {
        fprintf(stderr, "--max-size: %s\n", parsed.error().message.c_str());
        return 2;
      }
      b.max_size = *parsed;
    }
    for (auto [text, field] : {std::pair{&commit_max, &b.commit_max_bytes},
                               std::pair{&ingest_max, &b.ingest_max_bytes}}) {
      if (text->empty()) continue;
      auto parsed = cistern::parseSize(*text);
      if (!parsed) {
        fprintf(stderr, "%s\n", parsed.error().message.c_str());
        return 2;
      }
      *field = *parsed;
    }
    if (!commit_interval.empty()) {
      auto parsed = cistern::parseDuration(commit_interval);
      if (!parsed) {
        fprintf(stderr, "--commit-interval: %s\n", parsed.error().message.c_str());
        return 2;
      }
      b.commit_interval = *parsed;
    }
    return cistern::bench::runBufferBench(b);
  }
  return 0;
}
