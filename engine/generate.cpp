#include "engine/generate.hpp"

#include <fmt/format.h>
#include <stdexcept>

#include "model/tokenizer.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

Batch single_sequence_batch(std::span<const std::int32_t> tokens, std::int64_t pos0, bool all_logits) {
  Batch batch;
  batch.add(0, pos0, tokens, true);
  if (all_logits) batch.want_all();
  return batch;
}

void evaluate(Transformer& transformer, const Model& model, std::span<const std::int32_t> tokens, std::int64_t pos0,
              bool all_logits, std::vector<float>& logits) {
  InRamForward(model).forward(transformer, single_sequence_batch(tokens, pos0, all_logits), logits);
}

double GenerateStats::prompt_tps() const {
  double s = std::chrono::duration<double>(prompt_time).count();
  return s > 0 ? double(prompt_tokens) / s : 0.0;
}

double GenerateStats::generation_tps() const {
  double s = std::chrono::duration<double>(generation_time).count();
  return s > 0 ? double(generated_tokens) / s : 0.0;
}

GenerateStats generate(Transformer& transformer, const Model& model, const tok::Tokenizer& tokenizer,
                       std::span<const std::int32_t> prompt, const GenerateOptions& options,
                       const std::function<void(const std::string&)>& on_piece, std::vector<std::int32_t>* generated) {
  Evaluator in_ram = [&](std::span<const std::int32_t> tokens, std::int64_t pos0, std::vector<float>& logits) {
    evaluate(transformer, model, tokens, pos0, false, logits);
  };
  return generate(in_ram, transformer.n_ctx(), tokenizer, prompt, options, on_piece, generated);
}

GenerateStats generate(const Evaluator& evaluate_last, std::int64_t n_ctx, const tok::Tokenizer& tokenizer,
                       std::span<const std::int32_t> prompt, const GenerateOptions& options,
                       const std::function<void(const std::string&)>& on_piece, std::vector<std::int32_t>* generated) {
  if (prompt.empty()) throw std::invalid_argument("the prompt is empty (no tokens)");
  if (std::int64_t(prompt.size()) + options.n_predict > n_ctx) {
    throw std::length_error(fmt::format("prompt ({} tokens) + {} to generate exceed the context of {} (raise -c)",
                                        prompt.size(), options.n_predict, n_ctx));
  }
  GenerateStats stats;
  std::vector<std::int32_t> history(prompt.begin(), prompt.end());
  std::vector<float> logits;
  Sampler sampler(options.sampling);
  tok::Detokenizer detok(tokenizer);

  auto started = Clock::now();
  evaluate_last(prompt, 0, logits);
  stats.prompt_tokens = std::int64_t(prompt.size());
  stats.prompt_time = Clock::now() - started;

  started = Clock::now();
  for (std::int32_t i = 0; i < options.n_predict; ++i) {
    std::int32_t next = sampler.sample(logits, history);
    if (options.stop_at_eog && tokenizer.is_eog(next)) break;
    history.push_back(next);
    if (generated) generated->push_back(next);
    ++stats.generated_tokens;
    if (on_piece) {
      std::string piece = detok.push(next);
      if (!piece.empty()) on_piece(piece);
    }
    if (i + 1 == options.n_predict) break;  // no need to evaluate a token nobody will sample after
    evaluate_last(std::span(&next, 1), std::int64_t(history.size()) - 1, logits);
  }
  if (on_piece) {
    std::string rest = detok.flush();
    if (!rest.empty()) on_piece(rest);
  }
  stats.generation_time = Clock::now() - started;
  return stats;
}

}  // namespace sluice
