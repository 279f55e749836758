// The expert cache: per-layer slots, LFU with recency and aging, pins and fills that cannot leak a
// half-read expert, guesses that cannot evict a hot expert, and the hit rate it reaches on uniform
// and skewed (Zipf) routing against the uniform expectation the planner prints.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "cache/expert_cache.hpp"

namespace sluice::cache {
namespace {

// Demand access as the MoE pass does it: record, then pin or read into a reserved slot.
bool touch(ExpertCache& cache, ExpertKey key) {
  const bool hit = cache.state(key) == ExpertState::ready;
  cache.record_access(key);
  if (hit) return true;
  auto fill = cache.reserve(key, FillReason::demand);
  if (fill) std::move(*fill).commit();
  return false;
}

TEST(ExpertCache, SlotsAreAlignedAndSeparatePerLayer) {
  ExpertCache cache(2, 8, 3, 5000);
  EXPECT_EQ(cache.slot_bytes(), 8192u);
  EXPECT_EQ(cache.pool_bytes(), 2u * 3u * 8192u);
  // Layer 0 filling all its slots never evicts layer 1's experts.
  ASSERT_FALSE(touch(cache, {1, 5}));
  for (int e = 0; e < 8; ++e) touch(cache, {0, e});
  EXPECT_EQ(cache.state({1, 5}), ExpertState::ready);
  int ready = 0;
  for (int e = 0; e < 8; ++e) ready += cache.state({0, e}) == ExpertState::ready;
  EXPECT_EQ(ready, 3);
  // Slot memory: distinct, 4 KiB aligned, writable through a Fill and readable through a Pin.
  auto fill = cache.reserve({1, 0}, FillReason::demand);
  ASSERT_TRUE(fill);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(fill->bytes().data()) % 4096, 0u);
  std::memset(fill->bytes().data(), 0x5a, fill->bytes().size());
  auto pin = std::move(*fill).commit();
  EXPECT_EQ(pin.bytes()[8191], std::byte{0x5a});
}

// The planner gives some layers one slot more than others: each layer keeps exactly its own count,
// the pool holds their sum, and filling one layer never takes a neighbour's slot.
// The pool is faulted in when the cache is made, not by the first O_DIRECT read into each slot
// (which would zero the pages on the thread that submits the read: the one computing the pass).
std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * 4096;
}

TEST(ExpertCache, ThePoolIsResidentOnceMade) {
  const std::uint64_t before = resident_bytes();
  ExpertCache cache(4, 8, 4, 4 << 20);  // 64 MiB
  const std::uint64_t after = resident_bytes();
  EXPECT_GE(after - before, cache.pool_bytes() * 9 / 10) << "before " << before << ", after " << after;
}

TEST(ExpertCache, UnevenLayersEachEvictWithinTheirOwnCount) {
  const std::vector<std::int32_t> layer_slots = {1, 2, 0, 3, 9};  // 9 is cut to the 8 experts
  ExpertCache cache(8, layer_slots, 4096);
  EXPECT_EQ(cache.total_slots(), 1 + 2 + 0 + 3 + 8);
  EXPECT_EQ(cache.pool_bytes(), 14u * 4096u);
  for (std::int32_t l = 0; l < 5; ++l) EXPECT_EQ(cache.slots(l), std::min(layer_slots[std::size_t(l)], 8)) << "layer " << l;
  // Every layer touches every expert twice over; each then holds exactly its own count ready.
  for (int round = 0; round < 2; ++round) {
    for (std::int32_t l = 0; l < 5; ++l) {
      for (int e = 0; e < 8; ++e) touch(cache, {l, e});
    }
  }
  for (std::int32_t l = 0; l < 5; ++l) {
    int ready = 0;
    for (int e = 0; e < 8; ++e) ready += cache.state({l, e}) == ExpertState::ready;
    EXPECT_EQ(ready, cache.slots(l)) << "layer " << l;
  }
  // Layer 2 has no slot: a demanded expert there gets none (the store reads it into its transient
  // buffer) instead of taking one of layer 1's or layer 3's.
  EXPECT_FALSE(cache.reserve({2, 0}, FillReason::demand).has_value());
  // Layer 0 (one slot) evicts its own expert, not layer 1's: layer 1's two stay ready.
  const int ready1_before = int(cache.state({1, 6}) == ExpertState::ready) + int(cache.state({1, 7}) == ExpertState::ready);
  EXPECT_EQ(ready1_before, 2);
  touch(cache, {0, 0});
  EXPECT_EQ(cache.state({0, 0}), ExpertState::ready);
  EXPECT_EQ(cache.state({0, 7}), ExpertState::absent);
  EXPECT_EQ(cache.state({1, 6}), ExpertState::ready);
  EXPECT_EQ(cache.state({1, 7}), ExpertState::ready);
  // Layer 3 with its three slots pinned refuses a fourth rather than borrowing from layer 4.
  std::vector<ExpertCache::Pin> pins;
  for (int e = 0; e < 8; ++e) {
    if (auto pin = cache.pin({3, e})) pins.push_back(std::move(*pin));
  }
  ASSERT_EQ(pins.size(), 3u);
  const int absent3 = [&] { for (int e = 0; e < 8; ++e) if (cache.state({3, e}) == ExpertState::absent) return e; return -1; }();
  ASSERT_GE(absent3, 0);
  EXPECT_FALSE(cache.reserve({3, absent3}, FillReason::demand).has_value());
  // Every fill took one of the layers' own free slots once, or evicted: no slot beyond their counts.
  EXPECT_EQ(cache.stats().fills, cache.stats().evictions + std::uint64_t(cache.total_slots()));
}

