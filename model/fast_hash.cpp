#include "model/fast_hash.hpp"

#include <xxhash.h>

namespace sluice::pack {

// Defined in fast_hash_avx2.cpp (compiled with -mavx2; called only when the CPU has AVX2).
std::uint64_t xxh3_64_seeded_avx2(const void* data, std::size_t bytes, std::uint64_t seed);

std::uint64_t xxh3_64_seeded(const void* data, std::size_t bytes, std::uint64_t seed) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? xxh3_64_seeded_avx2(data, bytes, seed) : XXH3_64bits_withSeed(data, bytes, seed);
}

}  // namespace sluice::pack
