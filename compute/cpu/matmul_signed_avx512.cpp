// AVX-512 (VNNI) GEMM micro-kernel (MatmulRowsFn, kernels.hpp) for MXFP4 weights (gpt-oss's
// experts) x Q8_0 activations. Compiled with the AVX-512 flags of quants_legacy_avx512.cpp; only
// reached after the CPU check.
//
// Every output repeats the float steps of this level's vec_dot (quants_legacy_avx512.cpp,
// signed_x_q8_0_tile): 8 fp32 lanes per output, per block lanes = the exact integer dot (lane l:
// the four products of elements 4l..4l+3), acc = fma(dx * dy, float(lanes), acc) in block order
// (dx * dy one IEEE product), then hsum_ps(acc). Only the way the integer lanes are formed
// differs, and integers are exact:
//   the vec_dot: vpdpbusd(|x|, sign(y, x));
//   here:        vpdpbusd(-128 * sum4(x), y + 128, x), since sum (y + 128) x = sum x y + 128 sum x.
// y + 128 (unsigned, 1..255) is made once per matmul, and -128 * sum4(x) once per weight block
// (with the decode), so a pair of activation rows (one per 256-bit half, as in
// matmul_k_avx512.cpp's legacy_pair_tile) costs one vpdpbusd, one multiply (dx * dy, the pair's
// dy laid out beside its quants), one conversion and one fma per block: no sign step and no
// shuffle of the scales, which legacy_pair_tile spends three more instructions per pair on.
// |x| <= 12 and y + 128 <= 255 keep every int32 lane far from overflow.
#include "compute/cpu/matmul_k_common.hpp"

namespace sluice::cpu {
namespace {

// Activation rows per tile: 4 pairs, each in one 512-bit accumulator.
constexpr int kTileActs = 8;
constexpr int kTilePairs = kTileActs / 2;
// Blocks per chunk: a tile's chunk of activations (32 x 4 x 128 bytes = 16 KB) stays in L1 while
// the pass's rows run over it.
constexpr std::int64_t kChunkBlocks = 32;

// One weight block, decoded: the signed quants, the lanes' correction for the +128 on the
// activations, and dx as fp32.
struct PackedSignedBlock {
  std::int8_t q[32];
  std::int32_t corr[8];  // -128 * (q[4l] + q[4l+1] + q[4l+2] + q[4l+3])
  float d;
};

// One block of a pair of activation rows a = 2p, 2p + 1 of a tile: the quants + 128 of row a in
// bytes 32h..32h+31 and its dy (fp16 d as fp32) in lanes 8h..8h+7, h = a - 2p.
struct alignas(64) PairActBlock {
  std::uint8_t q[64];
  float d[16];
};
static_assert(sizeof(PairActBlock) == 128, "two rows' quants and scales, one cache line each");

template <__m256i (*kQuants)(const void* block), float (*kScale)(const void* block)>
void pack_signed(const void* block, PackedSignedBlock& p) {
  const __m256i q = kQuants(block);
  store256(p.q, q);
  const __m256i sum4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), q);
  store256(p.corr, _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum4, 7)));
  p.d = kScale(block);
}

__m256i mxfp4_quants(const void* b) { return mxfp4_values_32(static_cast<const BlockMXFP4*>(b)->qs); }
float mxfp4_scale(const void* b) { return block_scale(*static_cast<const BlockMXFP4*>(b)); }

// Rows [0, NA) of a tile (NA <= kTileActs, (NA + 1) / 2 pairs; an odd tile's last pair carries
// its last row twice and drops the copy) against blocks [0, nblk) of one packed weight row.
// act[ib * kTilePairs + p] is pair p's block ib. Starts from zero when first, else from state;
// when last writes out[a * out_stride], else state.
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

// The activations as the tiles read them: pairs[(tile * nb + ib) * kTilePairs + p].
void lay_out_pairs(const void* acts, std::size_t act_row_bytes, std::int64_t batch, std::int64_t nb,
                   std::vector<PairActBlock>& pairs) {
  const std::int64_t n_tiles = (batch + kTileActs - 1) / kTileActs;
  pairs.resize(static_cast<std::size_t>(n_tiles * nb * kTilePairs));
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (std::int64_t b = 0; b < batch; ++b) {
    const BlockQ8_0* row = act_row<BlockQ8_0>(acts, act_row_bytes, static_cast<int>(b));
    const std::int64_t tile = b / kTileActs;
    const int p = static_cast<int>(b % kTileActs) / 2;
    const int h = static_cast<int>(b % 2);
    // The odd last row fills both halves (the copy is computed and dropped).
    const int h_end = h == 0 && b + 1 == batch ? 2 : h + 1;
    for (std::int64_t ib = 0; ib < nb; ++ib) {
      PairActBlock& pa = pairs[static_cast<std::size_t>((tile * nb + ib) * kTilePairs + p)];
      const __m256i q = _mm256_xor_si256(loadu256(row[ib].qs), bias);  // y + 128 as uint8
      const __m256 dy = _mm256_set1_ps(h2f(row[ib].d));
      for (int hh = h; hh < h_end; ++hh) {
        store256(pa.q + 32 * hh, q);
        _mm256_store_ps(pa.d + 8 * hh, dy);
      }
    }
  }
}

