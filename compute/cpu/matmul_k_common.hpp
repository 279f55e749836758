// GEMM driver shared by the K-quant micro-kernels (MatmulRowsFn, kernels.hpp) of
// matmul_k_avx2.cpp and matmul_k_avx512.cpp. Include only from files compiled with at least
// -mavx2 -mfma -mf16c; like simd_x86.hpp everything here has internal linkage per SIMD file.
//
// The K-quant vec_dots (quants_k_avx2.cpp, quants_k_avx512.cpp) decode each 256-element
// super-block (nibbles, high bits, 6-bit scales) for every activation row they meet: with
// vec_dot_multi, once per 4 activation rows. Here a pass of weight rows is decoded once per
// matmul into PackedKBlocks, and every tile of activation rows then reads the decoded quants and
// scale vectors directly. The integer block sums are exact whatever the decode; the level's tile
// kernel repeats its vec_dot's float steps (lanes, fma order, horizontal sum) so that every output
// equals that vec_dot bit for bit (tests/compute/test_matmul.cpp checks it).
#pragma once

#include <algorithm>
#include <vector>

#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see simd_x86.hpp

// One super-block of one weight row, decoded. The layout is the same for both levels: the
// AVX2 tiles read it 32 quants (and 16 scale lanes) at a time, the AVX-512 tiles 64 (32 lanes).
struct alignas(64) PackedKBlock {
  // Unsigned quants in element order: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 (value + 32).
  std::uint8_t q[kQK_K];
  // The group scales as int16 lanes in the order the level's tile multiplies them (the level's
  // StoreScalesFn writes them; AVX-512 uses the first 64).
  std::int16_t scale[kQK_K / 2];
  // Per 16-element group, the coefficient of Q8_K's bsums: Q4_K/Q5_K the sub-block mins, Q6_K the
  // group scales (for the +32 offset).
  std::int16_t coeff[kQK_K / 16];
  float d;     // fp16 d, as fp32
  float dmin;  // fp16 dmin, as fp32 (0 for Q6_K)
};
static_assert(sizeof(PackedKBlock) == 576, "256 quants + 128 scale lanes + 16 coefficients + d, dmin");

// Decoded rows kept per pass: the tiles re-read them once per tile of activation rows, so they
// should stay in L2 (half of a Zen 4 core's 1 MiB; 16 rows of a 4096-column matrix are 147 KB).
constexpr std::size_t kPackBytes = 256 * 1024;

inline void store256(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
inline __m256i loadu256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Writes PackedKBlock::scale from the 16 group scales (int16, one per 16-element group).
using StoreScalesFn = void (*)(__m256i group_scales, std::int16_t* lanes);

template <bool kHasHighBit, typename Block, StoreScalesFn kStoreScales>
void pack_k4(const Block& x, PackedKBlock& p) {
  const __m128i scales_mins = k4_scales_mins(x.scales);
  kStoreScales(per_group_of_pairs(scales_mins), p.scale);
  store256(p.coeff, per_group_of_pairs(_mm_unpackhi_epi64(scales_mins, scales_mins)));
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  __m256i hbits = _mm256_setzero_si256();
  if constexpr (kHasHighBit) hbits = loadu256(x.qh);
  for (int j = 0; j < kQK_K / 64; ++j) {
    // Low nibbles: elements 64j..64j+31; high nibbles: 64j+32..64j+63.
    const __m256i q4bits = loadu256(x.qs + 32 * j);
    __m256i ql = _mm256_and_si256(q4bits, m4);
    __m256i qh = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
    if constexpr (kHasHighBit) {
      // Bit 2j of qh[l] is the fifth bit of element 64j + l, bit 2j+1 that of 64j + 32 + l.
      ql = _mm256_or_si256(ql, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j), 4), bit4));
      qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j + 1), 4), bit4));
    }
    store256(p.q + 64 * j, ql);
    store256(p.q + 64 * j + 32, qh);
  }
  p.d = h2f(x.d);
  p.dmin = h2f(x.dmin);
}

