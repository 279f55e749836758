// AVX-512 (VNNI) GEMM (MatmulRowsFn, kernels.hpp) for Q4_K, Q5_K and Q6_K weights x Q8_K
// activations, one zmm lane per weight row. Compiled with the AVX-512 flags of quants_k_avx512.cpp; only
// reached after the CPU check.
//
// Each output takes the steps of this level's Q4_K/Q5_K vec_dot (quants_k_avx512.cpp, k4_tile):
// per super-block the exact int32 isum = sum_s scale_s * (q . y over sub-block s) and
// msum = sum_s min_s * (sum of y over s), then in super-block order
//   acc = fma(d * da, float(isum), acc);  acc_min = fma(-(dmin * da), float(msum), acc_min)
// and the output acc + acc_min. Here lane r of a register is weight row r of a group of 16, and
// the same IEEE ops run lane-wise (d * da: the row's d times the broadcast da; -(dmin * da) as
// (-dmin) * da, the same float), so every output equals the vec_dot bit for bit. No horizontal
// sums anywhere.
//
// Packing (PackedK16Block, once per matmul per pass of rows): a 16 x 16 dword transpose of the
// rows' qs puts, for every 4-element group g, the 16 rows' four quants in one 64-byte register;
// the 6-bit scales and mins, d and dmin are decoded lane-wise from a 16 x 4 dword transpose of
// the block heads. Integer steps per activation row a and group g: vpdpbusd(h, w_g, broadcast of
// y_a's four bytes). The sub-block scale is applied in integer without overflow: a Q4_K quant is
// <= 15, so the sum over a 16-element half of a sub-block is at most 16 * 15 * 128 = 30720 < 2^15;
// the two halves' int32 lanes are interleaved as int16 pairs (interleave_avx512.hpp) and one
// vpdpwssd with (scale_s, scale_s) adds both, times the scale, into isum. Q5_K (quants <= 31)
// does the same with 8-element quarters (8 * 31 * 128 = 31744), two pairs per sub-block. msum:
// vpdpwssd of the rows' (min_2t, min_2t+1) pairs with the activation's broadcast
// (bsum_2t, bsum_2t+1), its 32-element sums precomputed per matmul (bsums of 16 added exactly).
// Per 512 multiply-adds: 8 vpdpbusd + 1 shuffle + 1 vpdpwssd for Q4_K (Q5_K: + 1 of each), and
// per super-block and activation row 4 vpdpwssd + 2 cvt + 2 mul + 2 fma for 16 outputs.
//
// Q6_K (q6_k16_tile) follows the same plan with its own vec_dot recipe (the comment above
// quants_k_avx512.cpp's q6_k_tile): 6-bit quants rebuilt from ql and qh in the pack, a 16-element
// sub-block summed by four vpdpbusd and scaled by vpmulld (its sum, up to 129024, does not fit
// int16), the +32 offset removed with the rows' (scale_2t, scale_2t+1) pairs against the
// activation's bsum pairs, and one float chain. bench_gemm_min_batch 6 (2048 x 4096, 2 threads,
// against the row-by-row vec_dot_multi path): 0.83x at batch 4, 1.15x at 6, 1.28x at 8, 1.94x at
// 16, 2.5-2.8x at 64-256 (the old lanes-per-element GEMM: 0.83x at 8-16).
#include <algorithm>
#include <cstddef>
#include <vector>

#include "compute/cpu/interleave_avx512.hpp"
#include "compute/cpu/k4_heads_avx512.hpp"
#include "compute/cpu/matmul_k_common.hpp"

