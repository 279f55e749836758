// GEMM driver shared by the MXFP4 micro-kernels of matmul_signed_avx2.cpp and
// matmul_signed_avx512.cpp and the AVX2 level's Q5_0 (MatmulRowsFn, kernels.hpp): signed weight
// quants x Q8_0 activations, over weight rows decoded once per matmul and activations laid out once per matmul. Include only
// from files compiled with at least -mavx2 -mfma -mf16c; like simd_x86.hpp everything here has
// internal linkage per SIMD file.
//
// Every output repeats the float steps of its level's vec_dot (signed_x_q8_0_tile in
// quants_legacy_avx2.cpp / quants_legacy_avx512.cpp): 8 fp32 lanes per output, per block
// lanes = the exact integer dot (lane l: the four products of elements 4l..4l+3),
// acc = fma(dx * dy, float(lanes), acc) in block order (dx * dy one IEEE product), then
// hsum_ps(acc). Only the way the integer lanes are formed differs, and integers are exact:
//   the vec_dots: |x| on the unsigned side of vpmaddubsw / vpdpbusd, x's sign moved onto y;
//   here:         y + 128 on the unsigned side, x as it is, plus -128 * sum4(x) per lane, since
//                 sum (y + 128) x = sum x y + 128 sum x.
// y + 128 (1..255) and dy are laid out once per matmul (ActGroup), -128 * sum4(x) once per weight
// block (PackedSignedBlock), so no sign step remains per (block, activation row), and the scales
// are read beside the quants. |x| <= 64 keeps vpmaddubsw's int16 pair sums (2 * 255 * |x|) exact;
// MXFP4's |x| <= 12.
#pragma once

#include <algorithm>
#include <vector>

#include "compute/cpu/matmul_k_common.hpp"  // with_tile_width, kPackBytes, loadu256, store256

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see simd_x86.hpp

// One weight block, decoded: the signed quants, the lanes' correction for the +128 on the
// activations, and dx as fp32.
struct PackedSignedBlock {
  std::int8_t q[32];
  std::int32_t corr[8];  // -128 * (q[4l] + q[4l+1] + q[4l+2] + q[4l+3])
  float d;
};

// One block of kRows activation rows that a tile takes in one register (AVX-512: 2, one per
// 256-bit half; AVX2: 1): the quants + 128 of row h in bytes 32h..32h+31, its dy (fp16 d as fp32)
// in lanes 8h..8h+7.
template <int kRows>
struct alignas(32 * kRows) ActGroup {
  std::uint8_t q[32 * kRows];
  float d[8 * kRows];
};

template <__m256i (*kQuants)(const void* block), float (*kScale)(const void* block)>
void pack_signed(const void* block, PackedSignedBlock& p) {
  const __m256i q = kQuants(block);
  store256(p.q, q);
  const __m256i sum4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
  store256(p.corr, _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum4, 7)));
  p.d = kScale(block);
}

inline __m256i mxfp4_signed_quants(const void* b) { return mxfp4_values_32(static_cast<const BlockMXFP4*>(b)->qs); }
inline float mxfp4_signed_scale(const void* b) { return block_scale(*static_cast<const BlockMXFP4*>(b)); }
// Q5_0 (gemma3's FFN, Qwen 0.5B): (nibble | 0xf0) read as int8 is nibble - 16, the value when the
// fifth bit is clear; |x| <= 16.
inline __m256i q5_0_signed_quants(const void* vb) {
  const BlockQ5_0& b = *static_cast<const BlockQ5_0*>(vb);
  const __m256i high_clear = _mm256_andnot_si256(bits_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xf0)));
  return _mm256_or_si256(nibbles_32(b.qs), high_clear);
}
inline float q5_0_signed_scale(const void* b) { return block_scale(*static_cast<const BlockQ5_0*>(b)); }

// The activations as the tiles read them: groups[(tile * nb + ib) * (kTileActs / kRows) + g] holds
// rows kRows * g .. of the tile. A tile's last group, when the batch ends inside it, repeats the
// batch's last row in its remaining rows (computed and dropped).
template <int kTileActs, int kRows>
void lay_out_groups(const void* acts, std::size_t act_row_bytes, std::int64_t batch, std::int64_t nb,
                    std::vector<ActGroup<kRows>>& groups) {
  constexpr int kGroups = kTileActs / kRows;
  const std::int64_t n_tiles = (batch + kTileActs - 1) / kTileActs;
  groups.resize(static_cast<std::size_t>(n_tiles * nb * kGroups));
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (std::int64_t b = 0; b < batch; ++b) {
    const BlockQ8_0* row = act_row<BlockQ8_0>(acts, act_row_bytes, static_cast<int>(b));
    const std::int64_t tile = b / kTileActs;
    const int g = static_cast<int>(b % kTileActs) / kRows;
    const int h = static_cast<int>(b % kRows);
    const int h_end = b + 1 == batch ? kRows : h + 1;
    for (std::int64_t ib = 0; ib < nb; ++ib) {
      ActGroup<kRows>& ag = groups[static_cast<std::size_t>((tile * nb + ib) * kGroups + g)];
      const __m256i q = _mm256_xor_si256(loadu256(row[ib].qs), bias);  // y + 128 as uint8
      const __m256 dy = _mm256_set1_ps(h2f(row[ib].d));
      for (int hh = h; hh < h_end; ++hh) {
        store256(ag.q + 32 * hh, q);
        _mm256_storeu_ps(ag.d + 8 * hh, dy);
      }
    }
  }
}

