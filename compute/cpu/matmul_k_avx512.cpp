// AVX-512 (VNNI) GEMM micro-kernels (MatmulRowsFn, kernels.hpp) for Q2_K and Q3_K weights x Q8_K
// activations, over rows decoded once per matmul (matmul_k_common.hpp). Compiled with the
// AVX-512 flags of quants_k_avx512.cpp; only reached after the CPU check. (Q4_K, Q5_K and Q6_K
// have a GEMM of their own, one lane per weight row: matmul_k16_avx512.cpp, registered from here.)
//
// Each output repeats the float steps of this level's vec_dot (quants_k_avx512.cpp) exactly: per
// super-block the 16 int32 lanes of sum over 64-element chunks j of scale(j, l) * P(j, l), where
// P(j, l) is the sum of the four products of elements 64j + 4l..4l+3 (one group, one scale), then
// acc = fma(d * da, float(lanes), acc) in block order, the mins (Q2_K) in 8 lanes of their own or
// the +4 (Q3_K) offset subtracted from the low 8 lanes, and the same horizontal
// sums. (|P| <= 4 * 63 * 127 below holds for every type: Q2_K/Q3_K quants are <= 7.)
// The Q4_1/Q5_1 GEMMs take the shared 8-lane tile's steps two activation rows per register
// (legacy_pair_tile below).
//
// The vec_dot gets the lanes of Q2_K/Q3_K from vpmaddubsw + vpdpwssd per chunk: two multiplies
// per 64 products. Here one vpdpbusd per chunk gives P exactly (|P| <= 4 * 63 * 127 < 2^15: it
// fits int16), the P of chunks 2m and 2m+1 are interleaved as the int16 halves of each lane (one
// shuffle, interleave_avx512.hpp), and one vpdpwssd with the interleaved scales adds
// both chunks' scaled sums: three multiplies per 128 products (the Q4_K..Q6_K vec_dots do the
// same, with the scales and quants decoded per call). The integer lanes are the same, so the
// floats are too.
#include "compute/cpu/interleave_avx512.hpp"
#include "compute/cpu/matmul_k_common.hpp"

