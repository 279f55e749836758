// The flags of every command that opens a Session (run, bench, perplexity, batch), declared once
// so they cannot drift apart (batch once lacked --kv-spill, --stream and --slots) and each is
// range-checked the same way. A command whose own meaning differs for a flag (perplexity's -c is
// its chunk size) leaves that flag out and sets the option itself.
#pragma once

#include <ostream>
#include <string>

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "common/units.hpp"
#include "engine/session.hpp"
#include "tools/cli_util.hpp"

namespace sluice {

struct SessionFlags {
  SessionOptions session;
  std::string mem_budget, ring_piece = "4MiB", kv_type = "f16", kv_spill = "auto", stream = "auto", experts = "auto", expert_guess = "off";
  bool plan_only = false;  // --plan-only: print the plan and exit (print_plan_only)
};

// Flags add_session_flags can leave out.
enum SessionFlagOmit : unsigned {
  kOmitNone = 0,
  kOmitCtx = 1u << 0,         // -c,--ctx-size
  kOmitPassTokens = 1u << 1,  // --pass-tokens
  kOmitKv = 1u << 2,          // --kv-type, --kv-spill, --kv-spill-dir
};

// Registers -m, -c, -t, --mem-budget, --stream, --experts, --expert-guess, --slots, --kv-type, --kv-spill, --kv-spill-dir,
// --disk-gbps and --pass-tokens on `cmd`, writing into `f`. The model is required unless
// `model_required` is false (batch checks it itself, beside its subcommand).
inline void add_session_flags(CLI::App* cmd, SessionFlags& f, unsigned omit = kOmitNone, bool model_required = true) {
  SessionOptions& s = f.session;
  auto* model = cmd->add_option("-m,--model", s.model, "Model file: GGUF or .sluice pack")->check(CLI::ExistingFile);
  if (model_required) model->required();
  if (!(omit & kOmitCtx)) {
    cmd->add_option("-c,--ctx-size", s.n_ctx, "Context per sequence (0: what the run needs where the command knows it, as run does from its prompts and -n; else the model's, capped at 4096)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1 << 24));
  }
  add_threads_option(cmd, s.threads);
  cmd->add_option("--mem-budget", f.mem_budget, "Memory budget, e.g. 4GiB (default: 80% of available memory, cgroup-aware)");
  cmd->add_option("--stream", f.stream,
                  "auto: the planner keeps what fits resident and streams the rest; on: every block streams; off: "
                  "all blocks resident (refused if they do not fit)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--experts", f.experts,
                  "Mixture-of-experts GGUF: auto reads experts one by one (only those the router picks, into an "
                  "expert cache the planner sizes) whenever the model streams; apart does so even when it would fit "
                  "in RAM; whole streams each block with all its experts (so does --stream off, and a pack)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "apart", "whole"}));
  cmd->add_option("--expert-guess", f.expert_guess,
                  "Experts read one by one: run the next layer's router early on this layer's input and read the "
                  "experts it picks while this layer computes (on), or read each layer's experts only when it asks (off: measured faster on "
                  "a disk that is already busy, see the README)")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--slots", s.slots,
                  "Ring slots when streaming (the planner may lower it to fit the budget; blocks in pieces get at least "
                  "32 MiB of them)")
      ->capture_default_str()
      ->check(CLI::Range(2, 64));
  cmd->add_option("--ring-piece", f.ring_piece,
                  "Dense blocks larger than this stream through the ring in pieces of about this size, each matrix "
                  "multiplied as its pieces land: the ring then holds ~32 MiB (a full queue of reads) instead of whole "
                  "blocks, leaving the budget to resident blocks; 0: whole blocks")
      ->capture_default_str();
  if (!(omit & kOmitKv)) {
    cmd->add_option("--kv-type", f.kv_type, "KV cache storage: f16 or q8_0 (half the bytes)")
        ->capture_default_str()
        ->check(CLI::IsMember({"f16", "q8_0"}));
    cmd->add_option("--kv-spill", f.kv_spill,
                    "Spill the KV cache to a scratch file, streamed with each block: auto (when it does not fit), on, off")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "on", "off"}));
    cmd->add_option("--kv-spill-dir", s.kv_spill_dir, "Directory for the (unlinked) KV spill file")
        ->capture_default_str()
        ->check(CLI::ExistingDirectory);
  }
  cmd->add_option("--disk-gbps", s.disk_gbps, "Disk bandwidth for the plan's prediction (0: measure at start)")
      ->capture_default_str()
      ->check(finite_in(0, 1e4));
  cmd->add_flag("--plan-only", f.plan_only,
                "Print the memory plan for these flags and exit 0 (non-zero with the planner's error when it is "
                "impossible): reads the model's header and tensor table, no weight");
  if (!(omit & kOmitPassTokens)) {
    cmd->add_option("--pass-tokens", s.pass_tokens, "Most tokens per pass (also -ub); longer prompts are cut into chunks")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));
  }
}

// --plan-only: plans `options` as Session would (engine/session.hpp plan_session: the header and
// tensor table read, no weight, the disk not measured) and prints the plan table on `out`.
// Throws what Session would before loading anything (an impossible budget names the minimum).
inline void print_plan_only(const SessionOptions& options, std::ostream& out) {
  const SessionPlan s = plan_session(options);
  const MemoryPlan& p = s.plan;
  out << fmt::format("plan for {} ({} of weights): {} sequences x {} context, {} tokens per pass, budget {}\n", options.model,
                     format_bytes(s.weight_bytes), p.request.n_seq, p.request.n_ctx, p.pass_tokens,
                     format_bytes(p.request.budget));
  print_plan(p, out);
  if (!s.experts_note.empty()) out << s.experts_note << "\n";
  if (!s.context_note.empty()) out << s.context_note << "\n";
  if (s.in_ram) out << "in RAM: the plan holds every weight with room to spare, so the GGUF would be memory-mapped whole\n";
  if (p.streams() && p.request.disk_gbps == 0) {
    out << "predicted s/pass: give --disk-gbps (--plan-only reads no weight, so the disk is not measured)\n";
  }
}

// The SessionOptions the flags say: sizes parsed, names turned into enums.
inline SessionOptions session_options(const SessionFlags& f) {
  SessionOptions s = f.session;
  if (!f.mem_budget.empty()) s.budget = parse_size_option("--mem-budget", f.mem_budget);
  s.block_piece_bytes = f.ring_piece == "0" ? 0 : parse_size_option("--ring-piece", f.ring_piece);
  s.kv_type = f.kv_type == "q8_0" ? cpu::KvType::q8_0 : cpu::KvType::f16;
  s.kv_spill = f.kv_spill == "on" ? SpillMode::always : f.kv_spill == "off" ? SpillMode::never : SpillMode::automatic;
  s.stream = f.stream == "on" ? StreamMode::always : f.stream == "off" ? StreamMode::never : StreamMode::automatic;
  s.experts = f.experts == "apart" ? ExpertsMode::apart : f.experts == "whole" ? ExpertsMode::whole : ExpertsMode::automatic;
  s.expert_guesses = f.expert_guess == "on";
  return s;
}

}  // namespace sluice