template <StoreScalesFn kStoreScales>
void pack_q4_k(const void* x, PackedKBlock& p) {
  pack_k4<false, BlockQ4_K, kStoreScales>(*static_cast<const BlockQ4_K*>(x), p);
}
template <StoreScalesFn kStoreScales>
void pack_q5_k(const void* x, PackedKBlock& p) {
  pack_k4<true, BlockQ5_K, kStoreScales>(*static_cast<const BlockQ5_K*>(x), p);
}

template <StoreScalesFn kStoreScales>
void pack_q6_k(const void* vx, PackedKBlock& p) {
  const BlockQ6_K& x = *static_cast<const BlockQ6_K*>(vx);
  const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  kStoreScales(scales16, p.scale);
  store256(p.coeff, scales16);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m2 = _mm256_set1_epi8(3);
  for (int half = 0; half < 2; ++half) {
    // Elements 128h + 32k + l: low bits from ql[64h + 32(k % 2) + l] (nibble k / 2), high bits
    // from bits 2k, 2k+1 of qh[32h + l].
    const __m256i bits1 = loadu256(x.ql + 64 * half);
    const __m256i bits2 = loadu256(x.ql + 64 * half + 32);
    const __m256i hb = loadu256(x.qh + 32 * half);
    const __m256i low[4] = {_mm256_and_si256(bits1, m4), _mm256_and_si256(bits2, m4),
                            _mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4)};
    for (int k = 0; k < 4; ++k) {
      const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m2), 4);
      store256(p.q + 128 * half + 32 * k, _mm256_or_si256(low[k], high));
    }
  }
  p.d = h2f(x.d);
  p.dmin = 0.0f;
}

// Float accumulators of one (weight row, activation row) between chunks of super-blocks: the
// vec_dot's lanes, stored and reloaded exactly. AVX-512 uses all 24 floats, AVX2 the first 8.
struct alignas(64) KAccState {
  float acc[16];
  float acc_min[8];
};

// Super-blocks per chunk: the chunk of a tile of 8 activation rows (8 x 8 x 292 bytes) stays in
// L1 while the pass's rows run over it, and a decoded row's chunk is 4.6 KB.
constexpr std::int64_t kChunkBlocks = 8;

using PackKFn = void (*)(const void* block, PackedKBlock& out);
// One packed weight row's super-blocks [0, nblk) of a chunk against a tile of n_acts (<= the
// level's tile width, kTileActs) activation rows, acts[a] pointing at the chunk's first block and
// da[ib * kTileActs + a] holding acts[a][ib].d. Starts from zero when first, else from state[a];
// when last writes out[a * out_stride], else state[a].
using KTileFn = void (*)(int n_acts, const PackedKBlock* row, std::int64_t nblk, const BlockQ8_K* const* acts,
                         const float* da, KAccState* state, bool first, bool last, float* out, std::size_t out_stride);