namespace sluice::cpu {
namespace {

constexpr int kRowsPerGroup = 16;  // one zmm lane per weight row
constexpr int kTileActs = 8;       // activation rows per register tile
constexpr int kSubBlocks = kQK_K / 32;
constexpr int kGroups = kQK_K / 4;  // 4-element groups per super-block

// One super-block of 16 weight rows, lane (or 4-byte slot) r = row r.
struct alignas(64) PackedK16Block {
  std::uint8_t q[kGroups][64];          // group g: row r's quants 4g..4g+3 at bytes 4r..4r+3
  std::int32_t scale[kSubBlocks][16];  // (scale_s, scale_s) as the int16 halves of lane r
  std::int32_t min[kSubBlocks / 2][16];  // (min_2t, min_2t+1)
  float d[16];
  float neg_dmin[16];
};
static_assert(sizeof(PackedK16Block) == 4992, "64 groups x 64 bytes + 8 + 4 pair registers + d + -dmin");

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// In place: in[i] lane j -> in[j] lane i (16 x 16 dwords; 64 shuffles).
inline void transpose_16x16(__m512i m[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(m[2 * i], m[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(m[2 * i], m[2 * i + 1]);
  }
  __m512i u[16];  // u[4i + j]: in every 128-bit lane L, dword 4L + j of rows 4i..4i+3
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);  // lanes 0, 2 of each
    const __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);  // lanes 1, 3
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    m[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    m[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xdd);
    m[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    m[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xdd);
  }
}

// Packs super-block ib of rows[0..n_rows) (the rest: zero rows, computed but never stored).
template <bool kHasHighBit>
void pack_group(const std::byte* const* rows, int n_rows, std::int64_t ib, PackedK16Block& p) {
  using L = K16Layout<kHasHighBit>;
  const std::size_t at = static_cast<std::size_t>(ib) * L::kBlockBytes;
  const K4Heads h = decode_k4_heads(rows, n_rows, at);
  _mm512_store_ps(p.d, h.d);
  _mm512_store_ps(p.neg_dmin, h.neg_dmin);
  const __m512i* sc = h.scales;
  const __m512i* mn = h.mins;
  const __m512i four = _mm512_set1_epi8(0x0f);
  for (int s = 0; s < kSubBlocks; ++s) {
    _mm512_store_si512(p.scale[s], _mm512_shuffle_epi8(sc[s / 4], byte_pair_index(s % 4, s % 4)));
  }
  for (int t = 0; t < kSubBlocks / 2; ++t) {
    _mm512_store_si512(p.min[t], _mm512_shuffle_epi8(mn[t / 2], byte_pair_index(2 * (t % 2), 2 * (t % 2) + 1)));
  }
  // Quants: qs dword 8c + m holds (low nibbles) group 16c + m and (high) group 16c + 8 + m.
  __m512i qs[2][16];
  __m512i qh[16];
  for (int r = 0; r < 16; ++r) {
    const bool live = r < n_rows;
    const std::byte* b = live ? rows[r] + at : nullptr;
    qs[0][r] = live ? load512(b + L::kQsAt) : _mm512_setzero_si512();
    qs[1][r] = live ? load512(b + L::kQsAt + 64) : _mm512_setzero_si512();
    if constexpr (kHasHighBit) {
      qh[r] = live ? _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + L::kQhAt)))
                   : _mm512_setzero_si512();
    }
  }
  transpose_16x16(qs[0]);
  transpose_16x16(qs[1]);
  if constexpr (kHasHighBit) transpose_16x16(qh);  // qh[m], m < 8: bytes 4m..4m+3 of qh
  const __m512i bit4 = _mm512_set1_epi8(0x10);
  for (int c = 0; c < 4; ++c) {
    for (int m = 0; m < 8; ++m) {
      const __m512i dw = qs[c / 2][8 * (c % 2) + m];
      __m512i low = _mm512_and_si512(dw, four);
      __m512i high = _mm512_and_si512(_mm512_srli_epi32(dw, 4), four);
      if constexpr (kHasHighBit) {
        // Bit 2c of qh[l] is the fifth bit of element 64c + l, bit 2c + 1 that of 64c + 32 + l.
        const __m512i hb_low = 2 * c >= 4 ? _mm512_srli_epi32(qh[m], 2 * c - 4) : _mm512_slli_epi32(qh[m], 4 - 2 * c);
        const __m512i hb_high = 2 * c + 1 >= 4 ? _mm512_srli_epi32(qh[m], 2 * c - 3) : _mm512_slli_epi32(qh[m], 3 - 2 * c);
        low = _mm512_ternarylogic_epi32(low, hb_low, bit4, 0xf8);  // low | (hb & bit4)
        high = _mm512_ternarylogic_epi32(high, hb_high, bit4, 0xf8);
      }
      _mm512_store_si512(p.q[16 * c + m], low);
      _mm512_store_si512(p.q[16 * c + 8 + m], high);
    }
  }
}

