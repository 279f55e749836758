#include "engine/engine.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <memory>
#include <stdexcept>

#include "common/assert.hpp"
#include "common/error.hpp"
#include "engine/session.hpp"
#include "engine/speculative.hpp"
#include "model/tokenizer.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::length: return "length";
    case FinishReason::stop: return "stop";
    case FinishReason::error: return "error";
  }
  return "?";
}

double BatchRunStats::tokens_per_second() const {
  const double s = std::chrono::duration<double>(wall).count();
  return s > 0 ? double(prompt_tokens + generated_tokens) / s : 0.0;
}

double BatchRunStats::tokens_per_step() const {
  // A step that generated nothing (a prompt chunk) is not a decode step: count the sequence steps
  // that sampled, i.e. generated minus accepted drafts.
  const std::int64_t steps = generated_tokens - accepted_tokens;
  return steps > 0 ? double(generated_tokens) / double(steps) : 0.0;
}

double BatchRunStats::acceptance() const { return drafted_tokens > 0 ? double(accepted_tokens) / double(drafted_tokens) : 0.0; }

double BatchRunStats::generated_per_second() const {
  const double s = std::chrono::duration<double>(wall).count();
  return s > 0 ? double(generated_tokens) / s : 0.0;
}

namespace {

// True when a stop string ends within the text added after `before`; cuts the text at it.
bool stop_string_hit(std::string& text, std::size_t before, const std::vector<std::string>& stops) {
  std::size_t cut = std::string::npos;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const std::size_t from = before >= s.size() ? before - s.size() + 1 : 0;
    const std::size_t at = text.find(s, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut == std::string::npos) return false;
  text.resize(cut);
  return true;
}

// Bytes at the end of `text` that begin some stop string: not yet safe to stream.
std::size_t stop_prefix_at_end(const std::string& text, const std::vector<std::string>& stops) {
  std::size_t held = 0;
  for (const std::string& s : stops) {
    for (std::size_t k = std::min(s.size() - (s.empty() ? 0 : 1), text.size()); k > held; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        held = k;
        break;
      }
    }
  }
  return held;
}

// One KV slot's sequence. `tokens` holds the prompt and the accepted tokens; [0, evaluated) are
// in the KV cache, the rest wait for a pass. `draft` are the tokens fed after them this pass.
struct Sequence {
  bool busy = false;
  SeqResult result;
  GenerateOptions options;
  std::vector<std::string> stop;
  std::function<void(std::string_view)> on_text;
  std::function<bool()> cancelled;
  std::size_t streamed = 0;  // bytes of result.text handed to on_text
  std::vector<std::int32_t> tokens;
  std::int64_t evaluated = 0;
  std::vector<std::int32_t> draft;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<tok::Detokenizer> detok;
  bool in_pass = false;
  std::int64_t first_row = -1;  // this pass's first logit row (the last fed token's), -1: none
  Clock::time_point admitted, first_token;

  std::int64_t remaining() const { return options.n_predict - std::int64_t(result.generated.size()); }

  // Hands on_text what can no longer turn out to be part of a stop string (all of it once
  // finished: the text is cut at the stop then).
  void stream(bool finished) {
    if (!on_text) return;
    const std::size_t safe = finished ? result.text.size() : result.text.size() - stop_prefix_at_end(result.text, stop);
    if (safe > streamed) {
      on_text(std::string_view(result.text).substr(streamed, safe - streamed));
      streamed = safe;
    }
  }

  // Samples from this pass's logit rows (one, plus one per drafted token), accepting drafted
  // tokens while the sampler picks them. Returns the finish reason when the sequence is done.
  std::optional<FinishReason> accept(const std::vector<float>& logits, std::int64_t n_vocab, const tok::Tokenizer& tokenizer) {
    std::size_t accepted = 0;
    std::optional<FinishReason> done;
    for (std::size_t i = 0;; ++i) {
      if (remaining() <= 0) {
        done = FinishReason::length;  // n_predict 0: the prompt was all there was to run
        break;
      }
      const std::span<const float> row(logits.data() + (first_row + std::int64_t(i)) * n_vocab, std::size_t(n_vocab));
      const std::int32_t next = sampler->sample(row, tokens);
      if (result.generated.empty()) first_token = Clock::now();
      if (options.stop_at_eog && tokenizer.is_eog(next)) {
        done = FinishReason::stop;
        break;
      }
      tokens.push_back(next);
      result.generated.push_back(next);
      const std::size_t before = result.text.size();
      result.text += detok->push(next);
      if (stop_string_hit(result.text, before, stop)) {
        detok.reset();  // what it holds back comes after the stop
        done = FinishReason::stop;
        break;
      }
      if (remaining() == 0) {
        done = FinishReason::length;
        break;
      }
      if (cancelled && cancelled()) {
        done = FinishReason::stop;
        break;
      }
      if (i == draft.size() || next != draft[i]) break;
      ++accepted;  // draft[i] sits at this position in the cache: its row's logits are valid
    }
    result.drafted += std::int64_t(draft.size());
    result.accepted += std::int64_t(accepted);
    evaluated += std::int64_t(accepted);
    draft.clear();
    first_row = -1;
    return done;
  }
};

}  // namespace