TEST(ExpertCache, UniformHitRateOfUnevenLayersIsTheirMean) {
  const std::vector<std::int32_t> layer_slots = {1, 2, 2, 1};
  EXPECT_DOUBLE_EQ(uniform_expert_hit_rate(layer_slots, 8), (1.0 + 2.0 + 2.0 + 1.0) / 4.0 / 8.0);
  const std::vector<std::int32_t> even = {3, 3, 3};
  EXPECT_DOUBLE_EQ(uniform_expert_hit_rate(even, 8), uniform_expert_hit_rate(3, 8));
  EXPECT_DOUBLE_EQ(uniform_expert_hit_rate(std::vector<std::int32_t>{}, 8), 0.0);
}

TEST(ExpertCache, EvictsTheLeastFrequentThenTheLeastRecent) {
  ExpertCache cache(1, 8, 2, 4096, 1000);
  for (int i = 0; i < 5; ++i) touch(cache, {0, 0});  // expert 0: frequency 5
  touch(cache, {0, 1});                              // expert 1: frequency 1
  touch(cache, {0, 2});                              // evicts 1 (less frequent than 0)
  EXPECT_EQ(cache.state({0, 0}), ExpertState::ready);
  EXPECT_EQ(cache.state({0, 1}), ExpertState::absent);
  EXPECT_EQ(cache.state({0, 2}), ExpertState::ready);
  touch(cache, {0, 3});  // 2 and 3 tie at 1 with 0 at 5: 2 is the less recent
  EXPECT_EQ(cache.state({0, 2}), ExpertState::absent);
  EXPECT_EQ(cache.stats().evictions, 2u);
  EXPECT_EQ(cache.stats().hits, 4u);
  EXPECT_EQ(cache.stats().misses, 4u);
}

TEST(ExpertCache, PinnedAndFillingSlotsAreNeverEvicted) {
  ExpertCache cache(1, 8, 2, 4096);
  touch(cache, {0, 0});
  auto pin = cache.pin({0, 0});
  ASSERT_TRUE(pin);
  auto filling = cache.reserve({0, 1}, FillReason::demand);
  ASSERT_TRUE(filling);
  EXPECT_EQ(cache.state({0, 1}), ExpertState::filling);
  EXPECT_FALSE(cache.pin({0, 1}));  // not served before its read is committed
  EXPECT_FALSE(cache.reserve({0, 2}, FillReason::demand));  // both slots busy: the caller streams it
  {
    auto moved = std::move(pin);
  }  // unpinned here
  auto third = cache.reserve({0, 2}, FillReason::demand);
  ASSERT_TRUE(third);
  EXPECT_EQ(cache.state({0, 0}), ExpertState::absent);
}

TEST(ExpertCache, AFillDroppedWithoutCommitLeavesNothingBehind) {
  ExpertCache cache(1, 4, 1, 4096);
  {
    auto fill = cache.reserve({0, 3}, FillReason::demand);
    ASSERT_TRUE(fill);
  }  // the read failed: the Fill dies uncommitted
  EXPECT_EQ(cache.state({0, 3}), ExpertState::absent);
  EXPECT_FALSE(cache.pin({0, 3}));
  EXPECT_TRUE(cache.reserve({0, 3}, FillReason::demand));  // the slot is free again
  EXPECT_EQ(cache.stats().fills, 0u);
}

