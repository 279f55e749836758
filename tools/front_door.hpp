// What the `sluice` command line does before CLI11 parses it: --version, a named error for an
// unknown command (with a did-you-mean), and llama.cpp's flags that sluice does not take, each
// answered with one line (ignored with a note, mapped to sluice's flag, or refused with what to
// use instead) instead of being misparsed by CLI11 (`-cnv` read as `-c nv`).
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace sluice {

// Usage errors found here (unknown command, a refused llama.cpp flag) exit with this status.
inline constexpr int kUsageExit = 2;

// "sluice 0.1.0 (commit abc123)", the compiler and build type, the CPU kernel level in use and
// whether the CUDA backend is built: several lines, each ending in '\n'.
std::string version_text();

// The closest of `names` to `word` when it is a near miss (edit distance at most 2, less than
// half of the word), else "".
std::string closest_name(const std::string& word, const std::vector<std::string>& names);

struct FrontDoor {
  std::vector<std::string> args;   // for CLI11, in order
  std::vector<std::string> notes;  // one line each for stderr, each said once
  std::string error;               // non-empty: print it and exit kUsageExit
};

// Rewrites the arguments that follow the command name: llama.cpp flags are consumed with their
// values and answered (notes or an error); the rest pass through unchanged. `command` is the
// subcommand they are for (its options decide whether -ctk maps to --kv-type); `name` its name.
FrontDoor translate_llama_flags(const std::vector<std::string>& args, const CLI::App& command, const std::string& name);

// llama-cli's conversation mode reached through `run`: `run -cnv` / `--conversation`, or `run`
// with no prompt (-p, -f, --prompts) while stdin is a terminal (llama-cli starts a chat then too).
// `args` (the command first) becomes `chat` with the same flags, -p/--prompt becoming the system
// prompt as in llama-cli's -cnv, and the note to print is returned; otherwise args stay as they
// are and "" is returned.
std::string run_as_conversation(std::vector<std::string>& args, bool stdin_is_terminal);

}  // namespace sluice
