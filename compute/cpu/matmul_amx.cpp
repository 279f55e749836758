// AMX (int8 tiles) GEMM (MatmulRowsFn, kernels.hpp) for Q4_K weights x Q8_K activations, on the
// CPUs whose AVX-512 level also has AMX-INT8 and lets this process use it (amx_int8_usable,
// kernels.cpp: CPUID, XCR0, the kernel's permission, and one tile product run in a child
// process, since some virtual machines list AMX and fault on its first use). Compiled with the
// AVX-512, VBMI and AMX flags; only reached after that check.
//
// Each output takes the steps of the AVX-512 Q4_K vec_dot (quants_k_avx512.cpp, k4_tile): per
// super-block the exact int32 isum = sum_s scale_s * (q . y over sub-block s) and msum =
// sum_s min_s * (sum of y over s), then in super-block order
//   acc = fma(d * da, float(isum), acc);  acc_min = fma(-(dmin * da), float(msum), acc_min)
// and the output acc + acc_min: the same IEEE operations lane by lane (a lane is an activation
// row here, a weight row there), so every output equals the vec_dot bit for bit.
//
// The scale is folded into the weights when they are packed: q * scale <= 15 * 63 = 945 does not
// fit a byte, so the pack keeps its low byte and its high byte (0..3) as two u8 matrices (looked
// up in 16-entry vpshufb tables per scale), and two tile products per 64 columns (TDPBUSD: u8
// weights x s8 activations, exact int32 sums) give isum = C_lo + 256 * C_hi for a whole
// super-block with no per-sub-block step. A C tile is 16 weight rows x 16 activation rows:
// 16 x 16 x 256 multiply-adds per super-block in 8 TDPBUSD, then 16 vectors of post-processing
// (msum by vpdpwssd of the rows' min pairs with the activations' 32-element sum pairs, and the
// float chain). Each A tile serves two activation tiles where there are two.
//
// At one activation tile every A tile feeds one TDPBUSD, so the tile loads bound it (a
// super-block's 12 loads: ~100 ns from L2, ~58 from L1, against ~35 for its 8 products): the
// AVX-512 GEMM is faster there. bench_gemm_min_batch 5 avx512 2 (2048 x 4096, 2 threads), AVX-512
// against AMX in ms: batch 16 0.388 / 0.447, 32 0.667 / 0.704, 64 1.240 / 1.017, 256 4.816 /
// 3.839, 512 10.05 / 9.63. Qwen2.5-Coder-1.5B Q4_K_M (sluice bench, 2 threads, alternating):
// batch-64 decode 202.5 / 192.8 -> 229.0 / 224.4 tok/s, pp512 219.2 / 215.5 -> 244.8 / 261.0.
// (K = 32 per sub-block with the scale applied by vpmulld after the tiles, no fold, was 1.7x
// slower at batch 16: eight tile stores per super-block.)
// GCC 12 flags the _mm512_undefined_* inside its own AVX-512 intrinsics as "may be used
// uninitialized" when they are inlined here (a false positive); the same calls elsewhere pass.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "compute/cpu/matmul_amx.hpp"
#include "compute/cpu/k4_heads_avx512.hpp"
#include "compute/cpu/matmul_k_common.hpp"

