// GEMM driver shared by the packed-row micro-kernels (MatmulRowsFn, kernels.hpp) of
// matmul_k_avx2.cpp and matmul_k_avx512.cpp: the K-quants (Q2_K..Q6_K) and the 32-element types
// Q4_1 and Q5_1 (their tile is here too, one template for both levels). Include only from
// files compiled with at least -mavx2 -mfma -mf16c; like simd_x86.hpp everything here has
// internal linkage per SIMD file.
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
#include <utility>
#include <vector>

#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see simd_x86.hpp

// One super-block of one weight row, decoded. The layout is the same for both levels: the
// AVX2 tiles read it 32 quants (and 16 scale lanes) at a time, the AVX-512 tiles 64 (32 lanes).
struct alignas(64) PackedKBlock {
  // Unsigned quants in element order: Q2_K 0..3, Q3_K 0..7 (value + 4), Q4_K 0..15, Q5_K 0..31,
  // Q6_K 0..63 (value + 32).
  std::uint8_t q[kQK_K];
  // The group scales as int16 lanes in the order the level's tile multiplies them (the level's
  // StoreScalesFn writes them; AVX-512 uses the first 64).
  std::int16_t scale[kQK_K / 2];
  // Per 16-element group, the coefficient of Q8_K's bsums: Q2_K/Q4_K/Q5_K the sub-block mins,
  // Q3_K/Q6_K the group scales (for the +4/+32 offset).
  std::int16_t coeff[kQK_K / 16];
  float d;     // fp16 d, as fp32
  float dmin;  // fp16 dmin, as fp32 (0 for Q3_K, Q6_K)
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

// Q2_K: elements 128h + 32k + l are bits 2k, 2k+1 of qs[32h + l]; 4-bit scales and mins per
// 16-element group in scales[] (low and high nibble).
template <StoreScalesFn kStoreScales>
void pack_q2_k(const void* vx, PackedKBlock& p) {
  const BlockQ2_K& x = *static_cast<const BlockQ2_K*>(vx);
  const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  kStoreScales(_mm256_and_si256(sc16, _mm256_set1_epi16(0x0f)), p.scale);
  store256(p.coeff, _mm256_srli_epi16(sc16, 4));
  const __m256i m2 = _mm256_set1_epi8(3);
  for (int half = 0; half < 2; ++half) {
    const __m256i bits = loadu256(x.qs + 32 * half);
    for (int k = 0; k < 4; ++k) {
      store256(p.q + 128 * half + 32 * k, _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m2));
    }
  }
  p.d = h2f(x.d);
  p.dmin = h2f(x.dmin);
}

// Q3_K, as value + 4 (0..7): the Q2_K layout of the low bits, plus 4 where bit c of hmask[l] is
// set for element 32c + l; 6-bit signed scales per group (the +4 offset's coefficients too).
template <StoreScalesFn kStoreScales>
void pack_q3_k(const void* vx, PackedKBlock& p) {
  const BlockQ3_K& x = *static_cast<const BlockQ3_K*>(vx);
  const __m256i scales16 = _mm256_cvtepi8_epi16(q3_k_scales(x.scales));
  kStoreScales(scales16, p.scale);
  store256(p.coeff, scales16);
  const __m256i m2 = _mm256_set1_epi8(3);
  const __m256i one = _mm256_set1_epi8(1);
  const __m256i hmask = loadu256(x.hmask);
  for (int half = 0; half < 2; ++half) {
    const __m256i bits = loadu256(x.qs + 32 * half);
    for (int k = 0; k < 4; ++k) {
      const int chunk = 4 * half + k;
      const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hmask, chunk), one), 2);
      store256(p.q + 32 * chunk, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m2), high));
    }
  }
  p.d = h2f(x.d);
  p.dmin = 0.0f;
}

// How a K-quant tile finishes a super-block: Q2_K/Q4_K/Q5_K subtract dmin * (mins . bsums) in
// float lanes of their own; Q6_K (+32) and Q3_K (+4) subtract offset * (scales . bsums) from the
// integer lanes first.
enum class Epilogue { mins, offset32, offset4 };
template <Epilogue kEpilogue>
inline constexpr int kOffsetShift = kEpilogue == Epilogue::offset32 ? 5 : 2;

// Float accumulators of one (weight row, activation row) between chunks of super-blocks: the
// vec_dot's lanes, stored and reloaded exactly. AVX-512 uses all 24 floats, AVX2 the first 8.
struct alignas(64) KAccState {
  float acc[16];
  float acc_min[8];
};

