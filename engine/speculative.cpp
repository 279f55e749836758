#include "engine/speculative.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <stdexcept>
#include <xxhash.h>

#include "common/assert.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "engine/sampling.hpp"
#include "model/tokenizer.hpp"

namespace sluice {

std::vector<std::int32_t> lookup_draft(std::span<const std::int32_t> tokens, std::int32_t ngram_max, std::int32_t ngram_min,
                                       std::int32_t max) {
  std::vector<std::int32_t> draft;
  const std::int64_t n = std::int64_t(tokens.size());
  if (max <= 0) return draft;
  for (std::int64_t g = std::min<std::int64_t>(ngram_max, n - 1); g >= std::max<std::int32_t>(ngram_min, 1); --g) {
    const auto tail = tokens.subspan(std::size_t(n - g));
    // Latest earlier occurrence first: recent text predicts the next tokens best (code repeats
    // the lines it just wrote). The occurrence must have at least one token after it.
    for (std::int64_t at = n - g - 1; at >= 0; --at) {
      if (!std::equal(tail.begin(), tail.end(), tokens.begin() + at)) continue;
      for (std::int64_t j = at + g; j < n && std::int64_t(draft.size()) < max; ++j) draft.push_back(tokens[std::size_t(j)]);
      return draft;
    }
  }
  return draft;
}

LookupDrafter::LookupDrafter(std::int32_t ngram_max, std::int32_t ngram_min) : ngram_max_(ngram_max), ngram_min_(ngram_min) {
  if (ngram_max < 1 || ngram_max > 64) throw std::invalid_argument(fmt::format("--lookup {}: the n-gram length must be 1..64", ngram_max));
  ngram_min_ = std::clamp(ngram_min, 1, ngram_max);
}

void LookupDrafter::operator()(std::span<DraftRequest> requests) const {
  for (DraftRequest& r : requests) r.draft = lookup_draft(r.tokens, ngram_max_, ngram_min_, r.max);
}

std::uint64_t vocabulary_hash(const tok::Tokenizer& tokenizer) {
  XXH3_state_t* state = XXH3_createState();
  SLUICE_ASSERT(state != nullptr);
  XXH3_64bits_reset(state);
  for (std::size_t id = 0; id < tokenizer.size(); ++id) {
    const std::string& s = tokenizer.token_text(std::int32_t(id));
    const std::uint64_t len = s.size();
    XXH3_64bits_update(state, &len, sizeof(len));
    XXH3_64bits_update(state, s.data(), s.size());
  }
  const std::uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

namespace {

SessionOptions draft_session_options(const DraftModelOptions& o) {
  SessionOptions s;
  s.model = o.model;
  s.n_seq = std::max(o.n_seq, 1);
  s.n_ctx = o.n_ctx;
  s.ctx_needed = o.ctx_needed;
  s.kv_type = o.kv_type;
  s.kv_spill = SpillMode::never;
  s.stream = StreamMode::never;  // a draft that streams would cost a read per step: the opposite of the point
  s.threads = o.threads;
  s.budget = o.budget;
  return s;
}

// Probability of the top logit under softmax (for p_min).
float top_probability(std::span<const float> row, std::int32_t best) {
  const float top = row[std::size_t(best)];
  double sum = 0;
  for (float v : row) sum += std::exp(double(v - top));
  return float(1.0 / sum);
}

}  // namespace

std::uint64_t DraftModel::planned_bytes(const DraftModelOptions& options) {
  try {
    // Less its overhead allowance: that is the process's (code, allocator, threads), which the
    // target's plan already counts once.
    const MemoryPlan plan = plan_session(draft_session_options(options)).plan;
    return plan.total - std::min(plan.overhead_bytes, plan.total);
  } catch (const std::runtime_error& e) {
    throw Exception(ErrorContext{ErrorKind::invalid, options.model},
                    fmt::format("--draft {}: the draft model must be resident and does not fit: {}", options.model, e.what()));
  }
}

DraftModel::DraftModel(const DraftModelOptions& options) : options_(options) {
  try {
    session_ = std::make_unique<Session>(draft_session_options(options));
  } catch (const Exception&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw Exception(ErrorContext{ErrorKind::invalid, options.model},
                    fmt::format("--draft {}: the draft model must be resident and does not fit: {}", options.model, e.what()));
  }
  cached_.resize(std::size_t(std::max(options.n_seq, 1)));
}

DraftModel::~DraftModel() = default;

void DraftModel::check_vocabulary(const tok::Tokenizer& target, std::int64_t target_n_vocab, const std::string& target_path) const {
  const tok::Tokenizer& mine = session_->tokenizer();
  const std::int64_t rows = session_->config().n_vocab;
  if (mine.size() != target.size() || rows != target_n_vocab) {
    throw Exception(ErrorContext{ErrorKind::invalid, options_.model},
                    fmt::format("--draft {}: its vocabulary ({} tokens, {} embedding rows) is not the one of {} ({} tokens, {} rows); "
                                "a draft must share the target's tokenizer",
                                options_.model, mine.size(), rows, target_path, target.size(), target_n_vocab));
  }
  const std::uint64_t a = vocabulary_hash(mine), b = vocabulary_hash(target);
  if (a != b) {
    std::size_t first = 0;
    while (first < mine.size() && mine.token_text(std::int32_t(first)) == target.token_text(std::int32_t(first))) ++first;
    throw Exception(ErrorContext{ErrorKind::invalid, options_.model},
                    fmt::format("--draft {}: its {} token strings differ from those of {} (hash {:016x} vs {:016x}; first at id {}); "
                                "a draft must share the target's tokenizer",
                                options_.model, mine.size(), target_path, a, b, first));
  }
}

void DraftModel::draft(std::span<DraftRequest> requests) {
  Transformer& t = session_->transformer();
  Forward& f = session_->forward();
  const std::int64_t n_vocab = f.config().n_vocab;
  const std::int64_t n_ctx = t.n_ctx();
  // Sequences that draft this time, and where each stands.
  struct Active {
    DraftRequest* request;
    std::int64_t row;  // its logit row in the last pass
    std::int64_t pos;  // positions in its draft KV cache
  };
  std::vector<Active> active;
  Batch batch;
  for (DraftRequest& r : requests) {
    r.draft.clear();
    if (r.max <= 0 || r.tokens.empty()) continue;
    SLUICE_ASSERT(r.slot >= 0 && std::size_t(r.slot) < cached_.size());
    // Room for the tokens and the drafts (the target's context may exceed the draft's).
    if (std::int64_t(r.tokens.size()) + r.max > n_ctx) continue;
    std::vector<std::int32_t>& cached = cached_[std::size_t(r.slot)];
    // Keep what the draft's cache shares with the tokens (the slot's earlier prompt and accepted
    // text); at least the last token is fed again, for its logits.
    std::size_t common = 0;
    while (common < cached.size() && common < r.tokens.size() && cached[common] == r.tokens[common]) ++common;
    common = std::min(common, r.tokens.size() - 1);
    common = std::size_t(t.kv_cache().truncate(r.slot, std::int64_t(common)));
    cached.assign(r.tokens.begin(), r.tokens.end());
    const auto fed = r.tokens.subspan(common);
    const std::int64_t row = batch.add(r.slot, std::int64_t(common), fed, true);
    active.push_back({&r, row, std::int64_t(r.tokens.size())});
  }
  std::vector<float> logits;
  std::vector<std::int32_t> step(1);
  try {
    while (!active.empty()) {
      f.forward(t, batch, logits);
      ++passes_;
      batch.clear();
      std::vector<Active> next;
      for (Active& a : active) {
        const std::span<const float> row(logits.data() + a.row * n_vocab, std::size_t(n_vocab));
        const std::int32_t best = argmax(row);
        if (options_.p_min > 0 && top_probability(row, best) < options_.p_min) continue;
        a.request->draft.push_back(best);
        if (std::int32_t(a.request->draft.size()) >= a.request->max) continue;  // the last draft needs no pass of its own
        step[0] = best;
        a.row = batch.add(a.request->slot, a.pos, step, true);
        cached_[std::size_t(a.request->slot)].push_back(best);
        ++a.pos;
        next.push_back(a);
      }
      active = std::move(next);
    }
  } catch (...) {
    // The draft caches' state is unknown: each slot starts afresh next time.
    for (DraftRequest& r : requests) {
      cached_[std::size_t(r.slot)].clear();
      r.draft.clear();
    }
    throw;
  }
}

DraftLength::DraftLength(std::int32_t max, bool adaptive, std::int32_t initial) : max_(max), adaptive_(adaptive) {
  if (max < 1) throw std::invalid_argument(fmt::format("draft length {}: must be at least 1", max));
  k_ = adaptive ? std::clamp(initial, 1, max) : max;
}

double DraftLength::acceptance() const {
  // A prior of one accepted and one rejected token: 0.5 before any draft, and never exactly 0 or 1.
  return (accepted_ + 1.0) / (accepted_ + rejections_ + 2.0);
}

double DraftLength::expected_rate(std::int32_t k, std::int32_t sequences) const {
  const double a = acceptance();
  const double tokens_per_seq = std::abs(1.0 - a) < 1e-12 ? double(k + 1) : (1.0 - std::pow(a, k + 1)) / (1.0 - a);
  const double b = double(std::max(sequences, 1));
  const double seconds = intercept_ + slope_ * b * double(k + 1) + draft_step_ * double(k);
  return seconds > 0 ? b * tokens_per_seq / seconds : b * tokens_per_seq;
}

void DraftLength::record(const DraftPassCost& pass) {
  // Old passes fade: the costs drift (the disk's speed, the context's length, the text's kind).
  constexpr double kDecay = 0.99;
  accepted_ = accepted_ * kDecay + double(pass.accepted);
  rejections_ = rejections_ * kDecay + double(pass.rejections);
  if (pass.rows > 0 && pass.pass_seconds > 0) {
    const double x = double(pass.rows), y = pass.pass_seconds;
    n_ = n_ * kDecay + 1;
    sx_ = sx_ * kDecay + x;
    sy_ = sy_ * kDecay + y;
    sxx_ = sxx_ * kDecay + x * x;
    sxy_ = sxy_ * kDecay + x * y;
  }
  if (pass.k > 0 && pass.sequences > 0 && pass.draft_seconds > 0) {
    // Steps are what a draft model's cost grows with (one pass per step, all sequences in it).
    draft_steps_ = draft_steps_ * kDecay + double(pass.k);
    draft_seconds_ = draft_seconds_ * kDecay + pass.draft_seconds;
  }
  if (pass.sequences > 0) last_sequences_ = pass.sequences;
  refit();
  if (!adaptive_ || pass.sequences == 0) return;
  std::int32_t best = 1;
  double best_rate = -1;
  for (std::int32_t k = 1; k <= max_; ++k) {
    const double r = expected_rate(k, last_sequences_);
    if (r > best_rate * (1 + 1e-9)) {
      best = k;
      best_rate = r;
    }
  }
  k_ = best;
}

void DraftLength::refit() {
  if (n_ > 0) {
    const double mean_x = sx_ / n_, mean_y = sy_ / n_;
    const double var_x = sxx_ / n_ - mean_x * mean_x;
    // Passes of one size only: no slope to see, so all of the cost is the intercept (a pass that
    // streams its weights costs about the same whatever it carries).
    slope_ = var_x > 1e-9 * std::max(1.0, mean_x * mean_x) ? std::max(0.0, (sxy_ / n_ - mean_x * mean_y) / var_x) : 0.0;
    intercept_ = std::max(0.0, mean_y - slope_ * mean_x);
  }
  draft_step_ = draft_steps_ > 0 ? draft_seconds_ / draft_steps_ : 0.0;
}

}  // namespace sluice
