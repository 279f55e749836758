// XXH3-64 with a seed, as libxxhash computes it, on the widest vector unit this CPU has: the
// library Debian ships is built for the x86-64 baseline (SSE2), and every streamed byte is
// hashed (frames of packs, 1 MiB chunks of a GGUF's sidecar). On the 2-core Xeon VM, 1 MiB
// chunks of just-written memory: 6.0 GB/s through the library, 12.7-13.0 GB/s with the AVX2
// code of the same header. XXH3's value does not depend on the vector width: tests compare the
// two on every length class.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::pack {

std::uint64_t xxh3_64_seeded(const void* data, std::size_t bytes, std::uint64_t seed);

}  // namespace sluice::pack