// One block of one weight row of Q4_1 or Q5_1 (unsigned 0..31), decoded: the quants the vec_dot
// forms in a register, and the fp16 scales as fp32.
struct PackedLegacyBlock {
  std::uint8_t q[32];
  float d;
  float m;  // the block's min
};
static_assert(sizeof(PackedLegacyBlock) == 40, "32 quants + d + m");

// Describes one family of packed GEMMs for the driver below: the decoded block, the activation
// block, and the scale the driver gathers per activation block (da).
struct KQuantGemm {
  using Packed = PackedKBlock;
  using Act = BlockQ8_K;
  static constexpr std::int64_t kBlockElems = kQK_K;
  // Super-blocks per chunk: the chunk of a tile of 8 activation rows (8 x 8 x 292 bytes) stays in
  // L1 while the pass's rows run over it, and a decoded row's chunk is 4.6 KB.
  static constexpr std::int64_t kChunkBlocks = 8;
  static float act_scale(const BlockQ8_K& b) { return b.d; }
};
template <typename ActBlock>
struct LegacyGemm {
  using Packed = PackedLegacyBlock;
  using Act = ActBlock;  // BlockQ8_1
  static constexpr std::int64_t kBlockElems = 32;
  // The same 2048 elements per chunk as KQuantGemm: 8 x 64 x 36 bytes of activations, 2.5 KB of
  // a decoded row.
  static constexpr std::int64_t kChunkBlocks = 64;
  static float act_scale(const ActBlock& b) { return h2f(b.d); }
};

template <typename G>
using PackFn = void (*)(const void* block, typename G::Packed& out);
// One packed weight row's blocks [0, nblk) of a chunk against a tile of n_acts (<= the level's
// tile width, kTileActs) activation rows, acts[a] pointing at the chunk's first block and
// da[ib * kTileActs + a] holding G::act_scale(acts[a][ib]). Starts from zero when first, else from
// state[a]; when last writes out[a * out_stride], else state[a].
template <typename G>
using TileFn = void (*)(int n_acts, const typename G::Packed* row, std::int64_t nblk,
                        const typename G::Act* const* acts, const float* da, KAccState* state, bool first, bool last,
                        float* out, std::size_t out_stride);

// Calls f.template operator()<NA>() with NA = n_acts in [1, kMax] (kMax for anything larger): the
// one switch from a run-time tile width to the tile kernels' template argument.
template <int kMax, typename F>
inline void with_tile_width(int n_acts, F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (void)(((I + 1 == kMax ? n_acts >= kMax : n_acts == I + 1) && (f.template operator()<I + 1>(), true)) || ...);
  }(std::make_integer_sequence<int, kMax>{});
}