inline __m512i broadcast4(const std::int8_t* p) {
  int v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

// Per activation row a and super-block ib of the chunk: da[ib * kTileActs + a] the Q8_K scale,
// bsum_pairs[(ib * kTileActs + a) * 4 + t] the int16 pair (bsum of sub-block 2t, of 2t + 1).
// state: kTileActs x 32 floats (acc, acc_min between chunks); the last chunk stores the 16
// outputs of row a to out + a * out_stride, lanes below n_rows only.
template <bool kHasHighBit, int NA>
void k16_tile(const PackedK16Block* pb, std::int64_t nblk, const BlockQ8_K* const* y, const float* da,
              const std::int32_t* bsum_pairs, float* state, bool first, bool last, float* out,
              std::size_t out_stride, __mmask16 store_mask, PrefetchStream& pf) {
  // Groups per segment whose sum stays below 2^15: halves (Q4_K) or quarters (Q5_K).
  constexpr int kSeg = kHasHighBit ? 2 : 4;
  __m512 acc[NA], acc_min[NA];
  for (int a = 0; a < NA; ++a) {
    acc[a] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(state + 32 * a);
    acc_min[a] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(state + 32 * a + 16);
  }
  for (std::int64_t ib = 0; ib < nblk; ++ib) {
    const PackedK16Block& p = pb[ib];
    __m512i isum[NA];
    for (int a = 0; a < NA; ++a) isum[a] = _mm512_setzero_si512();
    for (int s = 0; s < kSubBlocks; ++s) {
      pf.advance();
      const __m512i scale = _mm512_load_si512(p.scale[s]);
      for (int g0 = 8 * s; g0 < 8 * s + 8; g0 += 2 * kSeg) {
        __m512i h0[NA], h1[NA];
        for (int a = 0; a < NA; ++a) h0[a] = h1[a] = _mm512_setzero_si512();
        for (int k = 0; k < kSeg; ++k) {
          const __m512i w0 = _mm512_load_si512(p.q[g0 + k]);
          const __m512i w1 = _mm512_load_si512(p.q[g0 + kSeg + k]);
          for (int a = 0; a < NA; ++a) {
            h0[a] = _mm512_dpbusd_epi32(h0[a], w0, broadcast4(y[a][ib].qs + 4 * (g0 + k)));
            h1[a] = _mm512_dpbusd_epi32(h1[a], w1, broadcast4(y[a][ib].qs + 4 * (g0 + kSeg + k)));
          }
        }
        for (int a = 0; a < NA; ++a) isum[a] = _mm512_dpwssd_epi32(isum[a], interleave_pair(h0[a], h1[a]), scale);
      }
    }
    const __m512 d = _mm512_load_ps(p.d);
    const __m512 neg_dmin = _mm512_load_ps(p.neg_dmin);
    for (int a = 0; a < NA; ++a) {
      const std::int32_t* bp = bsum_pairs + (ib * kTileActs + a) * 4;
      __m512i msum = _mm512_setzero_si512();
      for (int t = 0; t < kSubBlocks / 2; ++t) {
        msum = _mm512_dpwssd_epi32(msum, _mm512_load_si512(p.min[t]), _mm512_set1_epi32(bp[t]));
      }
      const __m512 da_a = _mm512_set1_ps(da[ib * kTileActs + a]);
      acc[a] = _mm512_fmadd_ps(_mm512_mul_ps(d, da_a), _mm512_cvtepi32_ps(isum[a]), acc[a]);
      acc_min[a] = _mm512_fmadd_ps(_mm512_mul_ps(neg_dmin, da_a), _mm512_cvtepi32_ps(msum), acc_min[a]);
    }
  }
  for (int a = 0; a < NA; ++a) {
    if (last) {
      _mm512_mask_storeu_ps(out + a * out_stride, store_mask, _mm512_add_ps(acc[a], acc_min[a]));
    } else {
      _mm512_storeu_ps(state + 32 * a, acc[a]);
      _mm512_storeu_ps(state + 32 * a + 16, acc_min[a]);
    }
  }
}

// ---- Q6_K ---------------------------------------------------------------------------------------

// One Q6_K super-block of 16 weight rows, lane (or 4-byte slot) r = row r.
struct alignas(64) PackedQ6K16Block {
  std::uint8_t q[kGroups][64];            // group g: row r's quants 4g..4g+3 (0..63) at bytes 4r..
  std::int32_t scale[kQK_K / 16][16];     // sub-block s (16 elements): lane r = row r's scale
  std::int32_t scale_pair[kQK_K / 32][16];  // (scale_2t, scale_2t+1) as the int16 halves of lane r
  float d[16];
};
static_assert(sizeof(PackedQ6K16Block) == 5696, "64 groups x 64 bytes + 16 + 8 scale registers + d");

// Packs super-block ib of rows[0..n_rows) (the rest: zero rows, computed but never stored).
// Element e of half n (e = 128n + 32c + l) is the nibble c / 2 of ql[64n + 32(c % 2) + l] with bits
// 2c, 2c + 1 of qh[32n + l] above it; its scale is scales[e / 16].
void pack_group_q6_k(const std::byte* const* rows, int n_rows, std::int64_t ib, PackedQ6K16Block& p) {
  const std::size_t at = static_cast<std::size_t>(ib) * sizeof(BlockQ6_K);
  __m512i head[4];  // head[q] lane r: scales 4q..4q+3 of row r
  transpose_heads(rows, n_rows, at + offsetof(BlockQ6_K, scales), head);
  for (int sb = 0; sb < kQK_K / 16; ++sb) {
    const int shift = 24 - 8 * (sb % 4);  // byte sb % 4 to the top, then sign-extended back
    _mm512_store_si512(p.scale[sb], _mm512_srai_epi32(_mm512_slli_epi32(head[sb / 4], shift), 24));
  }
  for (int t = 0; t < kQK_K / 32; ++t) {
    const __m512i lo = _mm512_load_si512(p.scale[2 * t]);
    const __m512i hi = _mm512_load_si512(p.scale[2 * t + 1]);
    _mm512_store_si512(p.scale_pair[t], _mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi32(0xffff)),
                                                        _mm512_slli_epi32(hi, 16)));
  }
  alignas(32) std::uint16_t d[16] = {};
  for (int r = 0; r < n_rows; ++r) std::memcpy(&d[r], rows[r] + at + offsetof(BlockQ6_K, d), sizeof d[r]);
  _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d))));
  __m512i ql[2][16];
  __m512i qh[16];
  for (int r = 0; r < 16; ++r) {
    const bool live = r < n_rows;
    const std::byte* b = live ? rows[r] + at : nullptr;
    ql[0][r] = live ? load512(b + offsetof(BlockQ6_K, ql)) : _mm512_setzero_si512();
    ql[1][r] = live ? load512(b + offsetof(BlockQ6_K, ql) + 64) : _mm512_setzero_si512();
    qh[r] = live ? load512(b + offsetof(BlockQ6_K, qh)) : _mm512_setzero_si512();
  }
  transpose_16x16(ql[0]);  // ql[n][m]: bytes 64n + 4m..+3
  transpose_16x16(ql[1]);
  transpose_16x16(qh);  // qh[m]: bytes 4m..4m+3
  const __m512i four = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 4; ++c) {
      for (int lg = 0; lg < 8; ++lg) {
        const __m512i dw = ql[n][8 * (c % 2) + lg];
        const __m512i low = _mm512_and_si512(c < 2 ? dw : _mm512_srli_epi32(dw, 4), four);
        // Bits 2c, 2c + 1 of each qh byte to bits 4, 5 (the 0x30 mask keeps each byte's own).
        const __m512i h = qh[8 * n + lg];
        const __m512i hb = c < 2 ? _mm512_slli_epi32(h, 4 - 2 * c) : _mm512_srli_epi32(h, 2 * c - 4);
        _mm512_store_si512(p.q[32 * n + 8 * c + lg], _mm512_ternarylogic_epi32(low, hb, bits45, 0xf8));
      }
    }
  }
}

