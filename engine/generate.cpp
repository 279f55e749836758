#include "engine/generate.hpp"

#include <fmt/format.h>
#include <stdexcept>

#include "model/tokenizer.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

std::int64_t Batch::add(std::int32_t seq, std::int64_t pos0, std::span<const std::int32_t> ids, bool want_last) {
  if (ids.empty()) return -1;
  spans.push_back({seq, pos0, static_cast<std::int64_t>(ids.size())});
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  if (!want_last) return -1;
  logit_rows.push_back(n_tokens() - 1);
  return static_cast<std::int64_t>(logit_rows.size()) - 1;
}

void Batch::want_all() {
  logit_rows.resize(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) logit_rows[i] = static_cast<std::int64_t>(i);
}

void Batch::clear() {
  tokens.clear();
  spans.clear();
  logit_rows.clear();
}

void InRamForward::forward(Transformer& transformer, const Batch& batch, std::vector<float>& logits) {
  const ModelConfig& c = model_.config();
  std::vector<float> x(std::size_t(batch.n_tokens() * c.n_embd));
  transformer.embed(model_.globals().tok_embd, batch.tokens, x.data());
  for (std::int64_t il = 0; il < c.n_layer; ++il) {
    transformer.block(il, model_.blocks()[std::size_t(il)], model_.globals(), x.data(), batch.spans);
  }
  logits.resize(batch.logit_rows.size() * std::size_t(c.n_vocab));
  transformer.head_rows(model_.globals(), x.data(), batch.logit_rows, logits.data());
}

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
