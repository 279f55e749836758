// Sampling chain: greedy is argmax, seeds reproduce, top-k/top-p/min-p cut where they should,
// and the repetition penalty pushes repeated tokens down.
#include <gtest/gtest.h>

#include <cmath>
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

// A sampler that ignored its seed would give every seed the same draws.
TEST(Sampling, DifferentSeedsDifferentTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  std::vector<std::int32_t> first;
  Sampler a(p);
  for (int i = 0; i < 64; ++i) first.push_back(a.sample(kLogits, {}));
  int differing_seeds = 0;
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    p.seed = seed;
    Sampler b(p);
    std::vector<std::int32_t> other;
    for (int i = 0; i < 64; ++i) other.push_back(b.sample(kLogits, {}));
    differing_seeds += other != first;
  }
  EXPECT_EQ(differing_seeds, 8);
}

std::map<int, int> histogram(SamplingParams p, int draws) {
  Sampler s(p);
  std::map<int, int> counts;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(kLogits, {})];
  return counts;
}

// At temperature T with no cut, each token is drawn with probability softmax(logits / T): a
// sampler that always took the argmax, or ignored T, fails these bounds. 20000 draws: the
// standard error of a frequency is at most 0.0036, and the bound is 0.02 (over 5 sigma).
TEST(Sampling, DrawsFollowTheSoftmaxAtTheTemperature) {
  for (float temperature : {1.0f, 0.5f, 2.0f}) {
    SCOPED_TRACE(temperature);
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 99;
    constexpr int kDraws = 20000;
    auto counts = histogram(p, kDraws);
    double z = 0;
    for (float l : kLogits) z += std::exp(double(l) / temperature);
    for (std::size_t t = 0; t < kLogits.size(); ++t) {
      const double expected = std::exp(double(kLogits[t]) / temperature) / z;
      EXPECT_NEAR(double(counts[int(t)]) / kDraws, expected, 0.02) << "token " << t;
    }
  }
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
