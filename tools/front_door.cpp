// The front door of the `sluice` command line (front_door.hpp): version text, did-you-mean and
// the table of llama.cpp flags with what sluice does about each.
#include "tools/front_door.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>
#include <string_view>

#include "compute/cpu/kernels.hpp"
#include "compute/cpu/matmul_amx.hpp"
#include "tools/build_info.hpp"

namespace sluice {

std::string version_text() {
  const std::string commit = build_info::kGitCommit;
  std::string text = fmt::format("sluice {} ({})\n", build_info::kVersion,
                                 commit.empty() ? "commit unknown: not configured in a git checkout" : "commit " + commit);
  text += fmt::format("built with {} ({} build)\n", build_info::kCompiler, build_info::kBuildType);
  const cpu::CpuIsa active = cpu::active_isa(), detected = cpu::detected_isa();
  text += fmt::format("cpu kernels: {}", cpu::to_string(active));
  if (active != detected) text += fmt::format(" (SLUICE_CPU_ISA; this CPU has {})", cpu::to_string(detected));
  // AMX tiles serve the AVX-512 level's large Q4_K batches where this process may use them.
  if (active == cpu::CpuIsa::avx512 && cpu::amx_int8_usable()) text += " + amx-int8";
  text += "\n";
  text += fmt::format("cuda backend: {}\n", build_info::kCuda ? "built" : "not in this build");
  return text;
}

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// What sluice does about a llama.cpp flag.
enum class Habit { gpu_layers, flash_attn, mlock, no_mmap, chat, color, log_disable, cache_type };

// How a flag takes its value: none, always one (the next argument, or "--flag=value"), or
// llama.cpp's optional on/off/auto (taken only when the next argument is one of those).
enum class Arity { none, one, switch_value };

struct LlamaFlag {
  std::string_view name;
  Arity arity;
  Habit habit;
};

constexpr std::array kLlamaFlags = {
    LlamaFlag{"-ngl", Arity::one, Habit::gpu_layers},        LlamaFlag{"--n-gpu-layers", Arity::one, Habit::gpu_layers},
    LlamaFlag{"--gpu-layers", Arity::one, Habit::gpu_layers}, LlamaFlag{"-fa", Arity::switch_value, Habit::flash_attn},
    LlamaFlag{"--flash-attn", Arity::switch_value, Habit::flash_attn}, LlamaFlag{"--mlock", Arity::none, Habit::mlock},
    LlamaFlag{"--no-mmap", Arity::none, Habit::no_mmap},     LlamaFlag{"-cnv", Arity::none, Habit::chat},
    LlamaFlag{"--conversation", Arity::none, Habit::chat},   LlamaFlag{"-sys", Arity::one, Habit::chat},
    LlamaFlag{"--system-prompt", Arity::one, Habit::chat},   LlamaFlag{"-co", Arity::switch_value, Habit::color},
    LlamaFlag{"--color", Arity::switch_value, Habit::color}, LlamaFlag{"--log-disable", Arity::none, Habit::log_disable},
    LlamaFlag{"-ctk", Arity::one, Habit::cache_type},        LlamaFlag{"--cache-type-k", Arity::one, Habit::cache_type},
    LlamaFlag{"-ctv", Arity::one, Habit::cache_type},        LlamaFlag{"--cache-type-v", Arity::one, Habit::cache_type},
};

// sluice options whose value is free text: a prompt of "-fa" is a prompt, not a flag.
bool takes_free_text(std::string_view arg) {
  return arg == "-p" || arg == "--prompt" || arg == "--stop" || arg == "-f" || arg == "--file";
}

bool is_switch_value(std::string_view v) { return v == "on" || v == "off" || v == "auto"; }

// "-5" and "1e3" are values; "-m" is the next flag.
bool looks_like_flag(std::string_view arg) {
  return arg.size() >= 2 && arg[0] == '-' && !(std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.');
}

}  // namespace

std::string closest_name(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  std::size_t best_distance = 3;  // a near miss: at most 2 edits
  for (const std::string& n : names) {
    const std::size_t d = edit_distance(word, n);
    if (d < best_distance && 2 * d < std::max(word.size(), n.size())) {
      best = n;
      best_distance = d;
    }
  }
  return best;
}

std::string run_as_conversation(std::vector<std::string>& args, bool stdin_is_terminal) {
  if (args.empty() || args[0] != "run") return "";
  bool conversation = false, prompt = false, help = false;
  for (std::size_t i = 1; i < args.size() && args[i] != "--"; ++i) {
    const std::string& a = args[i];
    if (a == "-cnv" || a == "--conversation") conversation = true;
    if (a == "-p" || a == "--prompt" || a == "-f" || a == "--file" || a == "--prompts" || a.rfind("--prompt=", 0) == 0 ||
        a.rfind("--file=", 0) == 0 || a.rfind("--prompts=", 0) == 0)
      prompt = true;
    if (a == "-h" || a == "--help") help = true;
    if (takes_free_text(a)) ++i;  // a prompt that reads "-cnv" is text, not the flag
  }
  if (help || (!conversation && (prompt || !stdin_is_terminal))) return "";
  std::vector<std::string> chat = {"chat"};
  bool system_given = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      chat.insert(chat.end(), args.begin() + std::ptrdiff_t(i), args.end());
      break;
    }
    if (a == "-cnv" || a == "--conversation") continue;
    if ((a == "-p" || a == "--prompt") && i + 1 < args.size()) {
      chat.push_back("--system-prompt");  // llama-cli -cnv: -p is the system prompt
      chat.push_back(args[++i]);
      system_given = true;
      continue;
    }
    if (a.rfind("--prompt=", 0) == 0) {
      chat.push_back("--system-prompt=" + a.substr(9));
      system_given = true;
      continue;
    }
    chat.push_back(a);
  }
  args = std::move(chat);
  return conversation ? fmt::format("sluice: note: run -cnv is a conversation: running `sluice chat`{}",
                                    system_given ? " with -p as its system prompt (as llama-cli does)" : "")
                      : "sluice: note: no prompt given (-p, -f): starting a conversation (`sluice chat`; Ctrl-D leaves)";
}

