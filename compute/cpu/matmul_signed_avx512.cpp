// AVX-512 (VNNI) GEMM micro-kernel (MatmulRowsFn, kernels.hpp) for MXFP4 weights (gpt-oss's
// experts) x Q8_0 activations, on matmul_signed_common.hpp's driver (which describes how every
// output stays equal, bit for bit, to this level's vec_dot). Compiled with the AVX-512 flags of
// quants_legacy_avx512.cpp; only reached after the CPU check.
//
// A pair of activation rows shares a 512-bit register (one per 256-bit half, as in
// matmul_k_avx512.cpp's legacy_pair_tile), and per block costs one vpdpbusd (its accumulator
// starting at the weight block's -128 * sum4(x)), one multiply (dx * dy, the pair's dy read
// beside its quants), one conversion and one fma: legacy_pair_tile, which served MXFP4 first,
// spends three more instructions per pair on the sign step and the scales' shuffle.
#include "compute/cpu/matmul_signed_common.hpp"

namespace sluice::cpu {
namespace {

// Activation rows per tile: 4 pairs, each in one 512-bit accumulator.
constexpr int kTileActs = 8;
constexpr int kPairRows = 2;
constexpr int kTilePairs = kTileActs / kPairRows;
using PairActBlock = ActGroup<kPairRows>;
static_assert(sizeof(PairActBlock) == 128, "two rows' quants and scales, one cache line each");
// Blocks per chunk: a tile's chunk of activations (32 x 4 x 128 bytes = 16 KB) stays in L1 while
// the pass's rows run over it.
constexpr std::int64_t kChunkBlocks = 32;

// Rows [0, NA) of a tile ((NA + 1) / 2 pairs; an odd tile's last pair carries its last row twice
// and drops the copy).
template <int NA>
void signed_pair_tile(const PackedSignedBlock* row, std::int64_t nblk, const PairActBlock* act, float* state,
                      bool first, bool last, float* out, std::size_t out_stride) {
  constexpr int NP = (NA + 1) / 2;
  __m512 acc[NP];
  for (int p = 0; p < NP; ++p) acc[p] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(state + 16 * p);
  for (std::int64_t i = 0; i < nblk; ++i) {
    const PackedSignedBlock& pk = row[i];
    const __m512i x = _mm512_broadcast_i64x4(loadu256(pk.q));
    const __m512i corr = _mm512_broadcast_i64x4(loadu256(pk.corr));
    const __m512 d = _mm512_set1_ps(pk.d);
    const PairActBlock* a = act + i * kTilePairs;
    for (int p = 0; p < NP; ++p) {
      const __m512i lanes = _mm512_dpbusd_epi32(corr, _mm512_load_si512(a[p].q), x);
      const __m512 d_dy = _mm512_mul_ps(d, _mm512_load_ps(a[p].d));
      acc[p] = _mm512_fmadd_ps(d_dy, _mm512_cvtepi32_ps(lanes), acc[p]);
    }
  }
  for (int p = 0; p < NP; ++p) {
    if (!last) {
      _mm512_storeu_ps(state + 16 * p, acc[p]);
      continue;
    }
    out[2 * p * out_stride] = hsum_ps(_mm512_castps512_ps256(acc[p]));
    if (2 * p + 1 < NA) out[(2 * p + 1) * out_stride] = hsum_ps(_mm512_extractf32x8_ps(acc[p], 1));
  }
}

void signed_pair_tile_n(int n_acts, const PackedSignedBlock* row, std::int64_t nblk, const PairActBlock* act,
                        float* state, bool first, bool last, float* out, std::size_t out_stride) {
  with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
    signed_pair_tile<NA>(row, nblk, act, state, first, last, out, out_stride);
  });
}

}  // namespace

// Smallest batch that takes the GEMM (KernelTable::matmul_rows_min_batch), on the 2-core Xeon
// (AVX-512) VM, bench_gemm_min_batch 7 (2048 x 4096, 1 and 2 threads, 4 runs, most under load
// from other builds, GEMM against row by row): 0.73-0.82x at batch 2, 0.88-1.07x at 4,
// 1.13-1.33x at 6, 1.27-1.43x at 8, 1.62-1.8x at 16, 1.7-2.1x at 32-512 (the last run: 8.75
// against 17.5 ms at batch 64, 42.3 against 73.9 ms at 256, one thread). (The first version,
// matmul_k_avx512.cpp's legacy_pair_tile over packed MXFP4 blocks, was level at 6-12 and
// 1.13-1.26x at 16, 1.34-1.50x from 64.)
// (Q5_0 ran here too until its AVX-512 vec_dot became one fp32 chain per output, block by block:
// it now takes matmul_avx512.cpp's one-lane-per-row GEMM, 8.3x this level's vec_dot at batch 16
// and 2.0-2.6x at batch 1 on bench_gemm_min_batch 2, where this GEMM was 1.6-1.8x at batch 16.)
constexpr std::int64_t kMinBatchSigned = 6;

void register_avx512_matmul_signed_kernels(KernelTable& t) {
  register_signed_gemms<CpuIsa::avx512, kTileActs, kPairRows, kChunkBlocks, signed_pair_tile_n>(t, kMinBatchSigned, false);
}

}  // namespace sluice::cpu
