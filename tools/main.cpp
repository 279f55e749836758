// Entry point of the `sluice` CLI: registers every subcommand and dispatches. Operating errors
// from a command (bad file, I/O error) arrive as exceptions and become one "sluice: ..." line
// and exit status 1, never a crash.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "tools/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"sluice: run LLMs far larger than RAM by streaming them from NVMe"};
  app.require_subcommand(1);
  sluice::add_demo_command(app);
  sluice::add_inspect_command(app);
  sluice::add_run_command(app);
  sluice::add_convert_command(app);
  sluice::add_synth_command(app);
  sluice::add_eval_command(app);
  sluice::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "sluice: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
