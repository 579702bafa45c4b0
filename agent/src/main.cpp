#include <CLI/CLI.hpp>
#include <fmt/format.h>

int main(int argc, char** argv) {
  CLI::App app{"Cistern edge sensor agent"};
  app.require_subcommand(1);
  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([] { fmt::print("cistern {}\n", CISTERN_VERSION); });
  CLI11_PARSE(app, argc, argv);
  return 0;
}
