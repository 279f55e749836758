// Entry point of the `sluice` CLI: registers every subcommand and dispatches. Operating errors
// from a command (bad file, I/O error) arrive as sluice::Exception (common/error.hpp) and become
// one "sluice: MESSAGE [KIND error, ...]" line and exit status 1, never a crash; other exceptions
// (bad arguments) one "sluice: ..." line.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "tools/cli_util.hpp"
#include "tools/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"sluice: run LLMs far larger than RAM by streaming them from NVMe"};
  app.require_subcommand(1);
  sluice::add_demo_command(app);
  sluice::add_inspect_command(app);
  sluice::add_index_command(app);
  sluice::add_split_command(app);
  sluice::add_run_command(app);
  sluice::add_convert_command(app);
  sluice::add_synth_command(app);
  sluice::add_eval_command(app);
  sluice::add_bench_command(app);
  sluice::add_perplexity_command(app);
  sluice::add_batch_command(app);
  sluice::add_chat_command(app);
  sluice::add_serve_command(app);
  // llama.cpp spells some options with one dash and two letters (-np, -ub); CLI11 takes one-letter
  // short options only, so those are rewritten to their long forms.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) {
    std::string a = argv[i];
    if (a == "-np") a = "--parallel";
    if (a == "-ub") a = "--pass-tokens";
    args.push_back(a);
  }
  try {
    app.parse(args);
    sluice::check_stdout();  // output lost to a full disk or a closed pipe is a failure, not exit 0
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sluice::Exception& e) {  // an operating error: kind, file, offset
    std::cerr << "sluice: " << sluice::error_text(e) << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "sluice: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