namespace sluice::cpu {
namespace {

constexpr int kAmxRows = 16;             // weight rows per group: a C tile's rows
constexpr int kAmxActs = 16;             // activation rows per tile: a C tile's columns
constexpr int kSteps = kQK_K / 64;       // tile products (64 columns each) per super-block
constexpr int kPairs = kQK_K / 64;       // (min_2t, min_2t+1) pairs per super-block
// Smallest batch that takes the AMX GEMM (the figures above); smaller batches keep the AVX-512
// GEMM the table held before (register_amx_gemms).
constexpr std::int64_t kMinBatchAmxQ4_K = 64;
// Activation tiles whose C tiles are held at once (4 x nb x 2 KiB).
constexpr std::int64_t kTileChunk = 4;
// Groups of rows between the one packed and the one prefetched into L2.
constexpr std::int64_t kPrefetchGroups = 2;

// One super-block of 16 weight rows.
struct alignas(64) AmxQ4KBlock {
  std::uint8_t lo[kAmxRows][kQK_K];  // row r: low bytes of q * scale in column order
  std::uint8_t hi[kAmxRows][kQK_K];  // the high bytes (0..3)
  std::int32_t min_pair[kPairs][kAmxRows];  // lane r: row r's (min_2t, min_2t+1) as int16 halves
  float d[kAmxRows];
  float neg_dmin[kAmxRows];
};

// One super-block of up to 16 activation rows, as TDPBUSD's second operand: row kk of step s
// holds, for each activation n, bytes 64s + 4kk .. 64s + 4kk + 3 of its quants at 4n.
struct alignas(64) AmxActBlock {
  std::int8_t b[kSteps][16][64];
  std::int32_t bsum_pair[kPairs][kAmxActs];  // (bsum of sub-block 2t, of 2t + 1), 32-element sums
  float da[kAmxActs];                        // 0 past the batch
};

// Tiles 0, 1 and 5, 6: C_lo, C_hi of even and odd super-blocks; 2, 3: A_lo, A_hi; 4 and 7: B of
// even and odd super-blocks. Every tile 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// One super-block's tile products into C tiles LO and HI (B through tile B), stored to c (C_lo)
// and c + 256 (C_hi). A tile product's result is ready tens of cycles after it starts:
// consecutive super-blocks alternate C tiles so their chains of four overlap. (GCC's tile
// intrinsics paste the tile number into the instruction text: literal numbers only, hence a
// macro rather than a template.)
#define SLUICE_AMX_SUPER_BLOCK(name, LO, HI, B)                                       \
  inline void name(const AmxQ4KBlock& p, const AmxActBlock& a, std::int32_t* c) {      \
    _tile_zero(LO);                                                                   \
    _tile_zero(HI);                                                                   \
    for (int s = 0; s < kSteps; ++s) {                                                \
      _tile_loadd(2, p.lo[0] + 64 * s, kQK_K);                                        \
      _tile_loadd(3, p.hi[0] + 64 * s, kQK_K);                                        \
      _tile_loadd(B, a.b[s][0], 64);                                                  \
      _tile_dpbusd(LO, 2, B);                                                         \
      _tile_dpbusd(HI, 3, B);                                                         \
    }                                                                                 \
    _tile_stored(LO, c, 64);                                                          \
    _tile_stored(HI, c + kAmxRows * kAmxActs, 64);                                    \
  }
SLUICE_AMX_SUPER_BLOCK(amx_super_block_even, 0, 1, 4)
SLUICE_AMX_SUPER_BLOCK(amx_super_block_odd, 5, 6, 7)
#undef SLUICE_AMX_SUPER_BLOCK

// Two activation tiles against one super-block: each A tile loaded once serves both (the tile
// loads, not the products, bound a super-block at one activation tile). C tiles 0, 1 (first
// tile) and 5, 6 (second), B through 4 and 7.
inline void amx_super_block_pair(const AmxQ4KBlock& p, const AmxActBlock& a0, const AmxActBlock& a1, std::int32_t* c0,
                                 std::int32_t* c1) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(5);
  _tile_zero(6);
  for (int s = 0; s < kSteps; ++s) {
    _tile_loadd(2, p.lo[0] + 64 * s, kQK_K);
    _tile_loadd(3, p.hi[0] + 64 * s, kQK_K);
    _tile_loadd(4, a0.b[s][0], 64);
    _tile_loadd(7, a1.b[s][0], 64);
    _tile_dpbusd(0, 2, 4);
    _tile_dpbusd(1, 3, 4);
    _tile_dpbusd(5, 2, 7);
    _tile_dpbusd(6, 3, 7);
  }
  _tile_stored(0, c0, 64);
  _tile_stored(1, c0 + kAmxRows * kAmxActs, 64);
  _tile_stored(5, c1, 64);
  _tile_stored(6, c1 + kAmxRows * kAmxActs, 64);
}

// q * scale for every 6-bit scale and 4-bit quant, its low and its high byte: 16-byte vpshufb
// tables, so the pack looks the products up instead of widening and multiplying.
struct ProductTables {
  alignas(64) std::uint8_t lo[64][16];
  alignas(64) std::uint8_t hi[64][16];
  constexpr ProductTables() : lo{}, hi{} {
    for (int sc = 0; sc < 64; ++sc) {
      for (int q = 0; q < 16; ++q) {
        lo[sc][q] = static_cast<std::uint8_t>((q * sc) & 0xff);
        hi[sc][q] = static_cast<std::uint8_t>((q * sc) >> 8);
      }
    }
  }
};
constexpr ProductTables kProducts;

// The 16-byte table of scale a in the low two 128-bit lanes and of scale b in the high two.
inline __m512i two_tables(const std::uint8_t (*tables)[16], int a, int b) {
  const __m256i low = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(tables[a])));
  const __m256i high = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(tables[b])));
  return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
}

