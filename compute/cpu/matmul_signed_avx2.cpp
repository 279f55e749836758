// AVX2 (+FMA, F16C) GEMM micro-kernel (MatmulRowsFn, kernels.hpp) for MXFP4 weights (gpt-oss's
// experts) x Q8_0 activations, on matmul_signed_common.hpp's driver (which describes how every
// output stays equal, bit for bit, to this level's vec_dot). Compiled with -mavx2 -mfma -mf16c;
// only reached after the CPU check.
//
// One activation row per 256-bit register; per (block, row): vpmaddubsw(y + 128, x), vpmaddwd
// by ones, the add of the weight block's -128 * sum4(x), one multiply (dx * dy, dy read beside
// the quants), one conversion and one fma. The vec_dot's signed dot (and the shared Q5_0 tile of
// matmul_k_common.hpp, which served MXFP4 first) spends two vpsignb on the sign instead of the
// add, and forms dx * dy in a scalar register and broadcasts it.
#include "compute/cpu/matmul_signed_common.hpp"

namespace sluice::cpu {
namespace {

// Activation rows per register tile: 4 accumulators plus the block's quants, correction and
// scale and the products leave room in the 16 ymm registers.
constexpr int kTileActs = 4;
using RowActBlock = ActGroup<1>;
static_assert(sizeof(RowActBlock) == 64, "one row's quants and scales, one cache line");
// Blocks per chunk: a tile's chunk of activations (64 x 4 x 64 bytes = 16 KB) stays in L1.
constexpr std::int64_t kChunkBlocks = 64;

template <int NA>
void signed_row_tile(const PackedSignedBlock* row, std::int64_t nblk, const RowActBlock* act, float* state,
                     bool first, bool last, float* out, std::size_t out_stride) {
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(state + 8 * a);
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t i = 0; i < nblk; ++i) {
    const PackedSignedBlock& pk = row[i];
    const __m256i x = loadu256(pk.q);
    const __m256i corr = loadu256(pk.corr);
    const __m256 d = _mm256_set1_ps(pk.d);
    const RowActBlock* ab = act + i * kTileActs;
    for (int a = 0; a < NA; ++a) {
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(ab[a].q)), x);
      const __m256i lanes = _mm256_add_epi32(corr, _mm256_madd_epi16(pairs, ones));
      const __m256 d_dy = _mm256_mul_ps(d, _mm256_load_ps(ab[a].d));
      acc[a] = _mm256_fmadd_ps(d_dy, _mm256_cvtepi32_ps(lanes), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) {
    if (last) {
      out[a * out_stride] = hsum_ps(acc[a]);
    } else {
      _mm256_storeu_ps(state + 8 * a, acc[a]);
    }
  }
}

void signed_row_tile_n(int n_acts, const PackedSignedBlock* row, std::int64_t nblk, const RowActBlock* act,
                       float* state, bool first, bool last, float* out, std::size_t out_stride) {
  with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
    signed_row_tile<NA>(row, nblk, act, state, first, last, out, out_stride);
  });
}

}  // namespace

// Smallest batch that takes the GEMM (KernelTable::matmul_rows_min_batch), on the 2-core Xeon VM
// with the AVX2 level, bench_gemm_min_batch 7 (2048 x 4096, 1 and 2 threads, 4 runs, most under
// load from other builds, GEMM against row by row): 0.85-0.98x at batch 2, 0.98-1.23x at 4,
// 1.02-1.09x at 6, 1.08-1.22x at 8, 1.15-1.38x at 12-16, 1.2-1.6x from 64. (The first version,
// matmul_k_common.hpp's Q5_0 tile over packed MXFP4 blocks, measured in a quieter hour: 0.73-0.93x
// at batch 4-8, level at 12, 1.04-1.12x at 16-32, 1.13-1.26x from 64.)
// Q5_0 on the same bench (bench_gemm_min_batch 2), against matmul_k_common.hpp's legacy tile that
// served it before: 0.94-1.14x (noise-level, one run each); GEMM against row by row 1.01 at 4.
constexpr std::int64_t kMinBatchSigned = 4;

void register_avx2_matmul_signed_kernels(KernelTable& t) {
  register_signed_gemms<CpuIsa::avx2, kTileActs, 1, kChunkBlocks, signed_row_tile_n>(t, kMinBatchSigned, true);
}

}  // namespace sluice::cpu
