// Entry point of the `sluice` CLI: registers every subcommand and dispatches. Operating errors
// from a command (bad file, I/O error) arrive as sluice::Exception (common/error.hpp) and become
// one "sluice: MESSAGE [KIND error, ...]" line and exit status 1, never a crash; other exceptions
// (bad arguments) one "sluice: ..." line. Before CLI11 parses, the front door (front_door.hpp)
// answers --version, an unknown command and llama.cpp's flags; its usage errors exit 2.
#include <CLI/CLI.hpp>
#include <unistd.h>
#include <algorithm>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "tools/cli_util.hpp"
#include "tools/commands.hpp"
#include "tools/front_door.hpp"

namespace {

std::vector<std::string> command_names(CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice: run LLMs far larger than RAM by streaming them from NVMe", "sluice"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version",
      [] {
        std::string text = sluice::version_text();
        text.pop_back();  // CLI11 ends the line itself
        return text;
      },
      "Print the version, compiler and CPU kernel level, and exit");
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
  app.add_subcommand("version", "Print the version, compiler and CPU kernel level (also --version)")->callback([] {
    std::cout << sluice::version_text();
  });
  // llama.cpp spells some options with one dash and two letters (-np, -ub); CLI11 takes one-letter
  // short options only, so those are rewritten to their long forms.
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-np") a = "--parallel";
    if (a == "-ub") a = "--pass-tokens";
    args.push_back(a);
  }
  const std::vector<std::string> commands = command_names(app);
  if (!args.empty() && args[0] == "--version") {
    std::cout << sluice::version_text();
    return 0;
  }
  if (args.empty() || (args[0][0] == '-' && args[0] != "-h" && args[0] != "--help")) {
    // llama-cli takes its flags straight away; sluice wants the command first.
    std::cerr << "sluice: a command comes first, e.g. `sluice run -m MODEL.gguf -p PROMPT`; commands: " << joined(commands)
              << " (`sluice COMMAND --help` for its flags)\n";
    return sluice::kUsageExit;
  }
  if (const std::string note = sluice::run_as_conversation(args, ::isatty(STDIN_FILENO) == 1); !note.empty()) {
    std::cerr << note << "\n";
  }
  if (args[0][0] != '-') {
    if (std::find(commands.begin(), commands.end(), args[0]) == commands.end()) {
      const std::string near = sluice::closest_name(args[0], commands);
      std::cerr << "sluice: unknown command '" << args[0] << "'" << (near.empty() ? "" : "; did you mean '" + near + "'?")
                << "; commands: " << joined(commands) << "\n";
      return sluice::kUsageExit;
    }
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    sluice::FrontDoor door = sluice::translate_llama_flags(rest, *app.get_subcommand(args[0]), args[0]);
    for (const std::string& line : door.notes) std::cerr << line << "\n";
    if (!door.error.empty()) {
      std::cerr << door.error << "\n";
      return sluice::kUsageExit;
    }
    args.resize(1);
    args.insert(args.end(), door.args.begin(), door.args.end());
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
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
