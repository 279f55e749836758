// Single-sequence helpers over a model held in RAM: one forward pass (evaluate), and generate(),
// a batch of one through the engine's generation loop (engine/engine.hpp) that streams pieces to
// a callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/forward.hpp"
#include "engine/model.hpp"
#include "engine/transformer.hpp"

namespace sluice {

namespace tok {
class Tokenizer;
}

// One forward pass over `tokens` at positions pos0..: logits of the last token (n_vocab) or, with
// all_logits, of every token (tokens.size() x n_vocab).
void evaluate(Transformer& transformer, const Model& model, std::span<const std::int32_t> tokens, std::int64_t pos0,
              bool all_logits, std::vector<float>& logits);
// The batch of one sequence (slot 0) that evaluate() runs.
Batch single_sequence_batch(std::span<const std::int32_t> tokens, std::int64_t pos0, bool all_logits);

struct GenerateStats {
  std::int64_t prompt_tokens = 0;
  std::int64_t generated_tokens = 0;
  std::chrono::nanoseconds prompt_time{0};
  std::chrono::nanoseconds generation_time{0};
  double prompt_tps() const;
  double generation_tps() const;
};
GenerateStats generate_stats(const SeqResult& result);

// Generates up to n_predict tokens after `prompt` (token ids) through Engine::generate (slot 0 of
// the transformer's cache). `on_piece` receives the text of each token as it is produced
// (complete UTF-8 only); `generated` receives the ids. Throws sluice::Exception for an empty
// prompt or one that does not fit the context with n_predict.
GenerateStats generate(Transformer& transformer, const Model& model, const tok::Tokenizer& tokenizer,
                       std::span<const std::int32_t> prompt, const GenerateOptions& options,
                       const std::function<void(const std::string&)>& on_piece, std::vector<std::int32_t>* generated = nullptr);

}  // namespace sluice