// The steps of this level's Q6_K vec_dot (quants_k_avx512.cpp): per super-block the exact int32
// isum = sum_s scale_s * (q . y over s) - 32 * sum_s scale_s * bsum_s, then in super-block order
// acc = fma(d * da, float(isum), acc). A 16-element sub-block sum reaches 16 * 63 * 128 = 129024,
// past int16, so its scale is applied with vpmulld. bsum_pairs[(ib * kTileActs + a) * 8 + t]:
// the int16 pair (bsum of 16-element group 2t, of 2t + 1). state: kTileActs x 32 floats (acc in
// the first 16).
template <int NA>
void q6_k16_tile(const PackedQ6K16Block* pb, std::int64_t nblk, const BlockQ8_K* const* y, const float* da,
                 const std::int32_t* bsum_pairs, float* state, bool first, bool last, float* out,
                 std::size_t out_stride, __mmask16 store_mask, PrefetchStream& pf) {
  __m512 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(state + 32 * a);
  for (std::int64_t ib = 0; ib < nblk; ++ib) {
    const PackedQ6K16Block& p = pb[ib];
    __m512i isum[NA];
    for (int a = 0; a < NA; ++a) isum[a] = _mm512_setzero_si512();
    for (int sb = 0; sb < kQK_K / 16; ++sb) {
      if (sb % 2 == 0) pf.advance();
      __m512i h[NA];
      for (int a = 0; a < NA; ++a) h[a] = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i wq = _mm512_load_si512(p.q[4 * sb + k]);
        for (int a = 0; a < NA; ++a) h[a] = _mm512_dpbusd_epi32(h[a], wq, broadcast4(y[a][ib].qs + 16 * sb + 4 * k));
      }
      const __m512i scale = _mm512_load_si512(p.scale[sb]);
      for (int a = 0; a < NA; ++a) isum[a] = _mm512_add_epi32(isum[a], _mm512_mullo_epi32(h[a], scale));
    }
    const __m512 d = _mm512_load_ps(p.d);
    for (int a = 0; a < NA; ++a) {
      const std::int32_t* bp = bsum_pairs + (ib * kTileActs + a) * 8;
      __m512i offset = _mm512_setzero_si512();
      for (int t = 0; t < kQK_K / 32; ++t) {
        offset = _mm512_dpwssd_epi32(offset, _mm512_load_si512(p.scale_pair[t]), _mm512_set1_epi32(bp[t]));
      }
      const __m512i total = _mm512_sub_epi32(isum[a], _mm512_slli_epi32(offset, 5));
      acc[a] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(da[ib * kTileActs + a])), _mm512_cvtepi32_ps(total), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) {
    if (last) {
      _mm512_mask_storeu_ps(out + a * out_stride, store_mask, acc[a]);
    } else {
      _mm512_storeu_ps(state + 32 * a, acc[a]);
    }
  }
}