FrontDoor translate_llama_flags(const std::vector<std::string>& args, const CLI::App& command, const std::string& name) {
  FrontDoor out;
  std::set<std::string> said;
  auto note = [&](const std::string& line) {
    if (said.insert(line).second) out.notes.push_back("sluice: note: " + line);
  };
  const bool has_kv_type = command.get_option_no_throw("--kv-type") != nullptr;
  std::string kv_type, kv_flag;  // the -ctk/-ctv value taken, and the flag that gave it
  std::size_t kv_at = 0;         // where --kv-type goes in out.args
  for (std::size_t i = 0; i < args.size() && out.error.empty(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {  // everything after it is positional
      out.args.insert(out.args.end(), args.begin() + std::ptrdiff_t(i), args.end());
      break;
    }
    if (takes_free_text(arg) && i + 1 < args.size()) {
      out.args.push_back(arg);
      out.args.push_back(args[++i]);
      continue;
    }
    // "--flag=value" for long flags; llama.cpp takes no "=" on its short ones.
    std::string flag = arg, value;
    bool inline_value = false;
    if (arg.rfind("--", 0) == 0) {
      if (const std::size_t eq = arg.find('='); eq != std::string::npos) {
        flag = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
    }
    const auto known = std::find_if(kLlamaFlags.begin(), kLlamaFlags.end(), [&](const LlamaFlag& f) { return f.name == flag; });
    // A sluice option of the same name (none today) wins over the habit.
    if (known == kLlamaFlags.end() || command.get_option_no_throw(flag) != nullptr) {
      out.args.push_back(arg);
      continue;
    }
    if (known->arity == Arity::one && !inline_value) {
      if (i + 1 == args.size() || looks_like_flag(args[i + 1])) {
        out.error = fmt::format("sluice: {} needs a value (it is llama.cpp's flag; see below what sluice does about it)", flag);
        // Fall through to say what sluice does, so the line is useful either way.
      } else {
        value = args[++i];
      }
    } else if (known->arity == Arity::switch_value && !inline_value && i + 1 < args.size() && is_switch_value(args[i + 1])) {
      value = args[++i];
    } else if (known->arity == Arity::none && inline_value) {
      out.error = fmt::format("sluice: {} takes no value", flag);
      break;
    }
    const std::string given = value.empty() ? flag : fmt::format("{} {}", flag, value);
    switch (known->habit) {
      case Habit::gpu_layers:
        if (!out.error.empty()) {
          out.error = fmt::format("sluice: {} needs a number of layers; sluice ignores it anyway: it has no GPU offload", flag);
        } else if (value == "0") {
          note(fmt::format("{} ignored: sluice runs on the CPU", given));
        } else {
          note(fmt::format(
              "{} ignored: sluice has no GPU offload in this build; it runs on the CPU, keeps in RAM what fits "
              "--mem-budget and streams the rest of the weights from disk every pass",
              given));
        }
        break;
      case Habit::flash_attn:
        note(fmt::format("{} ignored: sluice always computes attention in one fused pass", given));
        break;
      case Habit::mlock:
        note(fmt::format("{} ignored: sluice's memory is bounded by --mem-budget; what does not fit is read from disk every pass",
                         given));
        break;
      case Habit::no_mmap:
        note(fmt::format(
            "{} ignored: sluice maps a GGUF only when the plan holds it whole in RAM; --stream on streams every block from disk instead",
            given));
        break;
      case Habit::color:
        note(fmt::format("{} ignored: sluice prints plain text", given));
        break;
      case Habit::log_disable:
        note(fmt::format("{} ignored: sluice's plan and statistics go to stderr (2>/dev/null hides them); the text goes to stdout",
                         given));
        break;
      case Habit::chat:
        if (flag == "-sys" || flag == "--system-prompt") {
          if (command.get_option_no_throw("--system-prompt") != nullptr && out.error.empty()) {
            out.args.push_back("--system-prompt");  // `sluice chat -sys TEXT`
            out.args.push_back(value);
          } else if (out.error.empty()) {
            out.error = fmt::format("sluice: {}: a system prompt belongs to a conversation: `sluice chat -m MODEL -sys TEXT`", flag);
          }
        } else if (name == "chat") {
          note(fmt::format("{} ignored: `sluice chat` is a conversation already", given));
        } else {
          out.error = fmt::format(
              "sluice: {} (llama.cpp's chat mode): conversations are `sluice chat -m MODEL` (-sys TEXT for a system prompt); "
              "`sluice run -p TEXT` continues a prompt",
              flag);
        }
        break;
      case Habit::cache_type:
        if (!out.error.empty()) {
          out.error = fmt::format("sluice: {} needs a type: sluice's is --kv-type f16 or q8_0, for K and V together", flag);
        } else if (!has_kv_type) {
          out.error = fmt::format("sluice: {}: `sluice {}` keeps no KV cache type to choose (--kv-type is taken by run, bench, "
                                  "perplexity, eval and batch)",
                                  given, name);
        } else if (value != "f16" && value != "q8_0") {
          out.error = fmt::format("sluice: {}: sluice's KV cache is f16 or q8_0 (--kv-type), for K and V together", given);
        } else if (!kv_type.empty() && kv_type != value) {
          out.error = fmt::format("sluice: {} {} and {}: sluice stores K and V in one type: give --kv-type f16 or q8_0", kv_flag,
                                  kv_type, given);
        } else {
          if (kv_type.empty()) kv_at = out.args.size();
          kv_type = value;
          kv_flag = flag;
          note(fmt::format("{} read as --kv-type {} (sluice stores K and V in one type)", given, value));
        }
        break;
    }
  }
  const bool kv_type_given = std::any_of(out.args.begin(), out.args.end(), [](const std::string& a) {
    return a == "--kv-type" || a.rfind("--kv-type=", 0) == 0;
  });
  if (out.error.empty() && !kv_type.empty() && kv_type_given) {
    out.error = fmt::format("sluice: {} {} is llama.cpp's spelling of --kv-type, which is given too: give one of them", kv_flag, kv_type);
  }
  if (out.error.empty() && !kv_type.empty()) {
    const std::array<std::string, 2> mapped = {"--kv-type", kv_type};
    out.args.insert(out.args.begin() + std::ptrdiff_t(kv_at), mapped.begin(), mapped.end());
  }
  return out;
}

}  // namespace sluice