void pack_q4_k_amx(const std::byte* const* rows, int n_rows, std::int64_t ib, AmxQ4KBlock& p, PrefetchStream& pf) {
  const std::size_t at = static_cast<std::size_t>(ib) * sizeof(BlockQ4_K);
  // Heads of all 16 rows at once; past n_rows every scale is 0, so the padded rows' products
  // (their quants are the last row's) are 0.
  const K4Heads h = decode_k4_heads(rows, n_rows, at);
  _mm512_store_ps(p.d, h.d);
  _mm512_store_ps(p.neg_dmin, h.neg_dmin);
  for (int t = 0; t < kPairs; ++t) {
    _mm512_store_si512(p.min_pair[t], _mm512_shuffle_epi8(h.mins[t / 2], byte_pair_index(2 * (t % 2), 2 * (t % 2) + 1)));
  }
  alignas(64) std::uint8_t scales[2][64];  // [j / 4][4r + j % 4]: scale j of row r
  _mm512_store_si512(scales[0], h.scales[0]);
  _mm512_store_si512(scales[1], h.scales[1]);
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  for (int r = 0; r < kAmxRows; ++r) {
    pf.advance();
    const BlockQ4_K& b = reinterpret_cast<const BlockQ4_K*>(rows[r] + at)[0];
    // qs bytes 32j..32j+31: low nibbles are elements 64j.. (sub-block 2j), high nibbles 64j+32..
    // (sub-block 2j + 1): the 32 bytes in both halves of a register, the upper half shifted.
    for (int j = 0; j < 4; ++j) {
      const int s0 = scales[(2 * j) / 4][4 * r + (2 * j) % 4], s1 = scales[(2 * j + 1) / 4][4 * r + (2 * j + 1) % 4];
      const __m512i both = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * j)));
      const __m512i q = _mm512_and_si512(_mm512_mask_srli_epi16(both, 0xffff0000u, both, 4), nibble);
      _mm512_store_si512(p.lo[r] + 64 * j, _mm512_shuffle_epi8(two_tables(kProducts.lo, s0, s1), q));
      _mm512_store_si512(p.hi[r] + 64 * j, _mm512_shuffle_epi8(two_tables(kProducts.hi, s0, s1), q));
    }
  }
}

// Activation rows [b0, b0 + n_acts) of every super-block into the tile layout.
void pack_acts(const void* acts, std::size_t act_row_bytes, std::int64_t b0, int n_acts, std::int64_t nb,
               AmxActBlock* out) {
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    AmxActBlock& a = out[ib];
    std::memset(&a, 0, sizeof a);
    for (int n = 0; n < n_acts; ++n) {
      const BlockQ8_K& y = act_row<BlockQ8_K>(acts, act_row_bytes, static_cast<int>(b0 + n))[ib];
      a.da[n] = y.d;
      for (int t = 0; t < kPairs; ++t) {
        // |sum of 32 quants| <= 32 * 128: int16 exactly.
        const auto lo = static_cast<std::uint16_t>(y.bsums[4 * t] + y.bsums[4 * t + 1]);
        const auto hi = static_cast<std::uint16_t>(y.bsums[4 * t + 2] + y.bsums[4 * t + 3]);
        a.bsum_pair[t][n] = static_cast<std::int32_t>(lo | (std::uint32_t(hi) << 16));
      }
      for (int s = 0; s < kSteps; ++s) {
        for (int kk = 0; kk < 16; ++kk) std::memcpy(&a.b[s][kk][4 * n], y.qs + 64 * s + 4 * kk, 4);
      }
    }
  }
}

