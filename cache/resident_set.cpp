#include "cache/resident_set.hpp"

#include <algorithm>
#include <list>

namespace sluice::cache {

std::vector<std::int64_t> choose_resident_blocks(std::span<const std::uint64_t> block_bytes, std::uint64_t budget) {
  const auto n = static_cast<std::int64_t>(block_bytes.size());
  // Blocks are nearly equal in size; take as many as the largest would allow, then drop the
  // last chosen while the real sum exceeds the budget.
  const std::uint64_t largest = n > 0 ? *std::max_element(block_bytes.begin(), block_bytes.end()) : 0;
  std::int64_t k = largest > 0 ? std::min<std::int64_t>(n, std::int64_t(budget / largest)) : 0;
  std::vector<std::int64_t> chosen;
  for (; k > 0; --k) {
    chosen.clear();
    std::uint64_t sum = 0;
    // Block i * n / k for i = 0..k-1: evenly spaced, distinct since k <= n.
    for (std::int64_t i = 0; i < k; ++i) {
      chosen.push_back(i * n / k);
      sum += block_bytes[std::size_t(chosen.back())];
    }
    if (sum <= budget) return chosen;
  }
  return {};
}

ScanHits simulate_cyclic_scan(std::int64_t n_blocks, std::int64_t capacity, std::int64_t passes) {
  ScanHits hits;
  std::list<std::int64_t> lru;  // front: most recent
  for (std::int64_t p = 0; p < passes; ++p) {
    for (std::int64_t b = 0; b < n_blocks; ++b) {
      if (p > 0 && b < capacity) ++hits.fixed;  // the fixed set is loaded during the first pass
      auto it = std::find(lru.begin(), lru.end(), b);
      if (it != lru.end()) {
        ++hits.lru;
        lru.erase(it);
      } else if (std::int64_t(lru.size()) == capacity && capacity > 0) {
        lru.pop_back();
      }
      if (capacity > 0) lru.push_front(b);
    }
  }
  return hits;
}

}  // namespace sluice::cache
