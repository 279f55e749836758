// AVX2 (+FMA, F16C) GEMM micro-kernels (MatmulRowsFn, kernels.hpp) for Q2_K..Q6_K
// weights x Q8_K activations, over rows decoded once per matmul (matmul_k_common.hpp). Compiled
// with -mavx2 -mfma -mf16c; only reached after the CPU check.
//
// Each output repeats the float steps of this level's vec_dot (quants_k_avx2.cpp) exactly: per
// super-block the 8 int32 lanes of sum over 32-element chunks c of madd(maddubs(q, a), scales)
// (exact integers: any decode gives the same lanes), then in block order
// acc = fma(d * da, float(lanes), acc) and, for Q2_K/Q4_K/Q5_K, acc = fma(-dmin * da, float(mins),
// acc) into the same 8 lanes, or for Q6_K (+32) and Q3_K (+4) the offset subtracted first; then
// the same hsum_ps. The Q4_1/Q5_1 GEMMs are the shared tile of matmul_k_common.hpp with this
// level's maddubs integer dots (Q5_0 and MXFP4: matmul_signed_avx2.cpp).
#include "compute/cpu/matmul_k_common.hpp"

namespace sluice::cpu {
namespace {

// Activation rows per register tile: 4 x (acc + block sum) plus one chunk's quants and scales
// leave room in the 16 ymm registers for the loads and products.
constexpr int kTileActs = 4;

// int16 lane k of a chunk's scales multiplies the maddubs pair sum of the chunk's elements 2k,
// 2k+1: over the super-block, lane k holds the scale of group k / 8 (the vec_dot's SubBlockScales).
void store_scales(__m256i group_scales, std::int16_t* lanes) {
  alignas(32) std::int16_t group[kQK_K / 16];
  store256(group, group_scales);
  for (int g = 0; g < kQK_K / 16; ++g) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes + 8 * g), _mm_set1_epi16(group[g]));
  }
}