TEST(ExpertCache, AGuessCannotEvictAHotterExpert) {
  ExpertCache cache(1, 8, 1, 4096, 1000);
  for (int i = 0; i < 3; ++i) touch(cache, {0, 0});
  EXPECT_FALSE(cache.reserve({0, 5}, FillReason::guess));  // 5 never used, 0 used 3 times
  EXPECT_EQ(cache.stats().refused, 1u);
  EXPECT_EQ(cache.state({0, 0}), ExpertState::ready);
  for (int i = 0; i < 4; ++i) cache.record_access({0, 5});  // now 5 is hotter
  auto fill = cache.reserve({0, 5}, FillReason::guess);
  ASSERT_TRUE(fill);
  std::move(*fill).commit();
  EXPECT_EQ(cache.state({0, 0}), ExpertState::absent);
  EXPECT_EQ(cache.stats().late, 0u);
}

TEST(ExpertCache, AgingHalvesALayersFrequencies) {
  ExpertCache cache(2, 4, 1, 4096, 10);
  for (int i = 0; i < 9; ++i) cache.record_access({0, 1});
  cache.record_access({1, 2});
  EXPECT_EQ(cache.frequency({0, 1}), 9u);
  cache.record_access({0, 2});  // the layer's 10th access: halved
  EXPECT_EQ(cache.frequency({0, 1}), 4u);
  EXPECT_EQ(cache.frequency({0, 2}), 0u);
  EXPECT_EQ(cache.frequency({1, 2}), 1u);  // other layers untouched
}

// Routing like a MoE layer: each token picks `used` distinct experts of n, uniformly or with
// probability ~ 1 / rank^s (a per-layer permutation). The cache holds a quarter of each layer.
double simulate(double s, std::uint32_t seed, double* uniform_expectation) {
  constexpr int kLayers = 4, kExperts = 64, kUsed = 4, kSlots = 16, kTokens = 3000;
  ExpertCache cache(kLayers, kExperts, kSlots, 4096);
  std::mt19937 rng(seed);
  std::vector<std::vector<int>> perm(kLayers, std::vector<int>(kExperts));
  for (auto& p : perm) {
    for (int e = 0; e < kExperts; ++e) p[std::size_t(e)] = e;
    std::shuffle(p.begin(), p.end(), rng);
  }
  std::vector<double> weight(kExperts);
  for (int r = 0; r < kExperts; ++r) weight[std::size_t(r)] = 1.0 / std::pow(double(r + 1), s);
  std::uint64_t hits = 0, total = 0;
  for (int t = 0; t < kTokens; ++t) {
    for (int l = 0; l < kLayers; ++l) {
      std::vector<double> w = weight;
      for (int k = 0; k < kUsed; ++k) {
        std::discrete_distribution<int> pick(w.begin(), w.end());
        const int r = pick(rng);
        w[std::size_t(r)] = 0;  // distinct experts per token
        const bool hit = touch(cache, {l, perm[std::size_t(l)][std::size_t(r)]});
        if (t >= kTokens / 3) hits += hit, ++total;  // after warm-up
      }
    }
  }
  *uniform_expectation = uniform_expert_hit_rate(kSlots, kExperts);
  return double(hits) / double(total);
}

TEST(ExpertCache, HitRateMatchesUniformRoutingAndBeatsItWhenSkewed) {
  const std::uint32_t seed = 1234;
  std::cout << "seed " << seed << "\n";
  double expected = 0;
  const double uniform = simulate(0.0, seed, &expected);
  EXPECT_DOUBLE_EQ(expected, 0.25);
  // Uniform routing: any policy holds its share; LFU neither gains nor loses much.
  EXPECT_NEAR(uniform, expected, 0.03);
  // Zipf s = 1.2 over 64 experts: the top 16 carry ~80% of the mass; LFU must find them.
  const double skewed = simulate(1.2, seed, &expected);
  std::cout << "hit rate: uniform " << uniform << " (expected " << 0.25 << "), zipf 1.2 " << skewed << "\n";
  EXPECT_GT(skewed, 0.65);
}

}  // namespace
}  // namespace sluice::cache