namespace sluice::cpu {
namespace {

// Activation rows per register tile: 8 x (16-lane acc + 8-lane min acc + 16-lane block sum) plus
// the quants and scales of two chunks fit the 32 zmm registers.
constexpr int kTileActs = 8;

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// PackedKBlock::scale as the tile reads it: both chunk pairs' scale lanes (kScalePairIndex).
void store_scales(__m256i group_scales, std::int16_t* lanes) {
  const __m512i group = _mm512_zextsi256_si512(group_scales);
  for (int m = 0; m < 2; ++m) {
    _mm512_storeu_si512(lanes + 32 * m, _mm512_permutexvar_epi16(_mm512_load_si512(kScalePairIndex.index[m]), group));
  }
}

template <Epilogue kEpilogue, int NA>
void k_tile(const PackedKBlock* row, std::int64_t nb, const BlockQ8_K* const* y, const float* da, KAccState* state,
            bool first, bool last, float* out, std::size_t out_stride) {
  __m512 acc[NA];
  __m256 acc_min[NA];
  for (int a = 0; a < NA; ++a) {
    acc[a] = first ? _mm512_setzero_ps() : _mm512_load_ps(state[a].acc);
    acc_min[a] = first ? _mm256_setzero_ps() : _mm256_load_ps(state[a].acc_min);
  }
  for (std::int64_t i = 0; i < nb; ++i) {
    const PackedKBlock& p = row[i];
    __m512i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm512_setzero_si512();
    for (int m = 0; m < kQK_K / 128; ++m) {
      const __m512i q0 = load512(p.q + 128 * m);
      const __m512i q1 = load512(p.q + 128 * m + 64);
      const __m512i scale = load512(p.scale + 32 * m);
      for (int a = 0; a < NA; ++a) {
        const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, load512(y[a][i].qs + 128 * m));
        const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q1, load512(y[a][i].qs + 128 * m + 64));
        const __m512i both = interleave_pair(p0, p1);
        sumi[a] = _mm512_dpwssd_epi32(sumi[a], both, scale);
      }
    }
    const __m256i coeff = loadu256(p.coeff);
    // The vec_dot's scalar d * da and -(dmin * da) for the tile's 8 activation rows at once (the
    // same IEEE products), each then broadcast from memory into its fma.
    const __m256 da8 = _mm256_loadu_ps(da + i * kTileActs);
    alignas(32) float d_da[kTileActs];
    alignas(32) float neg_dmin_da[kTileActs];
    _mm256_store_ps(d_da, _mm256_mul_ps(_mm256_set1_ps(p.d), da8));
    if constexpr (kEpilogue == Epilogue::mins) {
      const __m256 sign = _mm256_set1_ps(-0.0f);
      _mm256_store_ps(neg_dmin_da, _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(p.dmin), da8), sign));
    }
    for (int a = 0; a < NA; ++a) {
      const __m256i bsums = _mm256_madd_epi16(coeff, loadu256(y[a][i].bsums));
      if constexpr (kEpilogue == Epilogue::mins) {
        acc[a] = _mm512_fmadd_ps(_mm512_set1_ps(d_da[a]), _mm512_cvtepi32_ps(sumi[a]), acc[a]);
        acc_min[a] = _mm256_fmadd_ps(_mm256_set1_ps(neg_dmin_da[a]), _mm256_cvtepi32_ps(bsums), acc_min[a]);
      } else {
        const __m256i offset = _mm256_slli_epi32(bsums, kOffsetShift<kEpilogue>);
        const __m512i total = _mm512_sub_epi32(sumi[a], _mm512_zextsi256_si512(offset));
        acc[a] = _mm512_fmadd_ps(_mm512_set1_ps(d_da[a]), _mm512_cvtepi32_ps(total), acc[a]);
      }
    }
  }
  for (int a = 0; a < NA; ++a) {
    if (!last) {
      _mm512_store_ps(state[a].acc, acc[a]);
      _mm256_store_ps(state[a].acc_min, acc_min[a]);
    } else if constexpr (kEpilogue == Epilogue::mins) {
      out[a * out_stride] = _mm512_reduce_add_ps(acc[a]) + hsum_ps(acc_min[a]);
    } else {
      out[a * out_stride] = _mm512_reduce_add_ps(acc[a]);
    }
  }
}

template <Epilogue kEpilogue>
void tile(int n_acts, const PackedKBlock* row, std::int64_t nb, const BlockQ8_K* const* y, const float* da,
          KAccState* state, bool first, bool last, float* out, std::size_t out_stride) {
  with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
    k_tile<kEpilogue, NA>(row, nb, y, da, state, first, last, out, out_stride);
  });
}

// ---- Q4_1 and Q5_1, two activation rows per register ---------------------------------------------
//
// matmul_k_common.hpp's legacy_tile keeps one 8-lane fp32 accumulator per activation row, as the
// vec_dots do: per block, lanes = the exact integer dot (four products per lane), then
// acc = fma(d * da, float(lanes), acc), with d * da one IEEE product. Here rows a and a + 1 share
// a 512-bit register (lanes 0-7 and 8-15) and every lane takes those same steps, so each output
// still equals its vec_dot bit for bit, in half the instructions. The min terms stay a scalar
// chain per row. (Q5_0 and MXFP4, the signed types, have a GEMM of their own: matmul_signed_*.)
struct PairLaneIndex {
  alignas(64) std::int32_t index[kTileActs / 2][16];
  constexpr PairLaneIndex() : index{} {
    for (int p = 0; p < kTileActs / 2; ++p) {
      for (int l = 0; l < 16; ++l) index[p][l] = 2 * p + l / 8;
    }
  }
};
constexpr PairLaneIndex kPairLaneIndex;

