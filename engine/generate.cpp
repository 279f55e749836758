#include "engine/generate.hpp"

#include "model/tokenizer.hpp"

namespace sluice {

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

GenerateStats generate_stats(const SeqResult& result) {
  return {result.prompt_tokens, std::int64_t(result.generated.size()), result.prompt_time, result.generation_time};
}

GenerateStats generate(Transformer& transformer, const Model& model, const tok::Tokenizer& tokenizer,
                       std::span<const std::int32_t> prompt, const GenerateOptions& options,
                       const std::function<void(const std::string&)>& on_piece, std::vector<std::int32_t>* generated) {
  InRamForward forward(model);
  BatchOptions batch;
  batch.n_parallel = 1;
  // The whole prompt in one call, cut only where the transformer's pass size says (as a single
  // evaluate() would).
  batch.max_pass_tokens = std::max<std::int64_t>(std::int64_t(prompt.size()), 1);
  SeqRequest request;
  request.prompt.assign(prompt.begin(), prompt.end());
  request.options = options;
  if (on_piece) request.on_text = [&](std::string_view piece) { on_piece(std::string(piece)); };
  SeqResult result = Engine(forward, transformer, tokenizer, batch).generate(std::move(request));
  if (generated) generated->insert(generated->end(), result.generated.begin(), result.generated.end());
  return generate_stats(result);
}

}  // namespace sluice