// ---- The driver ---------------------------------------------------------------------------------

// What the driver needs of a weight type: its packed block and packer, its tile, and the int16
// pairs of activation bsums its tile reads per super-block (kBsumPairs of them).
template <bool kHasHighBit>
struct Q4Q5K16 {
  using Packed = PackedK16Block;
  static constexpr GgmlType kType = kHasHighBit ? GgmlType::Q5_K : GgmlType::Q4_K;
  static constexpr int kBsumPairs = 4;  // 32-element sums: (2t, 2t + 1) for the sub-block mins
  static void pack(const std::byte* const* rows, int n_rows, std::int64_t ib, Packed& p) {
    pack_group<kHasHighBit>(rows, n_rows, ib, p);
  }
  static std::int32_t pair(const std::int16_t* bs, int t) {
    // |bsum of 32| <= 32 * 128: int16 exactly.
    const auto lo = static_cast<std::uint16_t>(bs[4 * t] + bs[4 * t + 1]);
    const auto hi = static_cast<std::uint16_t>(bs[4 * t + 2] + bs[4 * t + 3]);
    return static_cast<std::int32_t>(lo | (static_cast<std::uint32_t>(hi) << 16));
  }
  template <int NA>
  static void tile(const Packed* pb, std::int64_t nblk, const BlockQ8_K* const* y, const float* da,
                   const std::int32_t* bsum_pairs, float* state, bool first, bool last, float* out,
                   std::size_t out_stride, __mmask16 store_mask, PrefetchStream& pf) {
    k16_tile<kHasHighBit, NA>(pb, nblk, y, da, bsum_pairs, state, first, last, out, out_stride, store_mask, pf);
  }
};
struct Q6K16 {
  using Packed = PackedQ6K16Block;
  static constexpr GgmlType kType = GgmlType::Q6_K;
  static constexpr int kBsumPairs = 8;  // 16-element sums: (2t, 2t + 1) for the +32 offset
  static void pack(const std::byte* const* rows, int n_rows, std::int64_t ib, Packed& p) {
    pack_group_q6_k(rows, n_rows, ib, p);
  }
  static std::int32_t pair(const std::int16_t* bs, int t) {
    return static_cast<std::int32_t>(static_cast<std::uint16_t>(bs[2 * t]) |
                                     (static_cast<std::uint32_t>(static_cast<std::uint16_t>(bs[2 * t + 1])) << 16));
  }
  template <int NA>
  static void tile(const Packed* pb, std::int64_t nblk, const BlockQ8_K* const* y, const float* da,
                   const std::int32_t* bsum_pairs, float* state, bool first, bool last, float* out,
                   std::size_t out_stride, __mmask16 store_mask, PrefetchStream& pf) {
    q6_k16_tile<NA>(pb, nblk, y, da, bsum_pairs, state, first, last, out, out_stride, store_mask, pf);
  }
};