template <bool kHasMin, typename Act, int NA>
void legacy_pair_tile(const PackedLegacyBlock* row, std::int64_t nb, const Act* const* y, const float* da,
                      KAccState* state, bool first, bool last, float* out, std::size_t out_stride) {
  constexpr int NP = (NA + 1) / 2;
  // An odd tile's last register carries its last row twice; the copy in lanes 8-15 is dropped.
  auto second = [](int p) { return 2 * p + 1 < NA ? 2 * p + 1 : 2 * p; };
  __m512 acc[NP];
  float min_terms[NA];
  for (int p = 0; p < NP; ++p) {
    acc[p] = first ? _mm512_setzero_ps()
                   : _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_load_ps(state[2 * p].acc)),
                                        _mm256_load_ps(state[second(p)].acc), 1);
  }
  for (int a = 0; a < NA; ++a) min_terms[a] = first ? 0.0f : state[a].acc_min[0];
  for (std::int64_t i = 0; i < nb; ++i) {
    const PackedLegacyBlock& pk = row[i];
    const __m512i ux = _mm512_broadcast_i64x4(loadu256(pk.q));
    const __m512 da8 = _mm512_castps256_ps512(_mm256_loadu_ps(da + i * kTileActs));
    const __m512 d = _mm512_set1_ps(pk.d);
    for (int p = 0; p < NP; ++p) {
      const __m512i qy =
          _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(y[2 * p][i].qs)), loadu256(y[second(p)][i].qs), 1);
      const __m512i lanes = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ux, qy);
      const __m512 d_da = _mm512_mul_ps(d, _mm512_permutexvar_ps(_mm512_load_si512(kPairLaneIndex.index[p]), da8));
      acc[p] = _mm512_fmadd_ps(d_da, _mm512_cvtepi32_ps(lanes), acc[p]);
    }
    if constexpr (kHasMin) {
      for (int a = 0; a < NA; ++a) min_terms[a] += pk.m * h2f(y[a][i].s);
    }
  }
  for (int p = 0; p < NP; ++p) {
    const __m256 halves[2] = {_mm512_castps512_ps256(acc[p]), _mm512_extractf32x8_ps(acc[p], 1)};
    for (int h = 0; h < 2 && 2 * p + h < NA; ++h) {
      const int a = 2 * p + h;
      finish_legacy_row<kHasMin>(halves[h], min_terms[a], last, state[a], out + a * out_stride);
    }
  }
}

template <bool kHasMin, typename Act>
void legacy_pair_tile_n(int n_acts, const PackedLegacyBlock* row, std::int64_t nb, const Act* const* y,
                        const float* da, KAccState* state, bool first, bool last, float* out, std::size_t out_stride) {
  with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
    legacy_pair_tile<kHasMin, Act, NA>(row, nb, y, da, state, first, last, out, out_stride);
  });
}

template <GgmlType kType, PackFn<LegacyGemm<BlockQ8_1>> kPack, typename Block>
constexpr MatmulRowsFn kUnsignedLegacyGemm =
    matmul_rows_entry<CpuIsa::avx512, kType, LegacyGemm<BlockQ8_1>, kTileActs, kPack,
                      legacy_pair_tile_n<true, BlockQ8_1>, Block>;

template <GgmlType kType, PackFn<KQuantGemm> kPack, Epilogue kEpilogue, typename Block>
constexpr MatmulRowsFn kGemm =
    matmul_rows_entry<CpuIsa::avx512, kType, KQuantGemm, kTileActs, kPack, tile<kEpilogue>, Block>;

}  // namespace