// The MatmulRowsFn body (kernels.hpp contract). A pass of rows is decoded (up to kPackBytes), then
// per tile of activation rows, per chunk of blocks, every row of the pass runs over the chunk.
// Batch 1 has nothing to reuse a decoded block for: it calls the level's vec_dot.
template <typename G, int kTileActs>
void matmul_rows_packed(PackFn<G> pack, TileFn<G> tile, std::size_t block_bytes, VecDotFn vec_dot,
                        std::int64_t cols, const void* weights, std::size_t weight_row_bytes,
                        std::int64_t r0, std::int64_t r1, const void* acts, std::size_t act_row_bytes,
                        std::int64_t batch, float* y, std::size_t y_stride) {
  using Packed = typename G::Packed;
  using Act = typename G::Act;
  constexpr std::int64_t kChunkBlocks = G::kChunkBlocks;
  if (r1 <= r0 || batch <= 0) return;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / G::kBlockElems;
  // One tile of activation rows reads each decoded row once: decode and use one row at a time,
  // while it is in L1.
  const std::int64_t pass_rows =
      batch <= kTileActs
          ? 1
          : std::clamp<std::int64_t>(
                static_cast<std::int64_t>(kPackBytes / (static_cast<std::size_t>(nb) * sizeof(Packed))), 1,
                kMatmulRowsStrip);
  // Rows ahead to prefetch: the next pass, and at least kPrefetchMinRows (a pass of one row
  // computes for too short a time to hide a row's misses).
  constexpr std::int64_t kPrefetchMinRows = 4;
  const std::int64_t prefetch_rows = std::max(pass_rows, kPrefetchMinRows);
  thread_local std::vector<Packed> packed;
  thread_local std::vector<KAccState> state;
  // da_all[(tile * nb + ib) * kTileActs + a]: the scale of activation row tile * kTileActs + a's
  // block ib, laid out as the tiles read it (0 past the batch).
  thread_local ScratchBuffer<float> da_all;
  const std::int64_t n_tiles = (batch + kTileActs - 1) / kTileActs;
  da_all.assign(static_cast<std::size_t>(n_tiles * nb * kTileActs), 0.0f);
  for (std::int64_t b = 0; b < batch; ++b) {
    const Act* row = act_row<Act>(acts, act_row_bytes, static_cast<int>(b));
    float* out = da_all.data() + (b / kTileActs) * nb * kTileActs + b % kTileActs;
    for (std::int64_t ib = 0; ib < nb; ++ib) out[ib * kTileActs] = G::act_scale(row[ib]);
  }
  if (packed.size() < static_cast<std::size_t>(pass_rows * nb)) packed.resize(static_cast<std::size_t>(pass_rows * nb));
  if (state.size() < static_cast<std::size_t>(pass_rows * kTileActs)) state.resize(static_cast<std::size_t>(pass_rows * kTileActs));
  for (std::int64_t s = r0; s < r1; s += pass_rows) {
    const std::int64_t n_rows = std::min(pass_rows, r1 - s);
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::byte* row = w + static_cast<std::size_t>(s + r) * weight_row_bytes;
      for (std::int64_t ib = 0; ib < nb; ++ib) pack(row + static_cast<std::size_t>(ib) * block_bytes, packed[r * nb + ib]);
    }
    PrefetchStream prefetch = rows_ahead(w, weight_row_bytes, s + prefetch_rows, std::min(n_rows, r1 - s - prefetch_rows),
                                         n_tiles * ((nb + kChunkBlocks - 1) / kChunkBlocks) * n_rows);
    for (std::int64_t b = 0; b < batch; b += kTileActs) {
      const int n_acts = static_cast<int>(std::min<std::int64_t>(kTileActs, batch - b));
      for (std::int64_t c0 = 0; c0 < nb; c0 += kChunkBlocks) {
        const std::int64_t nblk = std::min(kChunkBlocks, nb - c0);
        const Act* act[kTileActs];
        for (int a = 0; a < n_acts; ++a) act[a] = act_row<Act>(acts, act_row_bytes, static_cast<int>(b + a)) + c0;
        const float* da = da_all.data() + ((b / kTileActs) * nb + c0) * kTileActs;
        for (std::int64_t r = 0; r < n_rows; ++r) {
          prefetch.advance();
          tile(n_acts, packed.data() + r * nb + c0, nblk, act, da, state.data() + r * kTileActs, c0 == 0,
               c0 + nblk == nb, y + static_cast<std::size_t>(b) * y_stride + s + r, y_stride);
        }
      }
    }
  }
}

// A level's MatmulRowsFn for one weight type: the driver with that level's vec_dot for batch 1.
template <CpuIsa kIsa, GgmlType kType, typename G, int kTileActs, PackFn<G> kPack, TileFn<G> kTile, typename Block>
void matmul_rows_entry(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                       std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y,
                       std::size_t y_stride) {
  const VecDotFn vec_dot = kernels_for(kIsa)->vec_dot[type_slot(kType)];
  matmul_rows_packed<G, kTileActs>(kPack, kTile, sizeof(Block), vec_dot, cols, weights, weight_row_bytes, r0, r1,
                                   acts, act_row_bytes, batch, y, y_stride);
}

// ---- the 32-element types ------------------------------------------------------------------------
//
// Their vec_dots (quants_legacy_avx2.cpp, quants_legacy_avx512.cpp) keep per output 8 fp32 lanes,
// acc = fma(dx * dy, float(block lanes), acc) in block order, the block lanes an exact integer dot
// product (four consecutive products per lane); Q4_1/Q5_1 add the min terms in a scalar chain,
// min += mx * sy, and return hsum_ps(acc) + min. The tile below takes
// the same steps with the level's integer dot (kDot), so every output equals the vec_dot bit for
// bit; what it saves is decoding each weight block once per matmul instead of once per 4 rows.