// The MatmulRowsFn body (kernels.hpp contract). A pass of rows is decoded (up to kPackBytes), then
// per tile of activation rows, per chunk of super-blocks, every row of the pass runs over the
// chunk. Batch 1 has nothing to reuse a decoded block for: it calls the level's vec_dot.
template <int kTileActs>
void matmul_rows_k(PackKFn pack, KTileFn tile, std::size_t block_bytes, VecDotFn vec_dot, std::int64_t cols,
                   const void* weights, std::size_t weight_row_bytes, std::int64_t r0, std::int64_t r1,
                   const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y, std::size_t y_stride) {
  if (r1 <= r0 || batch <= 0) return;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / kQK_K;
  // One tile of activation rows reads each decoded row once: decode and use one row at a time,
  // while it is in L1.
  const std::int64_t pass_rows =
      batch <= kTileActs
          ? 1
          : std::clamp<std::int64_t>(
                static_cast<std::int64_t>(kPackBytes / (static_cast<std::size_t>(nb) * sizeof(PackedKBlock))), 1,
                kMatmulRowsStrip);
  // Rows ahead to prefetch: the next pass, and at least kPrefetchMinRows (a pass of one row
  // computes for too short a time to hide a row's misses).
  constexpr std::int64_t kPrefetchMinRows = 4;
  const std::int64_t prefetch_rows = std::max(pass_rows, kPrefetchMinRows);
  thread_local std::vector<PackedKBlock> packed;
  thread_local std::vector<KAccState> state;
  // da_all[(tile * nb + ib) * kTileActs + a]: the scale of activation row tile * kTileActs + a's
  // block ib, laid out as the tiles read it (0 past the batch).
  thread_local std::vector<float> da_all;
  const std::int64_t n_tiles = (batch + kTileActs - 1) / kTileActs;
  da_all.assign(static_cast<std::size_t>(n_tiles * nb * kTileActs), 0.0f);
  for (std::int64_t b = 0; b < batch; ++b) {
    const BlockQ8_K* row = act_row<BlockQ8_K>(acts, act_row_bytes, static_cast<int>(b));
    float* out = da_all.data() + (b / kTileActs) * nb * kTileActs + b % kTileActs;
    for (std::int64_t ib = 0; ib < nb; ++ib) out[ib * kTileActs] = row[ib].d;
  }
  if (packed.size() < static_cast<std::size_t>(pass_rows * nb)) packed.resize(static_cast<std::size_t>(pass_rows * nb));
  if (state.size() < static_cast<std::size_t>(pass_rows * kTileActs)) state.resize(static_cast<std::size_t>(pass_rows * kTileActs));
  for (std::int64_t s = r0; s < r1; s += pass_rows) {
    const std::int64_t n_rows = std::min(pass_rows, r1 - s);
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::byte* row = w + static_cast<std::size_t>(s + r) * weight_row_bytes;
      for (std::int64_t ib = 0; ib < nb; ++ib) pack(row + static_cast<std::size_t>(ib) * block_bytes, packed[r * nb + ib]);
    }
    // Later passes' rows are read from memory by their pack, in a tight loop that stalls on every
    // miss: fetch the rows prefetch_rows ahead into L2 while this pass computes. A hint only.
    const std::int64_t ahead = s + prefetch_rows;
    const std::int64_t ahead_rows = std::min(n_rows, r1 - ahead);
    if (ahead_rows > 0) {
      const char* next = reinterpret_cast<const char*>(w + static_cast<std::size_t>(ahead) * weight_row_bytes);
      const std::size_t next_bytes = static_cast<std::size_t>(ahead_rows) * weight_row_bytes;
      for (std::size_t off = 0; off < next_bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T1);
    }
    for (std::int64_t b = 0; b < batch; b += kTileActs) {
      const int n_acts = static_cast<int>(std::min<std::int64_t>(kTileActs, batch - b));
      for (std::int64_t c0 = 0; c0 < nb; c0 += kChunkBlocks) {
        const std::int64_t nblk = std::min(kChunkBlocks, nb - c0);
        const BlockQ8_K* act[kTileActs];
        for (int a = 0; a < n_acts; ++a) act[a] = act_row<BlockQ8_K>(acts, act_row_bytes, static_cast<int>(b + a)) + c0;
        const float* da = da_all.data() + ((b / kTileActs) * nb + c0) * kTileActs;
        for (std::int64_t r = 0; r < n_rows; ++r) {
          tile(n_acts, packed.data() + r * nb + c0, nblk, act, da, state.data() + r * kTileActs, c0 == 0,
               c0 + nblk == nb, y + static_cast<std::size_t>(b) * y_stride + s + r, y_stride);
        }
      }
    }
  }
}

}  // namespace
}  // namespace sluice::cpu