Engine::Engine(Forward& model, Transformer& transformer, const tok::Tokenizer& tokenizer, BatchOptions options)
    : model_(model), transformer_(transformer), tokenizer_(tokenizer), options_(std::move(options)) {
  if (options_.n_parallel < 1 || options_.n_parallel > transformer_.n_seq()) {
    throw std::invalid_argument(fmt::format("{} parallel sequences need as many KV slots; the cache has {}", options_.n_parallel,
                                            transformer_.n_seq()));
  }
  if (options_.batch <= 0 || options_.batch > options_.n_parallel) options_.batch = options_.n_parallel;
  // The memory plan's pass size, when the session set one, bounds the prompt chunks too (a
  // longer pass would be cut by Forward::forward and stream the weights twice).
  if (transformer_.max_pass_tokens() > 0) {
    options_.max_pass_tokens = std::min(options_.max_pass_tokens, transformer_.max_pass_tokens());
  }
  options_.max_pass_tokens = std::max<std::int64_t>(options_.max_pass_tokens, options_.batch);
  options_.max_draft = std::max<std::int32_t>(options_.max_draft, 0);
}

namespace {
BatchOptions session_batch_options(Session& session, std::optional<BatchOptions> options) {
  if (options) return std::move(*options);
  BatchOptions o;
  o.n_parallel = session.transformer().n_seq();
  if (session.pass_tokens() > 0) o.max_pass_tokens = session.pass_tokens();
  return o;
}
}  // namespace

Engine::Engine(Session& session, std::optional<BatchOptions> options)
    : Engine(session.forward(), session.transformer(), session.tokenizer(), session_batch_options(session, std::move(options))) {}