template <typename Block>
void pack_unsigned_with_min(const Block& b, __m256i q, PackedLegacyBlock& p) {
  store256(p.q, q);
  p.d = h2f(b.d);
  p.m = h2f(b.m);
}
inline void pack_q4_1(const void* vx, PackedLegacyBlock& p) {
  const BlockQ4_1& b = *static_cast<const BlockQ4_1*>(vx);
  pack_unsigned_with_min(b, nibbles_32(b.qs), p);
}
inline void pack_q5_1(const void* vx, PackedLegacyBlock& p) {
  const BlockQ5_1& b = *static_cast<const BlockQ5_1*>(vx);
  const __m256i fifth_bit = _mm256_and_si256(bits_32(b.qh), _mm256_set1_epi8(0x10));
  pack_unsigned_with_min(b, _mm256_or_si256(nibbles_32(b.qs), fifth_bit), p);
}

using IntDotFn = __m256i (*)(__m256i weights, __m256i acts);

// The end of a legacy tile's chunk for one activation row: the 8-lane accumulator and the min
// terms kept in `state` for the next chunk, or, after the last, the output (the vec_dot's
// horizontal sum, plus the min terms for Q4_1/Q5_1).
template <bool kHasMin>
inline void finish_legacy_row(__m256 acc, float min_terms, bool last, KAccState& state, float* out) {
  if (!last) {
    _mm256_store_ps(state.acc, acc);
    state.acc_min[0] = min_terms;
  } else if constexpr (kHasMin) {
    *out = hsum_ps(acc) + min_terms;
  } else {
    *out = hsum_ps(acc);
  }
}

template <typename Act, IntDotFn kDot, bool kHasMin, int kTileActs, int NA>
void legacy_tile(const PackedLegacyBlock* row, std::int64_t nb, const Act* const* y, const float* da,
                 KAccState* state, bool first, bool last, float* out, std::size_t out_stride) {
  __m256 acc[NA];
  float min_terms[NA];
  for (int a = 0; a < NA; ++a) {
    acc[a] = first ? _mm256_setzero_ps() : _mm256_load_ps(state[a].acc);
    min_terms[a] = first ? 0.0f : state[a].acc_min[0];
  }
  for (std::int64_t i = 0; i < nb; ++i) {
    const PackedLegacyBlock& p = row[i];
    const __m256i qx = loadu256(p.q);
    for (int a = 0; a < NA; ++a) {
      const __m256i qy = loadu256(y[a][i].qs);
      const __m256 d = _mm256_set1_ps(p.d * da[i * kTileActs + a]);
      acc[a] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(kDot(qx, qy)), acc[a]);
      if constexpr (kHasMin) min_terms[a] += p.m * h2f(y[a][i].s);
    }
  }
  for (int a = 0; a < NA; ++a) finish_legacy_row<kHasMin>(acc[a], min_terms[a], last, state[a], out + a * out_stride);
}

template <typename Act, IntDotFn kDot, bool kHasMin, int kTileActs>
void legacy_tile_n(int n_acts, const PackedLegacyBlock* row, std::int64_t nb, const Act* const* y, const float* da,
                   KAccState* state, bool first, bool last, float* out, std::size_t out_stride) {
  with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
    legacy_tile<Act, kDot, kHasMin, kTileActs, NA>(row, nb, y, da, state, first, last, out, out_stride);
  });
}

// Registers the GEMMs of Q4_1 and Q5_1 (unsigned quants x Q8_1, kDot) at one level, each used
// from its min_batch up.
template <CpuIsa kIsa, int kTileActs, IntDotFn kDot>
void register_q4_1_q5_1_gemms(KernelTable& t, std::int64_t min_batch_q4_1, std::int64_t min_batch_q5_1) {
  using G = LegacyGemm<BlockQ8_1>;
  constexpr TileFn<G> kTile = legacy_tile_n<BlockQ8_1, kDot, true, kTileActs>;
  t.matmul_rows[type_slot(GgmlType::Q4_1)] =
      matmul_rows_entry<kIsa, GgmlType::Q4_1, G, kTileActs, pack_q4_1, kTile, BlockQ4_1>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q4_1)] = min_batch_q4_1;
  t.matmul_rows[type_slot(GgmlType::Q5_1)] =
      matmul_rows_entry<kIsa, GgmlType::Q5_1, G, kTileActs, pack_q5_1, kTile, BlockQ5_1>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q5_1)] = min_batch_q5_1;
}


}  // namespace
}  // namespace sluice::cpu
