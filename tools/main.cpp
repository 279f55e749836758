// Entry point of the `sluice` CLI: registers every subcommand and dispatches.
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"sluice: run LLMs far larger than RAM by streaming them from NVMe"};
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
