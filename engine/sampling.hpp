// Token sampling from logits: greedy, temperature, top-k, top-p, min-p and a repetition penalty,
// with a seeded RNG so a request with the same seed gives the same tokens. The order of the
// chain follows llama.cpp's default: penalties -> top-k -> top-p -> min-p -> temperature -> draw.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace sluice {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax)
  std::int32_t top_k = 40;   // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;     // 1: off; > 1 discourages tokens among the last repeat_last_n
  std::int32_t repeat_last_n = 64;
  std::uint64_t seed = 0xC0FFEE;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params);
  // Picks the next token from `logits` (n_vocab floats; not modified). `history` are the tokens
  // so far (prompt and generated), used by the repetition penalty.
  std::int32_t sample(std::span<const float> logits, std::span<const std::int32_t> history);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, std::int32_t>> candidates_;
};

// Index of the largest logit (lowest index on ties, as llama.cpp's greedy sampler).
std::int32_t argmax(std::span<const float> logits);

}  // namespace sluice
