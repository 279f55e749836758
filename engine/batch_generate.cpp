#include "engine/batch_generate.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <memory>
#include <span>
#include <stdexcept>

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

double BatchRunStats::generated_per_second() const {
  const double s = std::chrono::duration<double>(wall).count();
  return s > 0 ? double(generated_tokens) / s : 0.0;
}

namespace {

// One KV slot's sequence. `tokens` holds prompt and generated ids; [0, evaluated) are in the
// KV cache; the rest wait for a pass.
struct Slot {
  bool busy = false;
  SeqResult result;
  GenerateOptions options;
  std::vector<std::string> stop;
  std::vector<std::int32_t> tokens;
  std::int64_t evaluated = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<tok::Detokenizer> detok;
  std::int64_t logits_index = -1;  // row of this pass's logits, -1: none this pass
};

// True when a stop string ends within the text added after `before`; cuts the text at it.
bool stop_string_hit(std::string& text, std::size_t before, const std::vector<std::string>& stops) {
  std::size_t cut = std::string::npos;
  for (const std::string& s : stops) {
    const std::size_t from = before >= s.size() ? before - s.size() + 1 : 0;
    const std::size_t at = text.find(s, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut == std::string::npos) return false;
  text.resize(cut);
  return true;
}

}  // namespace

BatchGenerator::BatchGenerator(Forward& model, Transformer& transformer, const tok::Tokenizer& tokenizer, BatchOptions options)
    : model_(model), transformer_(transformer), tokenizer_(tokenizer), options_(options) {
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
}

BatchRunStats BatchGenerator::run(const std::function<std::optional<SeqRequest>()>& source,
                                  const std::function<void(SeqResult&&)>& sink,
                                  const std::function<void(const PassInfo&)>& on_pass) {
  const auto started = Clock::now();
  const std::int64_t n_ctx = transformer_.n_ctx();
  const std::int64_t n_vocab = model_.config().n_vocab;
  BatchRunStats stats;
  std::vector<Slot> slots(std::size_t(options_.n_parallel));
  bool source_done = false;
  std::size_t next_index = 0;
  std::size_t round_robin = 0;
  Batch batch;
  std::vector<float> logits;

  auto finish = [&](Slot& slot, FinishReason reason) {
    slot.result.finish = reason;
    if (slot.detok) slot.result.text += slot.detok->flush();
    stats.generated_tokens += std::int64_t(slot.result.generated.size());
    slot.busy = false;
    slot.sampler.reset();
    slot.detok.reset();
    sink(std::move(slot.result));
  };
  // Takes requests into free slots; refused requests are answered at once and take no slot.
  auto refill = [&] {
    for (std::size_t s = 0; s < slots.size() && !source_done; ++s) {
      while (!slots[s].busy && !source_done) {
        std::optional<SeqRequest> request = source();
        if (!request) {
          source_done = true;
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
        Slot& slot = slots[s];
        slot.busy = true;
        slot.result = std::move(result);
        slot.options = request->options;
        slot.stop = std::move(request->stop);
        slot.tokens = std::move(request->prompt);
        slot.evaluated = 0;
        slot.sampler = std::make_unique<Sampler>(slot.options.sampling);
        slot.detok = std::make_unique<tok::Detokenizer>(tokenizer_);
        transformer_.kv_cache().clear(std::int32_t(s));
        stats.prompt_tokens += std::int64_t(slot.tokens.size());
      }
    }
  };

  for (;;) {
    refill();
    // This pass: up to `batch` busy sequences, round-robin, within the token budget.
    batch.clear();
    std::int64_t budget = options_.max_pass_tokens;
    std::int32_t chosen = 0;
    for (std::size_t k = 0; k < slots.size() && chosen < options_.batch && budget > 0; ++k) {
      const std::size_t s = (round_robin + k) % slots.size();
      Slot& slot = slots[s];
      slot.logits_index = -1;
      if (!slot.busy) continue;
      const std::int64_t pending = std::int64_t(slot.tokens.size()) - slot.evaluated;
      const std::int64_t take = std::min(pending, budget);
      const bool completes = take == pending;
      slot.logits_index = batch.add(std::int32_t(s), slot.evaluated,
                                    std::span(slot.tokens).subspan(std::size_t(slot.evaluated), std::size_t(take)), completes);
      slot.evaluated += take;
      budget -= take;
      ++chosen;
    }
    if (chosen == 0) break;  // nothing in flight and nothing left to take
    round_robin = (round_robin + std::size_t(chosen)) % slots.size();
    model_.forward(transformer_, batch, logits);
    ++stats.passes;
    stats.sequence_steps += std::uint64_t(chosen);

    for (Slot& slot : slots) {
      if (!slot.busy || slot.logits_index < 0) continue;
      const std::span<const float> row(logits.data() + slot.logits_index * n_vocab, std::size_t(n_vocab));
      slot.logits_index = -1;
      if (std::int64_t(slot.result.generated.size()) >= slot.options.n_predict) {
        finish(slot, FinishReason::length);  // n_predict 0: the prompt was all there was to run
        continue;
      }
      const std::int32_t next = slot.sampler->sample(row, slot.tokens);
      if (slot.options.stop_at_eog && tokenizer_.is_eog(next)) {
        finish(slot, FinishReason::stop);
        continue;
      }
      slot.tokens.push_back(next);
      slot.result.generated.push_back(next);
      const std::size_t before = slot.result.text.size();
      slot.result.text += slot.detok->push(next);
      if (stop_string_hit(slot.result.text, before, slot.stop)) {
        slot.detok.reset();  // what it holds back comes after the stop
        finish(slot, FinishReason::stop);
      } else if (std::int64_t(slot.result.generated.size()) == slot.options.n_predict) {
        finish(slot, FinishReason::length);
      }
    }
    if (on_pass) {
      std::int32_t live = 0;
      for (const Slot& slot : slots) live += slot.busy ? 1 : 0;
      on_pass({stats.passes, chosen, batch.n_tokens(), stats.requests - std::uint64_t(live)});
    }
  }
  stats.wall = Clock::now() - started;
  return stats;
}

}  // namespace sluice
