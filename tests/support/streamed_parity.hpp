// Test support: a streamed model against the same model in RAM, logit for logit.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <vector>

#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "engine/streamed_model.hpp"

namespace sluice::testing {

// Prefill `prompt` (every row's logits), then `steps` greedy decode steps, through `in_ram` and
// `streamed`, each on its own Transformer of n_ctx positions: every logit equal bit for bit.
inline void expect_streamed_matches_in_ram(Model& in_ram, StreamedModel& streamed, std::span<const std::int32_t> prompt,
                                           std::int64_t n_ctx = 32, std::int32_t steps = 3) {
  Transformer a(in_ram.config(), n_ctx, cpu::Threading{}), b(streamed.config(), n_ctx, cpu::Threading{});
  std::vector<float> la, lb;
  evaluate(a, in_ram, prompt, 0, true, la);
  streamed.evaluate(b, prompt, 0, true, lb);
  ASSERT_EQ(la.size(), lb.size());
  ASSERT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << "prefill logits differ";
  for (std::int32_t step = 0; step < steps; ++step) {
    std::int32_t token = argmax(std::span(la).last(std::size_t(in_ram.config().n_vocab)));
    evaluate(a, in_ram, std::span(&token, 1), std::int64_t(prompt.size()) + step, false, la);
    streamed.evaluate(b, std::span(&token, 1), std::int64_t(prompt.size()) + step, false, lb);
    ASSERT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << "decode step " << step;
  }
}

}  // namespace sluice::testing