// The vector steps of rows [first_row, first_row + n_rows) x one tile of activation rows: the
// stored C tiles of the group's nb super-blocks (c: C_lo, C_hi of each) into the float chain,
// the outputs to out[n * out_stride + row].
void q4_k_amx_finish(const AmxQ4KBlock* pb, const AmxActBlock* ab, std::int64_t nb, int n_rows, int n_acts,
                     const std::int32_t* c, float* out, std::size_t out_stride) {
  constexpr std::size_t kC = kAmxRows * kAmxActs;  // int32s in one C tile
  __m512 acc[kAmxRows], acc_min[kAmxRows];
  for (int m = 0; m < kAmxRows; ++m) acc[m] = acc_min[m] = _mm512_setzero_ps();
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    const AmxQ4KBlock& p = pb[ib];
    const AmxActBlock& a = ab[ib];
    const std::int32_t* c_lo = c + static_cast<std::size_t>(2 * ib) * kC;
    const std::int32_t* c_hi = c_lo + kC;
    const __m512 da = _mm512_load_ps(a.da);
    __m512i bsum_pair[kPairs];
    for (int t = 0; t < kPairs; ++t) bsum_pair[t] = _mm512_load_si512(a.bsum_pair[t]);
    for (int m = 0; m < kAmxRows; ++m) {
      const __m512i isum = _mm512_add_epi32(_mm512_load_si512(c_lo + kAmxActs * m),
                                            _mm512_slli_epi32(_mm512_load_si512(c_hi + kAmxActs * m), 8));
      __m512i msum = _mm512_setzero_si512();
      for (int t = 0; t < kPairs; ++t) msum = _mm512_dpwssd_epi32(msum, bsum_pair[t], _mm512_set1_epi32(p.min_pair[t][m]));
      // d * da and (-dmin) * da as the vec_dot forms them (one product per lane; commutative).
      acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(p.d[m]), da), _mm512_cvtepi32_ps(isum), acc[m]);
      acc_min[m] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(p.neg_dmin[m]), da), _mm512_cvtepi32_ps(msum), acc_min[m]);
    }
  }
  alignas(64) float sum[kAmxRows][kAmxActs];
  for (int m = 0; m < kAmxRows; ++m) _mm512_store_ps(sum[m], _mm512_add_ps(acc[m], acc_min[m]));
  for (int n = 0; n < n_acts; ++n) {
    for (int m = 0; m < n_rows; ++m) out[static_cast<std::size_t>(n) * out_stride + static_cast<std::size_t>(m)] = sum[m][n];
  }
}

