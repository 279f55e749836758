// The header-only XXH3 of xxhash.h, compiled with -mavx2 (XXH_VECTOR picks its AVX2 loop): see
// fast_hash.hpp. XXH_INLINE_ALL keeps every xxhash symbol in this file.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

namespace sluice::pack {

std::uint64_t xxh3_64_seeded_avx2(const void* data, std::size_t bytes, std::uint64_t seed) {
  return XXH3_64bits_withSeed(data, bytes, seed);
}

}  // namespace sluice::pack