template <Epilogue kEpilogue, int NA>
void k_tile(const PackedKBlock* row, std::int64_t nb, const BlockQ8_K* const* y, const float* da, KAccState* state,
            bool first, bool last, float* out, std::size_t out_stride) {
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = first ? _mm256_setzero_ps() : _mm256_load_ps(state[a].acc);
  for (std::int64_t i = 0; i < nb; ++i) {
    const PackedKBlock& p = row[i];
    __m256i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm256_setzero_si256();
    // Not unrolled: GCC otherwise hoists the 8 chunks' products and spills them to the stack
    // (Qwen2.5-1.5B pp512 on Zen 3: 55.8 -> 64.8-68.9 tok/s).
#pragma GCC unroll 1
    for (int c = 0; c < kQK_K / 32; ++c) {
      const __m256i q = loadu256(p.q + 32 * c);
      const __m256i scale = loadu256(p.scale + 16 * c);
      for (int a = 0; a < NA; ++a) {
        const __m256i prod = _mm256_madd_epi16(_mm256_maddubs_epi16(q, loadu256(y[a][i].qs + 32 * c)), scale);
        sumi[a] = _mm256_add_epi32(sumi[a], prod);
      }
    }
    const __m256i coeff = loadu256(p.coeff);
    for (int a = 0; a < NA; ++a) {
      const float da_a = da[i * kTileActs + a];
      const __m256i bsums = _mm256_madd_epi16(coeff, loadu256(y[a][i].bsums));
      if constexpr (kEpilogue == Epilogue::mins) {
        acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(p.d * da_a), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
        acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(-(p.dmin * da_a)), _mm256_cvtepi32_ps(bsums), acc[a]);
      } else {
        const __m256i total = _mm256_sub_epi32(sumi[a], _mm256_slli_epi32(bsums, kOffsetShift<kEpilogue>));
        acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(p.d * da_a), _mm256_cvtepi32_ps(total), acc[a]);
      }
    }
  }
  for (int a = 0; a < NA; ++a) {
    if (last) {
      out[a * out_stride] = hsum_ps(acc[a]);
    } else {
      _mm256_store_ps(state[a].acc, acc[a]);
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

template <GgmlType kType, PackFn<KQuantGemm> kPack, Epilogue kEpilogue, typename Block>
constexpr MatmulRowsFn kGemm =
    matmul_rows_entry<CpuIsa::avx2, kType, KQuantGemm, kTileActs, kPack, tile<kEpilogue>, Block>;

}  // namespace

// Smallest batch that takes these kernels (KernelTable::matmul_rows_min_batch), measured on an
// AVX2-only CPU (AMD EPYC Zen 3, 2 cores of a VM) after the chunk loop above stopped spilling.
// bench_gemm_min_batch (2048 x 4096, 2 threads, best of 3 runs, GEMM against the AVX2
// vec_dot_multi row by row):
//   Q4_K 0.93x at batch 8, 1.01x at 12, 1.05-1.09x at 16, 1.14-1.18x at 32, 1.2-1.26x from 64;
//   Q5_K 0.98x at 8, 1.06x at 12, 1.12x at 16, 1.3x from 128;
//   Q6_K 0.89x at 8, 0.98x at 12, 1.04x at 16, 1.11x at 24-32, 1.2x from 128;
//   Q3_K 0.93x at 8, 1.01x at 12, 1.09x at 16, 1.14x at 24;
//   Q2_K (cheap to decode in its vec_dot; packed rows are 3x its bytes) 0.90x at 16, 0.96x at 24,
//   1.02x at 32, 1.04-1.07x at 64-128, 1.09x at 256.
// On a real model the GEMM gains ~0.1 less: Qwen2.5-1.5B Q4_K_M decoding (`sluice bench -b`,
// alternating, two runs each) with these GEMMs from batch 16 against from 128: batch 16 50.6 /
// 51.9 against 53.1 / 54.0 tok/s (0.96x), batch 32 54.9 / 59.5 against 52.3 / 54.8 (1.05-1.09x).
// So Q4_K and Q6_K (that model's types) start at 32, and the others where the bench's ratio is
// ~1.1 or more. (Before, with the spills, Zen 4 under SLUICE_CPU_ISA=avx2 broke even at 128.)
constexpr std::int64_t kMinBatchQ4_K = 32;
constexpr std::int64_t kMinBatchQ5_K = 16;
constexpr std::int64_t kMinBatchQ6_K = 32;
constexpr std::int64_t kMinBatchQ2_K = 256;
constexpr std::int64_t kMinBatchQ3_K = 24;
// Q4_1 and Q5_1, measured on Zen 4 (2048 x 4096, 1 and 2 threads, best
// of 3-7, against the row-by-row vec_dot_multi path; bench/bench_gemm_min_batch.cpp): the
// GEMM is slower at batch 2 (0.69-0.95x) and 4 (0.89-1.00x), faster from batch 6 (1.07-1.21x) to
// 1.3-1.6x at batch 64-512, on both levels.
constexpr std::int64_t kMinBatchQ4_1 = 6;
constexpr std::int64_t kMinBatchQ5_1 = 6;

void register_avx2_matmul_k_kernels(KernelTable& t) {
  t.matmul_rows[type_slot(GgmlType::Q4_K)] =
      kGemm<GgmlType::Q4_K, pack_q4_k<store_scales>, Epilogue::mins, BlockQ4_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q4_K)] = kMinBatchQ4_K;
  t.matmul_rows[type_slot(GgmlType::Q5_K)] =
      kGemm<GgmlType::Q5_K, pack_q5_k<store_scales>, Epilogue::mins, BlockQ5_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q5_K)] = kMinBatchQ5_K;
  t.matmul_rows[type_slot(GgmlType::Q6_K)] =
      kGemm<GgmlType::Q6_K, pack_q6_k<store_scales>, Epilogue::offset32, BlockQ6_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q6_K)] = kMinBatchQ6_K;
  t.matmul_rows[type_slot(GgmlType::Q2_K)] =
      kGemm<GgmlType::Q2_K, pack_q2_k<store_scales>, Epilogue::mins, BlockQ2_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q2_K)] = kMinBatchQ2_K;
  t.matmul_rows[type_slot(GgmlType::Q3_K)] =
      kGemm<GgmlType::Q3_K, pack_q3_k<store_scales>, Epilogue::offset4, BlockQ3_K>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q3_K)] = kMinBatchQ3_K;
  register_q4_1_q5_1_gemms<CpuIsa::avx2, kTileActs, dot_u8_i8>(t, kMinBatchQ4_1, kMinBatchQ5_1);
}

}  // namespace sluice::cpu