// The MatmulRowsFn (kernels.hpp contract), with matmul_k_common.hpp's pass structure: a pass of
// rows is decoded (up to kPackBytes; one row when a single tile covers the batch), then per tile
// of activation rows, per chunk of blocks, every row of the pass runs over the chunk. Batch 1 has
// nothing to reuse a decoded block for: the level's vec_dot.
template <GgmlType kType, typename Block, void (*kPack)(const void*, PackedSignedBlock&)>
void signed_gemm(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                 std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y,
                 std::size_t y_stride) {
  if (r1 <= r0 || batch <= 0) return;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    const VecDotFn vec_dot = kernels_for(CpuIsa::avx512)->vec_dot[type_slot(kType)];
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / 32;
  const std::int64_t pass_rows =
      batch <= kTileActs
          ? 1
          : std::clamp<std::int64_t>(
                static_cast<std::int64_t>(kPackBytes / (static_cast<std::size_t>(nb) * sizeof(PackedSignedBlock))), 1,
                kMatmulRowsStrip);
  constexpr std::int64_t kPrefetchMinRows = 4;  // as matmul_k_common.hpp's driver
  const std::int64_t prefetch_rows = std::max(pass_rows, kPrefetchMinRows);
  thread_local std::vector<PairActBlock> pairs;
  thread_local std::vector<PackedSignedBlock> packed;
  thread_local std::vector<float> state;  // 16 floats per pair of each row of the pass
  lay_out_pairs(acts, act_row_bytes, batch, nb, pairs);
  if (packed.size() < static_cast<std::size_t>(pass_rows * nb)) packed.resize(static_cast<std::size_t>(pass_rows * nb));
  state.resize(static_cast<std::size_t>(pass_rows * kTilePairs * 16));
  for (std::int64_t s = r0; s < r1; s += pass_rows) {
    const std::int64_t n_rows = std::min(pass_rows, r1 - s);
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::byte* row = w + static_cast<std::size_t>(s + r) * weight_row_bytes;
      for (std::int64_t ib = 0; ib < nb; ++ib) kPack(row + static_cast<std::size_t>(ib) * sizeof(Block), packed[r * nb + ib]);
    }
    // Later passes' rows into L2 while this pass computes (a hint only), as the K-quant driver.
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
        const PairActBlock* act = pairs.data() + ((b / kTileActs) * nb + c0) * kTilePairs;
        for (std::int64_t r = 0; r < n_rows; ++r) {
          with_tile_width<kTileActs>(n_acts, [&]<int NA>() {
            signed_pair_tile<NA>(packed.data() + r * nb + c0, nblk, act, state.data() + r * kTilePairs * 16, c0 == 0,
                                 c0 + nblk == nb, y + static_cast<std::size_t>(b) * y_stride + s + r, y_stride);
          });
        }
      }
    }
  }
}

}  // namespace

// Smallest batch that takes the GEMM (KernelTable::matmul_rows_min_batch), on the 2-core Xeon
// (AVX-512) VM, bench_gemm_min_batch 7 (2048 x 4096, 1 and 2 threads, 2 runs under load from
// other builds, GEMM against row by row): 0.79-0.82x at batch 2, 0.96-1.07x at 4, 1.18-1.33x at
// 6, 1.30-1.40x at 8, 1.64-1.73x at 16, 1.8-2.2x at 32-128, 1.4-1.8x at 256-512. (The first
// version, matmul_k_avx512.cpp's legacy_pair_tile over packed MXFP4 blocks, was level at 6-12
// and 1.13-1.26x at 16, 1.34-1.50x from 64.)
constexpr std::int64_t kMinBatchMXFP4 = 6;

void register_avx512_matmul_signed_kernels(KernelTable& t) {
  t.matmul_rows[type_slot(GgmlType::MXFP4)] =
      signed_gemm<GgmlType::MXFP4, BlockMXFP4, pack_signed<mxfp4_quants, mxfp4_scale>>;
  t.matmul_rows_min_batch[type_slot(GgmlType::MXFP4)] = kMinBatchMXFP4;
}

}  // namespace sluice::cpu