BatchRunStats Engine::run(const std::function<std::optional<SeqRequest>()>& source, const std::function<void(SeqResult&&)>& sink,
                          const std::function<void(const PassInfo&)>& on_pass) {
  const auto started = Clock::now();
  const std::int64_t n_ctx = transformer_.n_ctx();
  const std::int64_t n_vocab = model_.config().n_vocab;
  BatchRunStats stats;
  std::vector<Sequence> slots(std::size_t(options_.n_parallel));
  bool source_done = false;
  std::size_t next_index = 0;
  std::size_t round_robin = 0;
  Batch batch;
  std::vector<float> logits;

  auto finish = [&](Sequence& seq, FinishReason reason) {
    seq.result.finish = reason;
    if (seq.detok) seq.result.text += seq.detok->flush();
    if (reason != FinishReason::error) seq.stream(true);
    const auto now = Clock::now();
    if (seq.result.generated.empty()) {
      seq.result.prompt_time = now - seq.admitted;
    } else {
      seq.result.prompt_time = seq.first_token - seq.admitted;
      seq.result.generation_time = now - seq.first_token;
    }
    stats.generated_tokens += std::int64_t(seq.result.generated.size());
    stats.drafted_tokens += seq.result.drafted;
    stats.accepted_tokens += seq.result.accepted;
    seq.busy = false;
    seq.in_pass = false;
    seq.first_row = -1;
    seq.sampler.reset();
    seq.detok.reset();
    seq.on_text = nullptr;
    seq.cancelled = nullptr;
    sink(std::move(seq.result));
  };
  // Takes requests into free slots; refused requests are answered at once and take no slot.
  auto refill = [&] {
    bool nothing_now = false;  // source_may_resume: asked once per pass after it has nothing
    for (std::size_t s = 0; s < slots.size() && !source_done && !nothing_now; ++s) {
      while (!slots[s].busy && !source_done && !nothing_now) {
        std::optional<SeqRequest> request = source();
        if (!request) {
          (options_.source_may_resume ? nothing_now : source_done) = true;
          break;
        }
        ++stats.requests;
        SeqResult result;
        result.index = next_index++;
        result.prompt_tokens = std::int64_t(request->prompt.size());
        const std::int64_t need = std::int64_t(request->prompt.size()) + request->options.n_predict;
        if (request->prompt.empty() || need > n_ctx) {
          result.finish = FinishReason::error;
          result.error = request->prompt.empty()
                             ? "the prompt is empty (no tokens)"
                             : fmt::format("prompt ({} tokens) + {} to generate exceed the context of {}", request->prompt.size(),
                                           request->options.n_predict, n_ctx);
          ++stats.failed;
          sink(std::move(result));
          continue;
        }
        Sequence& seq = slots[s];

        seq.busy = true;
        seq.admitted = Clock::now();
        seq.result = std::move(result);
        seq.options = request->options;
        seq.stop = std::move(request->stop);
        seq.on_text = std::move(request->on_text);
        seq.cancelled = std::move(request->cancelled);
        seq.streamed = 0;
        seq.tokens = std::move(request->prompt);
        // Positions from `cached` on are this request's; those below are the caller's earlier
        // tokens, already in this slot's cache.
        // A sliding-window layer's ring may no longer hold what the kept positions attend to:
        // then the cache keeps none and the whole prompt is evaluated again.
        const std::int64_t cached = transformer_.kv_cache().truncate(
            std::int32_t(s), std::clamp<std::int64_t>(request->cached, 0, std::int64_t(seq.tokens.size()) - 1));
        seq.evaluated = cached;
        seq.draft.clear();
        seq.sampler = std::make_unique<Sampler>(seq.options.sampling);
        seq.detok = std::make_unique<tok::Detokenizer>(tokenizer_);
        stats.prompt_tokens += std::int64_t(seq.tokens.size()) - cached;
      }
    }
  };

  for (;;) {
    refill();
    // This pass: up to `batch` busy sequences, round-robin, within the token budget.
    batch.clear();
    std::int64_t budget = options_.max_pass_tokens;
    std::int32_t chosen = 0;
    std::chrono::nanoseconds draft_time{0};
    for (Sequence& seq : slots) {
      seq.in_pass = false;
      seq.first_row = -1;
    }
    // Which sequences run and what of their pending tokens (prompt chunk or last token) they feed.
    struct Pick {
      std::size_t slot;
      std::int64_t take;
      bool completes;
    };
    std::vector<Pick> picks;
    for (std::size_t k = 0; k < slots.size() && chosen < options_.batch && budget > 0; ++k) {
      const std::size_t s = (round_robin + k) % slots.size();
      Sequence& seq = slots[s];
      if (!seq.busy) continue;
      const std::int64_t pending = std::int64_t(seq.tokens.size()) - seq.evaluated;
      const std::int64_t take = std::min(pending, budget);
      picks.push_back({s, take, take == pending});
      budget -= take;
      ++chosen;
    }
    // Drafts for the sequences whose pending tokens all fit, in the room the pass has left: one
    // call for all of them (a draft model drafts every sequence through the same passes).
    const std::int32_t k_draft = options_.draft_length ? std::min(options_.draft_length->next(), options_.max_draft) : options_.max_draft;
    std::vector<DraftRequest> draft_requests;
    if (options_.drafter && k_draft > 0) {
      for (const Pick& p : picks) {
        Sequence& seq = slots[p.slot];
        if (!p.completes) continue;
        // Every accepted draft is one token fewer to generate, and the step samples one more
        // after the drafts: more than remaining() - 1 could never all be used.
        const std::int64_t most = std::min<std::int64_t>({k_draft, seq.remaining() - 1, budget});
        if (most <= 0) continue;
        budget -= most;
        DraftRequest r;
        r.slot = std::int32_t(p.slot);
        r.index = seq.result.index;
        r.tokens = seq.tokens;
        r.max = std::int32_t(most);
        draft_requests.push_back(std::move(r));
      }
    }
    std::int64_t pass_drafted = 0;
    if (!draft_requests.empty()) {
      const auto t0 = Clock::now();
      options_.drafter(draft_requests);
      const auto t1 = Clock::now();
      draft_time = t1 - t0;
      stats.draft_time += draft_time;
      if (options_.trace) options_.trace->complete("speculative", "draft", t0, t1, {{"sequences", draft_requests.size()}, {"k", k_draft}});
      for (DraftRequest& r : draft_requests) {
        Sequence& seq = slots[std::size_t(r.slot)];
        seq.draft = std::move(r.draft);
        if (std::int64_t(seq.draft.size()) > r.max) seq.draft.resize(std::size_t(r.max));
        for (std::int32_t id : seq.draft) {
          SLUICE_ASSERT_MSG(id >= 0 && id < n_vocab, "a drafted token is outside the vocabulary");
        }
        pass_drafted += std::int64_t(seq.draft.size());
      }
    }
    std::int32_t drafting = 0;
    for (const Pick& p : picks) {
      Sequence& seq = slots[p.slot];
      std::span<const std::int32_t> fed = std::span(seq.tokens).subspan(std::size_t(seq.evaluated), std::size_t(p.take));
      std::vector<std::int32_t> with_draft;
      if (!seq.draft.empty()) {
        with_draft.assign(fed.begin(), fed.end());
        with_draft.insert(with_draft.end(), seq.draft.begin(), seq.draft.end());
        fed = with_draft;
        ++drafting;
      }
      const std::int64_t wanted = p.completes ? std::int64_t(1 + seq.draft.size()) : 0;  // the last fed token's row, drafts'
      seq.first_row = batch.add(std::int32_t(p.slot), seq.evaluated, fed, wanted);
      seq.in_pass = true;
      seq.evaluated += p.take;
    }
    if (chosen == 0) break;  // nothing in flight and nothing left to take
    round_robin = (round_robin + std::size_t(chosen)) % slots.size();
    ++stats.passes;
    stats.sequence_steps += std::uint64_t(chosen);
    std::int32_t failed = 0;
    const auto pass_start = Clock::now();
    try {
      model_.forward(transformer_, batch, logits);
    } catch (const Exception& e) {
      // The pass's sequences have K/V of unknown state: they fail, and only they.
      ++stats.failed_passes;
      for (Sequence& seq : slots) {
        if (!seq.busy || !seq.in_pass) continue;
        seq.result.error = e.what();
        seq.result.exception = std::current_exception();
        seq.draft.clear();
        ++stats.failed;
        ++failed;
        finish(seq, FinishReason::error);
      }
    }

    const auto pass_end = Clock::now();
    stats.forward_time += pass_end - pass_start;
    if (options_.trace && pass_drafted > 0) {
      options_.trace->complete("speculative", "verify", pass_start, pass_end, {{"rows", batch.n_tokens()}, {"drafted", pass_drafted}});
    }
    std::int64_t pass_accepted = 0, rejections = 0;
    for (std::size_t s = 0; s < slots.size() && failed == 0; ++s) {
      Sequence& seq = slots[s];
      if (!seq.busy || seq.first_row < 0) continue;
      const std::size_t drafted = seq.draft.size();
      const std::int64_t accepted_before = seq.result.accepted;
      const std::optional<FinishReason> done = seq.accept(logits, n_vocab, tokenizer_);
      pass_accepted += seq.result.accepted - accepted_before;
      if (!done && seq.result.accepted - accepted_before < std::int64_t(drafted)) ++rejections;
      if (done) {
        finish(seq, *done);
        continue;
      }
      // The rejected drafts' positions: forgotten, so the next pass writes them afresh.
      // (A ring keeps every position a rejection forgets: drafts are shorter than its slack.)
      if (drafted > 0) seq.evaluated = transformer_.kv_cache().truncate(std::int32_t(s), seq.evaluated);
      seq.stream(false);
    }
    if (pass_drafted > 0) ++stats.draft_passes;
    if (options_.draft_length && failed == 0) {
      DraftPassCost cost;
      cost.k = draft_requests.empty() ? 0 : k_draft;
      cost.sequences = drafting;
      cost.rows = batch.n_tokens();
      cost.drafted = pass_drafted;
      cost.accepted = pass_accepted;
      cost.rejections = rejections;
      cost.pass_seconds = std::chrono::duration<double>(pass_end - pass_start).count();
      cost.draft_seconds = std::chrono::duration<double>(draft_time).count();
      options_.draft_length->record(cost);
    }
    if (on_pass) {
      std::int32_t live = 0;
      for (const Sequence& seq : slots) live += seq.busy ? 1 : 0;
      PassInfo info{stats.passes, chosen, batch.n_tokens(), pass_drafted, pass_accepted, stats.requests - std::uint64_t(live), failed};
      on_pass(info);
    }
  }
  stats.wall = Clock::now() - started;
  last_run_ = stats;
  return stats;
}

SeqResult Engine::generate(SeqRequest request) {
  std::optional<SeqRequest> pending(std::move(request));
  std::optional<SeqResult> out;
  run([&]() -> std::optional<SeqRequest> {
        std::optional<SeqRequest> r = std::move(pending);
        pending.reset();
        return r;
      },
      [&](SeqResult&& r) { out = std::move(r); });
  SLUICE_ASSERT(out.has_value());
  if (out->finish == FinishReason::error) {
    if (out->exception) std::rethrow_exception(out->exception);
    throw Exception(ErrorContext{ErrorKind::invalid}, out->error);
  }
  return std::move(*out);
}

}  // namespace sluice
