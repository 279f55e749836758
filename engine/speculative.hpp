// Speculative decoding (issue 16): drafts that one pass of the target verifies (engine/engine.hpp).
//
// At batch 1 a streamed model costs one read of its streamed weights per pass whatever the pass
// carries, so a pass that verifies k drafted tokens costs about what a pass of one token costs,
// and every accepted draft is a token without a read. Drafts come from:
//  - DraftModel (`--draft MODEL`): a small model with the same vocabulary, resident (counted by
//    the target's planner), with its own KV cache slot per sequence; every sequence of a pass
//    drafts through the same draft passes (one row per sequence per step);
//  - LookupDrafter (`--lookup N`): the tokens that followed the latest earlier occurrence of the
//    sequence's last n tokens (n = N .. 1) in its prompt and text so far; no model.
// Both drafts are deterministic (the draft model's argmax), so the standard speculative sampling
// rule (accept d with probability min(1, p(d) / q(d)), else draw from max(0, p - q) normalised)
// with q the point mass on d is: accept d with probability p(d), else draw from p without d. The
// engine implements it by drawing t from p exactly as plain decoding would and accepting d iff
// t == d; the output is then the target's, token for token, for greedy and seeded sampling.
//
// DraftLength picks k (the most drafted tokens per sequence and pass) from the measured
// acceptance rate and the measured costs: it maximises expected tokens per second,
//   B * E(k) / (pass(B * (k + 1) rows) + draft(k)),   E(k) = (1 - a^(k+1)) / (1 - a),
// with a the per-token acceptance rate, B the sequences drafting, pass(rows) a line fitted to the
// passes' measured seconds and rows, and draft(k) the drafter's measured seconds per drafted step.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/session.hpp"

namespace sluice {

namespace tok {
class Tokenizer;
}

// Proposes the tokens that followed the latest earlier occurrence of the last n tokens of
// `tokens`, for n = ngram_max down to ngram_min (the first n that matches wins); at most `max`.
std::vector<std::int32_t> lookup_draft(std::span<const std::int32_t> tokens, std::int32_t ngram_max, std::int32_t ngram_min,
                                       std::int32_t max);

class LookupDrafter {
 public:
  // Throws std::invalid_argument unless 1 <= ngram_max <= 64.
  explicit LookupDrafter(std::int32_t ngram_max, std::int32_t ngram_min = 1);
  void operator()(std::span<DraftRequest> requests) const;

 private:
  std::int32_t ngram_max_, ngram_min_;
};

// A hash of the vocabulary's token strings (their bytes and lengths, in id order): two models
// draft for each other only when their counts and hashes match.
std::uint64_t vocabulary_hash(const tok::Tokenizer& tokenizer);

struct DraftModelOptions {
  std::string model;                 // GGUF or pack
  std::int32_t n_seq = 1;            // the target's KV slots
  std::int64_t n_ctx = 0;            // the target's context
  std::int64_t ctx_needed = 0;       // with n_ctx 0: as SessionOptions::ctx_needed
  compute::KvType kv_type = compute::KvType::f16;
  int threads = 0;
  std::uint64_t budget = 0;          // what the draft may take (0: the default budget)
  // Stop drafting a sequence when the draft model's top token has less than this probability
  // (0: never stop early); its drafts are then less likely to be accepted than to cost a step.
  float p_min = 0.0f;
};

class DraftModel {
 public:
  // Loads the model with every weight resident (refused, naming the budget, if it does not fit).
  explicit DraftModel(const DraftModelOptions& options);
  ~DraftModel();
  // RAM the draft model will hold with these options (its plan's total: weights, KV, pass
  // buffers; less the process overhead allowance, which the target's plan counts), without
  // loading it: what the target's planner sets aside for it. Throws sluice::Exception
  // (ErrorKind::invalid) naming the draft when it cannot be resident within options.budget.
  static std::uint64_t planned_bytes(const DraftModelOptions& options);

  // Throws sluice::Exception (ErrorKind::invalid) naming both files when the draft's vocabulary
  // (its token count, the embedding rows, the hash of its strings) differs from the target's.
  void check_vocabulary(const tok::Tokenizer& target, std::int64_t target_n_vocab, const std::string& target_path) const;

  // Drafts for every request (greedy over the draft model): catches each slot's KV cache up with
  // the request's tokens (one pass for all of them), then one pass per drafted step.
  void draft(std::span<DraftRequest> requests);
  Drafter drafter() {
    return [this](std::span<DraftRequest> r) { draft(r); };
  }

  Session& session() { return *session_; }
  std::uint64_t passes() const { return passes_; }

 private:
  DraftModelOptions options_;
  std::unique_ptr<Session> session_;
  std::vector<std::vector<std::int32_t>> cached_;  // per slot: the tokens in the draft's KV cache
  std::uint64_t passes_ = 0;
};

// The measured inputs of one pass for DraftLength.
struct DraftPassCost {
  std::int32_t k = 0;              // the draft length asked for this pass
  std::int32_t sequences = 0;      // sequences that drafted (B)
  std::int64_t rows = 0;           // tokens the pass carried
  std::int64_t drafted = 0;        // drafted tokens fed
  std::int64_t accepted = 0;       // of which accepted
  std::int64_t rejections = 0;     // sequences whose draft ended at a mismatch
  double pass_seconds = 0;         // the target's pass
  double draft_seconds = 0;        // the drafter's work for this pass
};

class DraftLength {
 public:
  // adaptive false: always `max`. adaptive: starts at min(max, initial) and then follows the
  // measurements. Throws std::invalid_argument unless max >= 1.
  DraftLength(std::int32_t max, bool adaptive, std::int32_t initial = 4);
  std::int32_t next() const { return k_; }
  std::int32_t max() const { return max_; }
  bool adaptive() const { return adaptive_; }
  // Every pass, drafted or not (prompt passes give the pass-cost line its slope).
  void record(const DraftPassCost& pass);
  double acceptance() const;        // the per-token acceptance estimate (0.5 before any draft)
  // The fitted cost line pass(rows) = intercept + slope * rows, and seconds per draft step.
  double pass_intercept() const { return intercept_; }
  double pass_slope() const { return slope_; }
  double draft_step_seconds() const { return draft_step_; }
  // Expected tokens per second at draft length k with the current estimates (B sequences).
  double expected_rate(std::int32_t k, std::int32_t sequences) const;

 private:
  void refit();
  std::int32_t max_;
  bool adaptive_;
  std::int32_t k_;
  // Decayed sums: acceptance (accepted, rejections), pass cost regression (n, x, y, xx, xy).
  double accepted_ = 0, rejections_ = 0;
  double n_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
  double draft_steps_ = 0, draft_seconds_ = 0;
  double intercept_ = 0, slope_ = 0, draft_step_ = 0;
  std::int32_t last_sequences_ = 1;
};

}  // namespace sluice
