// The resident block set: as many blocks as the budget holds, evenly spread, never over budget;
// and the reason it is a fixed set: on the forward pass's cyclic scan LRU never hits.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "cache/resident_set.hpp"

namespace sluice::cache {
namespace {

std::uint64_t sum_of(const std::vector<std::uint64_t>& bytes, const std::vector<std::int64_t>& chosen) {
  std::uint64_t s = 0;
  for (auto i : chosen) s += bytes[std::size_t(i)];
  return s;
}

TEST(ResidentSet, TakesAsManyBlocksAsFitSpreadEvenly) {
  const std::vector<std::uint64_t> bytes(40, 100);
  EXPECT_TRUE(choose_resident_blocks(bytes, 99).empty());
  EXPECT_EQ(choose_resident_blocks(bytes, 100), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(choose_resident_blocks(bytes, 450), (std::vector<std::int64_t>{0, 10, 20, 30}));
  EXPECT_EQ(choose_resident_blocks(bytes, 4000).size(), 40u);
  EXPECT_EQ(choose_resident_blocks(bytes, 1u << 30).size(), 40u);
  auto half = choose_resident_blocks(bytes, 2000);
  ASSERT_EQ(half.size(), 20u);
  for (std::size_t i = 0; i < half.size(); ++i) EXPECT_EQ(half[i], std::int64_t(2 * i));
}

TEST(ResidentSet, NeverExceedsTheBudgetWithUnequalBlocks) {
  std::vector<std::uint64_t> bytes;
  for (int i = 0; i < 33; ++i) bytes.push_back(1000 + std::uint64_t(i * 37 % 200));
  for (std::uint64_t budget = 0; budget < 40000; budget += 777) {
    auto chosen = choose_resident_blocks(bytes, budget);
    EXPECT_LE(sum_of(bytes, chosen), budget);
    EXPECT_TRUE(std::is_sorted(chosen.begin(), chosen.end()));
    // Nearly as many as fit: at most one fewer than the budget over the largest block allows.
    EXPECT_GE(std::int64_t(chosen.size()), std::min<std::int64_t>(33, std::int64_t(budget / 1199)) - 1) << budget;
  }
  EXPECT_TRUE(choose_resident_blocks({}, 1000).empty());
}

TEST(ResidentSet, LruNeverHitsOnACyclicScanWhileAFixedSetDoes) {
  const ScanHits hits = simulate_cyclic_scan(40, 30, 5);
  EXPECT_EQ(hits.lru, 0u);
  EXPECT_EQ(hits.fixed, 30u * 4);
  const ScanHits all = simulate_cyclic_scan(40, 40, 5);
  EXPECT_EQ(all.lru, 40u * 4);  // everything fits: both hit after the first pass
  EXPECT_EQ(all.fixed, 40u * 4);
}

}  // namespace
}  // namespace sluice::cache