// Smallest batches that take these kernels (KernelTable::matmul_rows_min_batch), measured on Zen 4
// (EPYC, one thread, Qwen2.5-1.5B shapes, best of 15 against the vec_dot_multi path): Q4_K
// 8960 x 1536 at batch 8 1.86 ms either way (the decode-and-store of a row stalls on the weights'
// memory reads, which the vec_dots overlap with arithmetic), batch 16 3.47 against 3.76 ms,
// batch 128 25.8 against 30.7 ms. Q6_K decodes cheaply in the vec_dot: 1536 x 8960 at batch 16
// 4.3 against 3.9 ms, batch 128 25.6-26.1 against 25.4 ms (8960 x 1536: 24 against 27 ms), so it
// keeps the vec_dot path until batches where the two are level.
// Q4_K/Q5_K now take the GEMM of matmul_k16_avx512.cpp (one lane per weight row), measured on the
// 2-core Xeon (Sapphire Rapids, AVX-512) VM with bench_gemm_min_batch 5 and 7 (2048 x 4096, best
// of 3-7, GEMM against the row-by-row vec_dot_multi path in the same run; 1 and 2 threads): Q4_K
// 0.64-0.72x at batch 2, 1.03-1.12x at 4, 1.35-1.56x at 6, 2.4x at 16, 3.0-3.3x at 64; Q5_K
// 0.63-0.69x at 2, 0.93-0.98x at 4, 1.40-1.44x at 6, 2.4x at 16, 2.6-3.0x at 64. (The old
// per-output 16-lane tile was level with the vec_dots only at batch 64, which was then the
// threshold.) Zen 4 not re-measured.
constexpr std::int64_t kMinBatchQ4_K = 4;
constexpr std::int64_t kMinBatchQ5_K = 6;
// Q6_K takes the one-lane-per-row GEMM too (matmul_k16_avx512.cpp), same bench on the Xeon (two
// runs, 1 and 2 threads): 0.79-0.83x at batch 4, 1.12-1.16x at 6, 1.25-1.30x at 8, 1.9x at 16.
// (This file's Q6_K GEMM ran at 0.83x the row-by-row speed at batch 8-16; it was used from 256.)
constexpr std::int64_t kMinBatchQ6_K = 6;
// Q4_1 and Q5_1, measured on Zen 4 (2048 x 4096, 1 and 2 threads, best
// of 3-7, against the row-by-row vec_dot_multi path; bench/bench_gemm_min_batch.cpp): the
// GEMM is slower at batch 2 (0.69-0.95x) and 4 (0.89-1.00x), faster from batch 6 (1.07-1.21x) to
// 1.3-1.6x at batch 64-512, on both levels.
// Q2_K and Q3_K, same bench (2048 x 4096 rows x columns, 1 and 2 threads, best of 3-7, noisy
// past batch 16 on the shared 2-core machine): Q2_K decodes cheaply in its vec_dot and the packed
// rows are 3x its bytes, so the GEMM is slower up to batch 128 (0.5-0.9x) and level at 256-512
// (0.96-1.23x): it keeps the vec_dot path until then, like Q6_K. Q3_K: AVX-512 slower below batch
// 12 (0.66-0.95x), 1.05-1.10x at 12-16, 1.1-1.4x at 64-512; AVX2 level (0.86-1.17x) from 16 on.
constexpr std::int64_t kMinBatchQ2_K = 256;
constexpr std::int64_t kMinBatchQ3_K = 16;
constexpr std::int64_t kMinBatchQ4_1 = 6;
constexpr std::int64_t kMinBatchQ5_1 = 6;

// Defined in matmul_k16_avx512.cpp: Q4_K, Q5_K and Q6_K, one lane per weight row.
void register_avx512_k16_gemms(KernelTable& t, std::int64_t min_batch_q4_k, std::int64_t min_batch_q5_k,
                               std::int64_t min_batch_q6_k);

void register_avx512_matmul_k_kernels(KernelTable& t) {
  register_avx512_k16_gemms(t, kMinBatchQ4_K, kMinBatchQ5_K, kMinBatchQ6_K);
  t.matmul_rows[type_slot(GgmlType::Q2_K)] =
      kGemm<GgmlType::Q2_K, pack_q2_k<store_scales>, Epilogue::mins, BlockQ2_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q2_K)] = kMinBatchQ2_K;
  t.matmul_rows[type_slot(GgmlType::Q3_K)] =
      kGemm<GgmlType::Q3_K, pack_q3_k<store_scales>, Epilogue::offset4, BlockQ3_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q3_K)] = kMinBatchQ3_K;
  t.matmul_rows[type_slot(GgmlType::Q4_1)] = kUnsignedLegacyGemm<GgmlType::Q4_1, pack_q4_1, BlockQ4_1>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q4_1)] = kMinBatchQ4_1;
  t.matmul_rows[type_slot(GgmlType::Q5_1)] = kUnsignedLegacyGemm<GgmlType::Q5_1, pack_q5_1, BlockQ5_1>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q5_1)] = kMinBatchQ5_1;
}

}  // namespace sluice::cpu
