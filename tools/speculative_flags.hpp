// The speculative-decoding flags of `run`, `batch` and `bench` (engine/speculative.hpp), declared
// once, and what they set up: a draft model counted by the target's planner, or prompt lookup,
// and the draft length policy handed to the engine.
#pragma once

#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "common/units.hpp"
#include "engine/engine.hpp"
#include "engine/session.hpp"
#include "engine/speculative.hpp"
#include "tools/cli_util.hpp"

namespace sluice {

struct SpeculativeFlags {
  std::string draft;         // --draft MODEL
  std::int32_t lookup = 0;   // --lookup N
  std::int32_t draft_max = 16;
  bool draft_fixed = false;  // always draft_max: no adaptation
  float p_min = 0.0f;
  bool any() const { return !draft.empty() || lookup > 0; }
};

inline void add_speculative_flags(CLI::App* cmd, SpeculativeFlags& f) {
  auto* draft = cmd->add_option("--draft", f.draft,
                                "Speculative decoding with this draft model (GGUF or pack; same vocabulary as -m, checked): it "
                                "stays resident, inside --mem-budget, and proposes tokens that one pass of the target verifies")
                    ->check(CLI::ExistingFile);
  auto* lookup = cmd->add_option("--lookup", f.lookup,
                                 "Speculative decoding by prompt lookup: propose the tokens that followed the latest earlier "
                                 "match of the last N..1 tokens in the prompt and text so far (no draft model)")
                     ->check(CLI::Range(1, 64));
  draft->excludes(lookup);
  cmd->add_option("--draft-max", f.draft_max,
                  "Most drafted tokens per sequence and pass; the length adapts below it to the measured acceptance and pass costs")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_flag("--draft-fixed", f.draft_fixed, "Always draft --draft-max tokens (no adaptation)");
  cmd->add_option("--draft-p-min", f.p_min,
                  "Draft model: stop a sequence's draft when the draft's top token is less likely than this (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
}

// Speculation for one run: made before the target's Session (prepare() sets the budget aside for
// the draft model), then attach()ed to the engine's BatchOptions once the target is loaded.
class Speculation {
 public:
  // Null when no speculative flag is set. For --draft: plans the draft model (resident, the
  // target's sequences and context) and sets its bytes aside in `target`'s budget.
  static std::unique_ptr<Speculation> prepare(const SpeculativeFlags& flags, SessionOptions& target) {
    if (!flags.any()) return nullptr;
    auto s = std::unique_ptr<Speculation>(new Speculation(flags));
    if (!flags.draft.empty()) {
      s->draft_options_.model = flags.draft;
      s->draft_options_.n_seq = target.n_seq;
      s->draft_options_.n_ctx = target.n_ctx;  // 0: sized as the target's is (ctx_needed, the cap)
      s->draft_options_.ctx_needed = target.ctx_needed;
      s->draft_options_.kv_type = target.kv_type;
      s->draft_options_.threads = target.threads;
      s->draft_options_.p_min = flags.p_min;
      s->draft_options_.budget = target.budget;
      const std::uint64_t bytes = DraftModel::planned_bytes(s->draft_options_);
      target.reserved_bytes += bytes;
      target.reserved_for = fmt::format("draft model ({})", flags.draft);
    }
    return s;
  }

  // Loads the draft model (checking its vocabulary against the target's) and sets the drafter,
  // the draft length and the trace on `options`.
  void attach(Session& target, const std::string& target_model, BatchOptions& options, TraceRecorder* trace) {
    if (!flags_.draft.empty()) {
      draft_options_.n_ctx = target.n_ctx();
      draft_options_.n_seq = target.transformer().n_seq();
      if (draft_options_.budget == 0) draft_options_.budget = target.plan() ? target.plan()->request.budget : 0;
      draft_ = std::make_unique<DraftModel>(draft_options_);
      draft_->check_vocabulary(target.tokenizer(), target.config().n_vocab, target_model);
      options.drafter = draft_->drafter();
    } else {
      lookup_.emplace(flags_.lookup);
      options.drafter = [l = &*lookup_](std::span<DraftRequest> r) { (*l)(r); };
    }
    options.max_draft = flags_.draft_max;
    options.draft_length = &length_;
    options.trace = trace;
  }

  std::string describe() const {
    return !flags_.draft.empty() ? fmt::format("draft model {}", flags_.draft) : fmt::format("prompt lookup (n-grams {}..1)", flags_.lookup);
  }
  const DraftLength& length() const { return length_; }

  // "speculative: ..." line for the end of a run.
  void print_summary(std::ostream& out, const BatchRunStats& s) const {
    out << fmt::format(
        "speculative ({}): {} drafted, {} accepted ({:.1f}%), {:.2f} tokens per sequence step; draft length {} now (acceptance "
        "estimate {:.2f}, pass {:.3f} s + {:.4f} s/row, draft step {:.4f} s); {:.2f} s drafting, {:.2f} s in target passes\n",
        describe(), s.drafted_tokens, s.accepted_tokens, 100.0 * s.acceptance(), s.tokens_per_step(), length_.next(),
        length_.acceptance(), length_.pass_intercept(), length_.pass_slope(), length_.draft_step_seconds(),
        std::chrono::duration<double>(s.draft_time).count(), std::chrono::duration<double>(s.forward_time).count());
  }

 private:
  explicit Speculation(const SpeculativeFlags& flags) : flags_(flags), length_(flags.draft_max, !flags.draft_fixed) {}

  SpeculativeFlags flags_;
  DraftModelOptions draft_options_;
  std::unique_ptr<DraftModel> draft_;
  std::optional<LookupDrafter> lookup_;
  DraftLength length_;
};

}  // namespace sluice