// Super-blocks per chunk: the tile's activations of a chunk (8 x 8 x 292 bytes) stay in L1 while
// the pass's groups run over them; a group's packed chunk is 40-46 KB, read from L2.
constexpr std::int64_t kChunkBlocks = 8;

// The MatmulRowsFn: rows [r0, r1) in groups of 16 (the last one padded), a pass of groups packed
// at a time (up to kPackBytes), then per tile of activation rows, per chunk, every group of the
// pass. Batch 1 calls the vec_dot, whose steps these are.
template <typename K>
void matmul_rows_k16(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                     std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y,
                     std::size_t y_stride) {
  if (r1 <= r0 || batch <= 0) return;
  using Packed = typename K::Packed;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    const VecDotFn vec_dot = kernels_for(CpuIsa::avx512)->vec_dot[type_slot(K::kType)];
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / kQK_K;
  const std::int64_t n_groups = (r1 - r0 + kRowsPerGroup - 1) / kRowsPerGroup;
  const std::int64_t pass_groups = std::clamp<std::int64_t>(
      static_cast<std::int64_t>(kPackBytes / (static_cast<std::size_t>(nb) * sizeof(Packed))), 1, n_groups);
  thread_local std::vector<Packed> packed;
  thread_local ScratchBuffer<float> state;  // per group of the pass: kTileActs x 32 lanes
  thread_local ScratchBuffer<float> da_all;  // [(tile * nb + ib) * kTileActs + a], 0 past the batch
  thread_local ScratchBuffer<std::int32_t> bsum_all;  // [((tile * nb + ib) * kTileActs + a) * kBsumPairs + t]
  const std::int64_t n_tiles = (batch + kTileActs - 1) / kTileActs;
  da_all.assign(static_cast<std::size_t>(n_tiles * nb * kTileActs), 0.0f);
  bsum_all.assign(static_cast<std::size_t>(n_tiles * nb * kTileActs * K::kBsumPairs), 0);
  for (std::int64_t b = 0; b < batch; ++b) {
    const BlockQ8_K* row = act_row<BlockQ8_K>(acts, act_row_bytes, static_cast<int>(b));
    const std::size_t base = static_cast<std::size_t>((b / kTileActs) * nb * kTileActs + b % kTileActs);
    for (std::int64_t ib = 0; ib < nb; ++ib) {
      const std::size_t at = base + static_cast<std::size_t>(ib * kTileActs);
      da_all[at] = row[ib].d;
      for (int t = 0; t < K::kBsumPairs; ++t) bsum_all[at * K::kBsumPairs + static_cast<std::size_t>(t)] = K::pair(row[ib].bsums, t);
    }
  }
  if (packed.size() < static_cast<std::size_t>(pass_groups * nb)) packed.resize(static_cast<std::size_t>(pass_groups * nb));
  if (state.size() < static_cast<std::size_t>(pass_groups * kTileActs * 32)) {
    state.resize(static_cast<std::size_t>(pass_groups * kTileActs * 32));
  }
  for (std::int64_t g0 = 0; g0 < n_groups; g0 += pass_groups) {
    const std::int64_t n_pass = std::min(pass_groups, n_groups - g0);
    for (std::int64_t g = 0; g < n_pass; ++g) {
      const std::int64_t first_row = r0 + (g0 + g) * kRowsPerGroup;
      const int n_rows = static_cast<int>(std::min<std::int64_t>(kRowsPerGroup, r1 - first_row));
      const std::byte* rows[kRowsPerGroup];
      for (int r = 0; r < kRowsPerGroup; ++r) {
        rows[r] = w + static_cast<std::size_t>(first_row + std::min(r, n_rows - 1)) * weight_row_bytes;
      }
      for (std::int64_t ib = 0; ib < nb; ++ib) K::pack(rows, n_rows, ib, packed[g * nb + ib]);
    }
    // The next pass's rows into L2, a few lines per sub-block of this pass's tiles (8 steps per
    // super-block: Q6_K advances every other of its 16). Qwen2.5-1.5B Q4_K_M batch-16 decode
    // went from 103 (all at once after the pack) and 107 (none) to 118 tok/s, 2 runs each.
    const std::int64_t ahead = r0 + (g0 + n_pass) * kRowsPerGroup;
    PrefetchStream prefetch = rows_ahead(w, weight_row_bytes, ahead, std::min(r1 - ahead, n_pass * kRowsPerGroup),
                                         n_tiles * nb * n_pass * 8);
    for (std::int64_t b = 0; b < batch; b += kTileActs) {
      const int n_acts = static_cast<int>(std::min<std::int64_t>(kTileActs, batch - b));
      for (std::int64_t c0 = 0; c0 < nb; c0 += kChunkBlocks) {
        const std::int64_t nblk = std::min(kChunkBlocks, nb - c0);
        const BlockQ8_K* act[kTileActs];
        for (int a = 0; a < n_acts; ++a) act[a] = act_row<BlockQ8_K>(acts, act_row_bytes, static_cast<int>(b + a)) + c0;
        const std::size_t at = static_cast<std::size_t>(((b / kTileActs) * nb + c0) * kTileActs);
        for (std::int64_t g = 0; g < n_pass; ++g) {
          const std::int64_t first_row = r0 + (g0 + g) * kRowsPerGroup;
          const int n_rows = static_cast<int>(std::min<std::int64_t>(kRowsPerGroup, r1 - first_row));
          const auto mask = static_cast<__mmask16>((1u << n_rows) - 1u);
          float* out = y + static_cast<std::size_t>(b) * y_stride + static_cast<std::size_t>(first_row);
          with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
            K::template tile<NA>(packed.data() + g * nb + c0, nblk, act, da_all.data() + at,
                                 bsum_all.data() + at * K::kBsumPairs, state.data() + g * kTileActs * 32, c0 == 0,
                                 c0 + nblk == nb, out, y_stride, mask, prefetch);
          });
        }
      }
    }
  }
}

}  // namespace

// Smallest batches that take this GEMM (KernelTable::matmul_rows_min_batch): see the measurements
// beside register_avx512_matmul_k_kernels (matmul_k_avx512.cpp).
void register_avx512_k16_gemms(KernelTable& t, std::int64_t min_batch_q4_k, std::int64_t min_batch_q5_k,
                               std::int64_t min_batch_q6_k) {
  t.matmul_rows[type_slot(GgmlType::Q4_K)] = matmul_rows_k16<Q4Q5K16<false>>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q4_K)] = min_batch_q4_k;
  t.matmul_rows[type_slot(GgmlType::Q5_K)] = matmul_rows_k16<Q4Q5K16<true>>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q5_K)] = min_batch_q5_k;
  t.matmul_rows[type_slot(GgmlType::Q6_K)] = matmul_rows_k16<Q6K16>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q6_K)] = min_batch_q6_k;
}

}  // namespace sluice::cpu