// One packed weight row's blocks [0, nblk) of a chunk against a tile of NA activation rows (the
// level's tile function, a template over NA): act[ib * kGroups + g] is group g's block ib;
// state holds kTileActs * 8 floats. Starts from zero when first, else from state; when last
// writes out[a * out_stride], else state.
template <int kRows>
using SignedTileFn = void (*)(int n_acts, const PackedSignedBlock* row, std::int64_t nblk,
                              const ActGroup<kRows>* act, float* state, bool first, bool last, float* out,
                              std::size_t out_stride);

// The MatmulRowsFn body (kernels.hpp contract), with matmul_k_common.hpp's pass structure: a pass
// of rows is decoded (up to kPackBytes; one row when a single tile covers the batch), then per
// tile of activation rows, per chunk of blocks, every row of the pass runs over the chunk. Batch 1
// has nothing to reuse a decoded block for: the level's vec_dot.
template <CpuIsa kIsa, GgmlType kType, typename Block, void (*kPack)(const void*, PackedSignedBlock&), int kTileActs,
          int kRows, std::int64_t kChunkBlocks, SignedTileFn<kRows> kTile>
void signed_gemm(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                 std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y,
                 std::size_t y_stride) {
  constexpr int kGroups = kTileActs / kRows;
  if (r1 <= r0 || batch <= 0) return;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    const VecDotFn vec_dot = kernels_for(kIsa)->vec_dot[type_slot(kType)];
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / 32;
  // Every pass reads all the laid-out activations (64 bytes per row and block: 4 MB at batch 512
  // and 4096 columns, past L2) once, so a pass takes what fits kPackBytes even past one strip
  // (up to 4): on the 2-core Xeon, AVX-512 2048 x 4096 batch 256 46.3 -> 38.1 ms and batch 512
  // 94.9 -> 78.7 ms on one thread against passes of at most 16 rows (batch 16-128 level).
  const std::int64_t pass_rows =
      batch <= kTileActs
          ? 1
          : std::clamp<std::int64_t>(
                static_cast<std::int64_t>(kPackBytes / (static_cast<std::size_t>(nb) * sizeof(PackedSignedBlock))), 1,
                4 * kMatmulRowsStrip);
  constexpr std::int64_t kPrefetchMinRows = 4;  // as matmul_k_common.hpp's driver
  const std::int64_t prefetch_rows = std::max(pass_rows, kPrefetchMinRows);
  thread_local std::vector<ActGroup<kRows>> groups;
  thread_local std::vector<PackedSignedBlock> packed;
  thread_local ScratchBuffer<float> state;  // kTileActs * 8 floats per row of the pass
  lay_out_groups<kTileActs, kRows>(acts, act_row_bytes, batch, nb, groups);
  if (packed.size() < static_cast<std::size_t>(pass_rows * nb)) packed.resize(static_cast<std::size_t>(pass_rows * nb));
  state.resize(static_cast<std::size_t>(pass_rows * kTileActs * 8));
  for (std::int64_t s = r0; s < r1; s += pass_rows) {
    const std::int64_t n_rows = std::min(pass_rows, r1 - s);
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::byte* row = w + static_cast<std::size_t>(s + r) * weight_row_bytes;
      for (std::int64_t ib = 0; ib < nb; ++ib) kPack(row + static_cast<std::size_t>(ib) * sizeof(Block), packed[r * nb + ib]);
    }
    PrefetchStream prefetch =
        rows_ahead(w, weight_row_bytes, s + prefetch_rows, std::min(n_rows, r1 - s - prefetch_rows),
                   ((batch + kTileActs - 1) / kTileActs) * ((nb + kChunkBlocks - 1) / kChunkBlocks) * n_rows);
    for (std::int64_t b = 0; b < batch; b += kTileActs) {
      const int n_acts = static_cast<int>(std::min<std::int64_t>(kTileActs, batch - b));
      for (std::int64_t c0 = 0; c0 < nb; c0 += kChunkBlocks) {
        const std::int64_t nblk = std::min(kChunkBlocks, nb - c0);
        const ActGroup<kRows>* act = groups.data() + ((b / kTileActs) * nb + c0) * kGroups;
        for (std::int64_t r = 0; r < n_rows; ++r) {
          prefetch.advance();
          kTile(n_acts, packed.data() + r * nb + c0, nblk, act, state.data() + r * kTileActs * 8, c0 == 0,
                c0 + nblk == nb, y + static_cast<std::size_t>(b) * y_stride + s + r, y_stride);
        }
      }
    }
  }
}

// Registers the level's GEMM for MXFP4 and, when with_q5_0, Q5_0: their vec_dots at the AVX2
// level take the same float steps (signed_x_q8_0_tile), so one tile serves both. (The AVX-512
// level gives Q5_0 the one-lane-per-row GEMM of matmul_avx512.cpp instead.)
template <CpuIsa kIsa, int kTileActs, int kRows, std::int64_t kChunkBlocks, SignedTileFn<kRows> kTile>
void register_signed_gemms(KernelTable& t, std::int64_t min_batch, bool with_q5_0) {
  t.matmul_rows[type_slot(GgmlType::MXFP4)] =
      signed_gemm<kIsa, GgmlType::MXFP4, BlockMXFP4, pack_signed<mxfp4_signed_quants, mxfp4_signed_scale>, kTileActs,
                  kRows, kChunkBlocks, kTile>;
  t.matmul_rows_min_batch[type_slot(GgmlType::MXFP4)] = min_batch;
  if (!with_q5_0) return;
  t.matmul_rows[type_slot(GgmlType::Q5_0)] =
      signed_gemm<kIsa, GgmlType::Q5_0, BlockQ5_0, pack_signed<q5_0_signed_quants, q5_0_signed_scale>, kTileActs,
                  kRows, kChunkBlocks, kTile>;
  t.matmul_rows_min_batch[type_slot(GgmlType::Q5_0)] = min_batch;
}

}  // namespace
}  // namespace sluice::cpu
