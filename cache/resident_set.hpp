// The resident block set (DESIGN.md §5): which transformer blocks stay in RAM for the whole run
// while the others stream every pass. The forward pass reads blocks in a cycle (0, 1, ..., L-1,
// 0, 1, ...), the access pattern on which LRU is worst: with room for k < L blocks, LRU evicts
// each block just before it is needed again and every access misses. A fixed set of k blocks
// chosen once hits k of L accesses every pass, the best any policy can do on a cyclic scan.
//
// The set is spread evenly over the layers so the blocks that stream are evenly spaced too:
// while a resident block computes, the prefetcher keeps reading, and no long run of streamed
// blocks starves compute.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sluice::cache {

// Chooses a fixed set of block indices whose summed bytes fit in `budget`, as many blocks as
// fit, spread evenly over 0..block_bytes.size()-1. Returns the chosen indices in ascending order.
std::vector<std::int64_t> choose_resident_blocks(std::span<const std::uint64_t> block_bytes, std::uint64_t budget);

// Hits of a cache with room for `capacity` blocks over `passes` cyclic scans of n_blocks blocks:
// with a fixed set (the first `capacity` blocks) and with LRU. For tests and the note that
// explains why the set is fixed.
struct ScanHits {
  std::uint64_t fixed = 0;
  std::uint64_t lru = 0;
};
ScanHits simulate_cyclic_scan(std::int64_t n_blocks, std::int64_t capacity, std::int64_t passes);

}  // namespace sluice::cache
