// Sampling chain: greedy is argmax, seeds reproduce, top-k/top-p/min-p cut where they should,
// and the repetition penalty pushes repeated tokens down.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "engine/sampling.hpp"

namespace sluice {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.5f, 2.9f};

TEST(Sampling, GreedyIsArgmax) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p);
  EXPECT_EQ(s.sample(kLogits, {}), 1);
  EXPECT_EQ(argmax(kLogits), 1);
}

TEST(Sampling, SameSeedSameTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(kLogits, {}), b.sample(kLogits, {}));
}

std::map<int, int> histogram(SamplingParams p, int draws) {
  Sampler s(p);
  std::map<int, int> counts;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(kLogits, {})];
  return counts;
}

TEST(Sampling, TopKKeepsOnlyTheKBest) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  auto counts = histogram(p, 500);
  for (const auto& [token, n] : counts) EXPECT_TRUE(token == 1 || token == 5) << token;
}

TEST(Sampling, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.5f;  // keeps tokens with prob >= 0.5 * p(best): logit >= 3 - ln 2
  auto counts = histogram(p, 500);
  for (const auto& [token, n] : counts) EXPECT_TRUE(token == 1 || token == 5 || token == 2) << token;
}

TEST(Sampling, TopPKeepsTheSmallestNucleus) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 0.3f;  // the best token alone has ~0.33 of the mass
  p.min_p = 0.0f;
  auto counts = histogram(p, 200);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.begin()->first, 1);
}

TEST(Sampling, RepetitionPenaltyDemotesRecentTokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<std::int32_t> history = {1};
  EXPECT_EQ(s.sample(kLogits, history), 5);  // 3.0 / 2 = 1.5 < 2.9
}

}  // namespace
}  // namespace sluice
