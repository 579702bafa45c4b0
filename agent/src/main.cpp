// The cistern executable: CLI11 wiring over the commands in cistern_agent.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "cistern/agent/commands.h"
#include "cistern/agent/config.h"

namespace {

// A data directory from --data-dir, or from the config given with -c.
int withDataDir(const std::string& data_dir, const std::string& config_file,
                cistern::agent::BufferToolOptions& options) {
  if (!data_dir.empty()) {
    options.data_dir = data_dir;
    return cistern::agent::kExitOk;
  }
  auto config = cistern::agent::loadConfigFile(config_file);
  if (!config) {
    fmt::print(stderr, "{}\n", config.error().message);
    return cistern::agent::kExitCannotRun;
  }
  options.data_dir = config->agent.data_dir;
  return cistern::agent::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // A receiver that closes its end makes a write fail with EPIPE, which the outputs handle; the
  // default SIGPIPE would kill the agent instead.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"Cistern: edge sensor agent with a durable LMDB ring buffer"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log what the buffer does (to stderr)");
  int status = cistern::agent::kExitOk;

  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([] { fmt::print("cistern {}\n", CISTERN_VERSION); });

  std::string config_file;
  auto* check = app.add_subcommand("check-config", "Check a config file; report every problem");
  check->add_option("-c,--config", config_file, "Config file (YAML)")->required();
  check->callback(
      [&] { status = cistern::agent::checkConfigCommand(config_file, stdout, stderr); });

  cistern::agent::RunOptions run_options;
  auto* run = app.add_subcommand("run", "Capture every configured input into the buffer");
  run->add_option("-c,--config", run_options.config_file, "Config file (YAML)")->required();
  run->add_flag("--exit-when-done", run_options.exit_when_done,
                "Exit once every input finished (pcap files read to the end) and every output "
                "delivered everything");
  int stats_seconds = 60;
  run->add_option("--stats-interval", stats_seconds,
                  "Seconds between logged counter lines; 0 logs them only at exit")
      ->check(CLI::Range(0, 86400));

  auto* buffer = app.add_subcommand(
      "buffer", "Tools for a ring buffer on disk (all read-only but remove-consumer)");
  buffer->require_subcommand(1);
  std::string data_dir;
  std::string buffer_config;
  cistern::agent::BufferToolOptions tool;
  auto addTarget = [&](CLI::App* cmd) {
    auto* dir = cmd->add_option("--data-dir", data_dir,
                                "The agent's data directory, or the ring directory itself");
    auto* cfg = cmd->add_option("-c,--config", buffer_config, "Take agent.data_dir from here");
    dir->excludes(cfg);
    cmd->add_flag("--json", tool.json, "Print JSON");
    cmd->callback([&, dir, cfg] {
      if (dir->count() == 0 && cfg->count() == 0) {
        throw CLI::RequiredError("--data-dir or --config");
      }
    });
  };
  auto* inspect = buffer->add_subcommand("inspect", "Frames, records, bytes, times, consumers");
  addTarget(inspect);
  auto* verify = buffer->add_subcommand("verify", "Check every frame's checksum and invariants");
  addTarget(verify);

  cistern::agent::ExportOptions export_options;
  export_options.version = CISTERN_VERSION;
  auto* exporter = buffer->add_subcommand(
      "export", "Write the buffered records as pcapng or NDJSON without consuming them");
  std::string export_format;
  auto* export_dir = exporter->add_option("--data-dir", data_dir,
                                          "The agent's data directory, or the ring directory");
  auto* export_cfg =
      exporter->add_option("-c,--config", buffer_config, "Take agent.data_dir from here");
  export_dir->excludes(export_cfg);
  exporter->add_option("--format", export_format, "pcapng (packets) or ndjson (every record)")
      ->required()
      ->check(CLI::IsMember({"pcapng", "ndjson"}));
  exporter->add_option("--output", export_options.output, "File to write; default standard output");
  exporter->add_option("--input", export_options.input, "Only this input's records");
  exporter->callback([&, export_dir, export_cfg] {
    if (export_dir->count() == 0 && export_cfg->count() == 0) {
      throw CLI::RequiredError("--data-dir or --config");
    }
  });

  cistern::agent::RemoveConsumerOptions remove_options;
  remove_options.version = CISTERN_VERSION;
  auto* remover = buffer->add_subcommand(
      "remove-consumer",
      "Delete the cursor of an output removed from the config (the agent must be stopped)");
  remover->add_option("name", remove_options.name, "The removed output's name")->required();
  remover->add_option("-c,--config", remove_options.config_file, "The agent's config file")
      ->required();

  cistern::agent::StatusOptions status_options;
  auto* status_cmd =
      app.add_subcommand("status", "Show a running agent's inputs, buffer, outputs and OpAMP");
  auto* status_address = status_cmd->add_option(
      "--address", status_options.address,
      "HOST:PORT of the agent's status API (default: status.listen, 127.0.0.1:8780)");
  status_cmd->add_option("-c,--config", status_options.config_file, "Take status.listen from here")
      ->excludes(status_address);
  status_cmd->add_flag("--watch", status_options.watch, "Redraw every second until interrupted");
  status_cmd->add_flag("--json", status_options.json, "Print the agent's JSON as received");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are successes; every usage error is "could not run".
    return app.exit(e) == 0 ? cistern::agent::kExitOk : cistern::agent::kExitCannotRun;
  }
  spdlog::set_level(verbose ? spdlog::level::info : spdlog::level::warn);
  if (*run) {
    run_options.verbose = verbose;
    run_options.version = CISTERN_VERSION;
    run_options.stats_interval = std::chrono::seconds(stats_seconds);
    return cistern::agent::runCommand(run_options, stdout, stderr);
  }
  if (*status_cmd) return cistern::agent::statusCommand(status_options, stdout, stderr);
  if (*remover) return cistern::agent::bufferRemoveConsumerCommand(remove_options, stdout, stderr);
  if (*exporter) {
    status = withDataDir(data_dir, buffer_config, tool);
    if (status != cistern::agent::kExitOk) return status;
    export_options.data_dir = tool.data_dir;
    export_options.format = export_format == "pcapng" ? cistern::agent::ExportFormat::kPcapng
                                                      : cistern::agent::ExportFormat::kNdjson;
    return cistern::agent::bufferExportCommand(export_options, stdout, stderr);
  }
  for (auto* cmd : {inspect, verify}) {
    if (!*cmd) continue;
    status = withDataDir(data_dir, buffer_config, tool);
    if (status != cistern::agent::kExitOk) return status;
    status = cmd == inspect ? cistern::agent::bufferInspectCommand(tool, stdout, stderr)
                            : cistern::agent::bufferVerifyCommand(tool, stdout, stderr);
  }
  return status;
}
