// A batch run the MoE streaming tests share (test_expert_stream.cpp, test_expert_pack.cpp): two
// sequences, prefill then greedy decode steps, every pass's logits kept, and a bit-for-bit
// comparison of two runs.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <vector>

#include "cache/kv_cache.hpp"
#include "engine/forward.hpp"
#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "engine/transformer.hpp"

namespace sluice {

// The fault tests' prompt (8 tokens) and its logits, every row, from the model in RAM.
inline const std::vector<std::int32_t> kFaultPrompt = {1, 403, 407, 261, 378, 300, 301, 302};
inline std::vector<float> in_ram_logits(const Model& model, std::span<const std::int32_t> prompt) {
  std::vector<float> logits;
  Transformer t(model.config(), 32, compute::Threading{});
  evaluate(t, model, prompt, 0, true, logits);
  return logits;
}

// Two sequences: a prompt each, then `steps` decode steps of both (greedy from the first run).
struct PassLogits {
  std::vector<std::vector<float>> logits;  // per pass
};
inline PassLogits run_batch(Forward& forward, const ModelConfig& c, int steps, std::vector<std::int32_t>* tokens_io) {
  cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, 32, 2};
  Transformer t(c, cache::make_resident_kv_cache(shape), compute::Threading{});
  const std::vector<std::int32_t> a = {1, 403, 407, 261, 378, 300, 301, 302}, b = {1, 50, 51, 52, 300, 301};
  PassLogits run;
  Batch prefill;
  prefill.add(0, 0, a, std::int64_t(a.size()));
  prefill.add(1, 0, b, std::int64_t(b.size()));
  forward.forward(t, prefill, run.logits.emplace_back());
  std::vector<std::int32_t>& tokens = *tokens_io;
  for (int s = 0; s < steps; ++s) {
    const std::vector<float>& last = run.logits.back();
    const std::size_t v = std::size_t(c.n_vocab);
    if (tokens.size() < std::size_t(2 * (s + 1))) {  // first run: greedy; later runs replay it
      const std::size_t rows = last.size() / v;
      tokens.push_back(argmax(std::span(last).subspan((rows == 2 ? 0 : a.size() - 1) * v, v)));
      tokens.push_back(argmax(std::span(last).subspan((rows == 2 ? 1 : a.size() + b.size() - 1) * v, v)));
    }
    Batch step;
    step.add(0, std::int64_t(a.size()) + s, std::span(&tokens[std::size_t(2 * s)], 1), true);
    step.add(1, std::int64_t(b.size()) + s, std::span(&tokens[std::size_t(2 * s + 1)], 1), true);
    forward.forward(t, step, run.logits.emplace_back());
  }
  return run;
}

inline void expect_same(const PassLogits& want, const PassLogits& got) {
  ASSERT_EQ(want.logits.size(), got.logits.size());
  for (std::size_t p = 0; p < want.logits.size(); ++p) {
    ASSERT_EQ(want.logits[p].size(), got.logits[p].size()) << "pass " << p;
    EXPECT_EQ(std::memcmp(want.logits[p].data(), got.logits[p].data(), want.logits[p].size() * sizeof(float)), 0) << "pass " << p;
  }
}

}  // namespace sluice