void matmul_rows_q4_k_amx(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                          std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y,
                          std::size_t y_stride) {
  if (r1 <= r0 || batch <= 0) return;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    const VecDotFn vec_dot = kernels_for(CpuIsa::avx512)->vec_dot[type_slot(GgmlType::Q4_K)];
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / kQK_K;
  const std::int64_t n_groups = (r1 - r0 + kAmxRows - 1) / kAmxRows;
  const std::int64_t n_tiles = (batch + kAmxActs - 1) / kAmxActs;
  thread_local std::vector<AmxQ4KBlock> packed;
  thread_local std::vector<AmxActBlock> packed_acts;
  thread_local ScratchBuffer<std::int32_t> c_tiles;  // per activation tile and super-block: C_lo, C_hi
  const auto c_ints = static_cast<std::size_t>(std::min(n_tiles, kTileChunk) * nb * 2 * kAmxRows * kAmxActs);
  if (c_tiles.size() < c_ints) c_tiles.resize(c_ints);
  if (packed.size() < static_cast<std::size_t>(nb)) packed.resize(static_cast<std::size_t>(nb));
  if (packed_acts.size() < static_cast<std::size_t>(n_tiles * nb)) packed_acts.resize(static_cast<std::size_t>(n_tiles * nb));
  for (std::int64_t t = 0; t < n_tiles; ++t) {
    pack_acts(acts, act_row_bytes, t * kAmxActs, static_cast<int>(std::min<std::int64_t>(kAmxActs, batch - t * kAmxActs)), nb,
              packed_acts.data() + t * nb);
  }
  static const TileConfig config;
  _tile_loadconfig(&config);
  constexpr std::size_t kC = kAmxRows * kAmxActs;
  for (std::int64_t g = 0; g < n_groups; ++g) {
    const std::int64_t first_row = r0 + g * kAmxRows;
    const int n_rows = static_cast<int>(std::min<std::int64_t>(kAmxRows, r1 - first_row));
    const std::byte* rows[kAmxRows];
    for (int r = 0; r < kAmxRows; ++r) rows[r] = w + static_cast<std::size_t>(first_row + std::min(r, n_rows - 1)) * weight_row_bytes;
    // The next group's rows into L2 while this one computes (a hint; none after the last).
    const std::int64_t ahead = first_row + kPrefetchGroups * kAmxRows;
    PrefetchStream prefetch = rows_ahead(w, weight_row_bytes, ahead, std::min<std::int64_t>(kAmxRows, r1 - ahead), nb * kAmxRows);
    // Activation tiles kTileChunk at a time, so their tiles' C stay in L2. In the first chunk
    // each super-block is packed and its tile products run while its 8 KiB are still in L1;
    // later chunks read the group's packed super-blocks back from L2.
    for (std::int64_t t0 = 0; t0 < n_tiles; t0 += kTileChunk) {
      const std::int64_t t1 = std::min(n_tiles, t0 + kTileChunk);
      for (std::int64_t ib = 0; ib < nb; ++ib) {
        AmxQ4KBlock& p = packed[static_cast<std::size_t>(ib)];
        if (t0 == 0) pack_q4_k_amx(rows, n_rows, ib, p, prefetch);
        auto c_of = [&](std::int64_t t) { return c_tiles.data() + static_cast<std::size_t>(((t - t0) * nb + ib) * 2) * kC; };
        auto acts_of = [&](std::int64_t t) -> const AmxActBlock& { return packed_acts[static_cast<std::size_t>(t * nb + ib)]; };
        std::int64_t t = t0;
        for (; t + 1 < t1; t += 2) amx_super_block_pair(p, acts_of(t), acts_of(t + 1), c_of(t), c_of(t + 1));
        if (t < t1) {
          if (ib % 2 == 0) {
            amx_super_block_even(p, acts_of(t), c_of(t));
          } else {
            amx_super_block_odd(p, acts_of(t), c_of(t));
          }
        }
      }
      for (std::int64_t t = t0; t < t1; ++t) {
        const int n_acts = static_cast<int>(std::min<std::int64_t>(kAmxActs, batch - t * kAmxActs));
        q4_k_amx_finish(packed.data(), packed_acts.data() + t * nb, nb, n_rows, n_acts,
                        c_tiles.data() + static_cast<std::size_t>((t - t0) * nb * 2) * kC,
                        y + static_cast<std::size_t>(t * kAmxActs) * y_stride + static_cast<std::size_t>(first_row), y_stride);
      }
    }
  }
  _tile_release();
}

}  // namespace

bool amx_probe_in_this_thread() {
  static const TileConfig config;
  alignas(64) std::uint8_t a[16][64];
  alignas(64) std::int8_t b[16][64];
  alignas(64) std::int32_t c[16][16];
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 64; ++j) {
      a[i][j] = static_cast<std::uint8_t>(i + j);
      b[i][j] = static_cast<std::int8_t>(j - 3 * i);
    }
  }
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_loadd(2, a, 64);
  _tile_loadd(4, b, 64);
  _tile_dpbusd(0, 2, 4);
  _tile_stored(0, c, 64);
  _tile_release();
  // C[m][n] = sum_k A[m][k] * B[k / 4][4n + k % 4].
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 16; ++n) {
      std::int32_t want = 0;
      for (int k = 0; k < 64; ++k) want += std::int32_t(a[m][k]) * std::int32_t(b[k / 4][4 * n + k % 4]);
      if (c[m][n] != want) return false;
    }
  }
  return true;
}

MatmulRowsFn amx_q4_k_gemm() { return matmul_rows_q4_k_amx; }

namespace {
// The Q4_K GEMM the AVX-512 level registered before AMX (set once, before the table is shared).
MatmulRowsFn g_q4_k_below_amx = nullptr;

void matmul_rows_q4_k_amx_from_64(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                                  std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch,
                                  float* y, std::size_t y_stride) {
  const MatmulRowsFn fn = batch >= kMinBatchAmxQ4_K ? matmul_rows_q4_k_amx : g_q4_k_below_amx;
  fn(cols, weights, weight_row_bytes, r0, r1, acts, act_row_bytes, batch, y, y_stride);
}
}  // namespace

void register_amx_gemms(KernelTable& t) {
  MatmulRowsFn& slot = t.matmul_rows[type_slot(GgmlType::Q4_K)];
  g_q4_k_below_amx = slot != nullptr ? slot : matmul_rows_q4_k_amx;
  slot = matmul_rows_q4_k_amx_from_64;  // matmul_rows_min_batch stays the AVX-512 GEMM's
}

}  // namespace sluice::cpu
