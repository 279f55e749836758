// AVX-512 VNNI GEMM micro-kernels (MatmulRowsFn, kernels.hpp) for Q4_0, Q5_0 and Q8_0 weights x
// Q8_0 activations. Compiled with the AVX-512 flags of quants_legacy_avx512.cpp; only reached after
// the CPU check.
//
// A strip of 16 weight rows is repacked, a chunk of blocks at a time, into a per-thread scratch:
// per block, 8 registers whose int32 lane r holds four consecutive quants of row r (as unsigned
// bytes w + offset: the Q4_0 nibble as stored, offset 8; the Q5_0 nibble and fifth bit, offset
// 16; the Q8_0 byte xor 0x80, offset 128),
// and the 16 row scales as fp32. Every activation row then streams over the chunk: per block,
// eight vpdpbusd with the activation's four bytes broadcast give the 16 rows' block sums at once,
// minus offset * (sum of the activation block), exact in int32. The fp32 accumulation is one lane
// per row, sum = fma(dw * da, float(block sum), sum) in block order: the order of the AVX-512
// vec_dot of these types (quants_legacy_avx512.cpp), so the results equal it bit for bit.
#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {

constexpr int kStrip = static_cast<int>(kMatmulRowsStrip);  // one lane per weight row
static_assert(kStrip == 16, "one zmm lane per weight row");
constexpr int kGroups = 8;            // int32 groups of four quants per 32-element block
constexpr std::int64_t kChunkBlocks = 32;  // repacked blocks kept in L1 (32 * 576 bytes)
constexpr int kMaxActs = 8;           // activation rows per register tile

struct alignas(64) PackedBlock {
  __m512i q[kGroups];
  __m512 d;
};

// Lane r = the four bytes at rows[r] + at: sixteen scalar loads through the stack. On Zen 4 this
// beats one vpgatherdd, whose samples were 43% of Q5_0's pack (two per block): at batch 16 a core
// went from 90-94 to 116-121 G multiply-adds/s on Q5_0, from 100-110 to 113-124 on Q8_0
// (bench_kernels 4096 x 4096, alternated).
inline __m512i load_i32x16_rows(const std::byte* const* rows, std::size_t at) {
  alignas(64) std::int32_t lanes[16];
  for (int r = 0; r < 16; ++r) std::memcpy(&lanes[r], rows[r] + at, sizeof(std::int32_t));
  return _mm512_load_si512(lanes);
}

inline __m512 fp16_lanes_to_ps(__m512i lanes) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(lanes));  // low 16 bits of each lane
}

// Dwords j = 0..3 of 16 bytes at rows[r] + at, for r = 0..15, as out[j] lane r: four 128-bit
// loads per register (rows k, k + 4, k + 8, k + 12), then a 4 x 4 dword transpose per lane.
inline void transpose_16x4(const std::byte* const* rows, std::size_t at, __m512i out[4]) {
  __m512i z[4];
  for (int k = 0; k < 4; ++k) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k] + at)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 4] + at)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 8] + at)), 2);
    z[k] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 12] + at)), 3);
  }
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// The 16 rows' fp16 scales (at: the block's start in each row) and nibbles (16 bytes at qs_at:
// element j in the low nibble of byte j, element j + 16 in the high one) as unsigned lanes.
inline void pack_nibbles(const std::byte* const* rows, std::size_t at, std::size_t qs_at, PackedBlock& out) {
  out.d = fp16_lanes_to_ps(load_i32x16_rows(rows, at));
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512i t[4];
  transpose_16x4(rows, qs_at, t);
  for (int j = 0; j < 4; ++j) {
    out.q[j] = _mm512_and_si512(t[j], low);                            // elements 4j..4j+3
    out.q[j + 4] = _mm512_and_si512(_mm512_srli_epi16(t[j], 4), low);  // elements 16+4j..
  }
}

struct Q4_0Pack {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static void pack(const std::byte* const* rows, std::int64_t ib, PackedBlock& out) {
    const std::size_t at = static_cast<std::size_t>(ib) * sizeof(Block);
    pack_nibbles(rows, at, at + offsetof(Block, qs), out);
  }
};

// Q5_0: the nibble with the fifth bit above it, 0..31 as stored (offset 16). Bits first..first+3
// of each lane's qh (the fifth bits of elements first..first+3) as 0x10 in bytes 0..3, added
// to the nibbles: one byte broadcast per dword, a test against each byte's own bit, a masked add.
inline __m512i with_fifth_bits(__m512i nibbles, __m512i qh, int first) {
  const __m512i byte0 = _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0x00000000);
  const __m512i bits = _mm512_shuffle_epi8(_mm512_srlv_epi32(qh, _mm512_set1_epi32(first)), byte0);
  const __mmask64 set = _mm512_test_epi8_mask(bits, _mm512_set1_epi32(0x08040201));
  return _mm512_mask_add_epi8(nibbles, set, nibbles, _mm512_set1_epi8(0x10));
}

struct Q5_0Pack {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static void pack(const std::byte* const* rows, std::int64_t ib, PackedBlock& out) {
    const std::size_t at = static_cast<std::size_t>(ib) * sizeof(Block);
    pack_nibbles(rows, at, at + offsetof(Block, qs), out);
    const __m512i qh = load_i32x16_rows(rows, at + offsetof(Block, qh));
    for (int j = 0; j < 4; ++j) {
      out.q[j] = with_fifth_bits(out.q[j], qh, 4 * j);
      out.q[j + 4] = with_fifth_bits(out.q[j + 4], qh, 16 + 4 * j);
    }
  }
};

struct Q8_0Pack {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static void pack(const std::byte* const* rows, std::int64_t ib, PackedBlock& out) {
    const std::size_t at = static_cast<std::size_t>(ib) * sizeof(Block);
    out.d = fp16_lanes_to_ps(load_i32x16_rows(rows, at));
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512i t[4];
    for (int h = 0; h < 2; ++h) {
      transpose_16x4(rows, at + offsetof(Block, qs) + 16 * h, t);
      for (int j = 0; j < 4; ++j) out.q[4 * h + j] = _mm512_xor_si512(t[j], flip);
    }
  }
};

inline int load_i32(const std::int8_t* p) {
  int v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Acts [0, NA) of the tile over blocks [0, nblk) of the packed chunk; the accumulators start from
// y (a previous chunk) unless first.
template <int NA>
void tile(const PackedBlock* pb, std::int64_t nblk, const BlockQ8_0* const* act, const float* const* da,
          const int* const* corr, float* y, std::size_t y_stride, __mmask16 mask, bool first, PrefetchStream& pf) {
  __m512 acc[NA];
  for (int a = 0; a < NA; ++a) {
    acc[a] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + a * y_stride);
  }
  for (std::int64_t ib = 0; ib < nblk; ++ib) {
    pf.advance();
    const PackedBlock& p = pb[ib];
    for (int a = 0; a < NA; ++a) {
      const std::int8_t* qs = act[a][ib].qs;
      __m512i s0 = _mm512_set1_epi32(corr[a][ib]);
      __m512i s1 = _mm512_setzero_si512();
      for (int g = 0; g < kGroups; g += 2) {
        s0 = _mm512_dpbusd_epi32(s0, p.q[g], _mm512_set1_epi32(load_i32(qs + 4 * g)));
        s1 = _mm512_dpbusd_epi32(s1, p.q[g + 1], _mm512_set1_epi32(load_i32(qs + 4 * g + 4)));
      }
      const __m512 d = _mm512_mul_ps(p.d, _mm512_set1_ps(da[a][ib]));
      acc[a] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) _mm512_mask_storeu_ps(y + a * y_stride, mask, acc[a]);
}

using TileFn = void (*)(const PackedBlock*, std::int64_t, const BlockQ8_0* const*, const float* const*,
                        const int* const*, float*, std::size_t, __mmask16, bool, PrefetchStream&);
constexpr TileFn kTiles[kMaxActs + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>,
                                         tile<5>, tile<6>, tile<7>, tile<8>};

// One activation row (decode): each strip's blocks are packed in registers and consumed at once,
// with no scratch; same per-lane fp32 chain as tile<1>. Q4_0 also prefetches the next strip into
// L2 (_MM_HINT_T1), which took 7B decode from ~5.5 to ~7.6 t/s on Zen 4; prefetching the current
// strip's 16 row streams a few blocks ahead, or the next strip into L1, measured no better.
template <typename P>
void decode_rows(std::int64_t nb, const std::byte* w, std::size_t weight_row_bytes, std::int64_t r0, std::int64_t r1,
                 const BlockQ8_0* act, const float* da, const int* corr, float* y) {
  for (std::int64_t s = r0; s < r1; s += kStrip) {
    const int n_rows = static_cast<int>(std::min<std::int64_t>(kStrip, r1 - s));
    const __mmask16 mask = static_cast<__mmask16>((1u << n_rows) - 1u);
    alignas(64) int offsets[kStrip];
    for (int r = 0; r < kStrip; ++r) offsets[r] = static_cast<int>(std::min(r, n_rows - 1) * weight_row_bytes);
    const std::byte* strip = w + static_cast<std::size_t>(s) * weight_row_bytes;
    const std::byte* rows[kStrip];
    for (int r = 0; r < kStrip; ++r) rows[r] = strip + offsets[r];
    PrefetchStream prefetch =
        rows_ahead(w, weight_row_bytes, s + kStrip, std::min<std::int64_t>(kStrip, r1 - s - kStrip), nb);
    __m512 acc = _mm512_setzero_ps();
    if constexpr (std::is_same_v<P, Q4_0Pack>) {
      // Q4_0 fast path: scales from 128-bit loads at the block start (3 unpacks, no gather), and
      // the high nibbles kept in place (x16) with the block sum shifted back exactly.
      const __m512i low = _mm512_set1_epi8(0x0f);
      const __m512i high = _mm512_set1_epi8(static_cast<char>(0xf0));
      // The next strip is one contiguous run of kStrip rows: prefetch it into L2 as one sequential
      // stream, spread evenly over this strip's blocks (kStrip * 18 bytes per block when the rows
      // are unpadded). A hint only: it changes no result. (Into L1, _MM_HINT_T0, it was slower.)
      for (std::int64_t ib = 0; ib < nb; ++ib) {
        const std::size_t at = static_cast<std::size_t>(ib) * sizeof(BlockQ4_0);
        prefetch.advance();
        __m512i z[4];
        for (int k = 0; k < 4; ++k) {
          __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k] + at)));
          v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 4] + at)), 1);
          v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 8] + at)), 2);
          z[k] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 12] + at)), 3);
        }
        const __m512i dd = _mm512_unpacklo_epi64(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpacklo_epi32(z[2], z[3]));
        const __m512 dw = fp16_lanes_to_ps(dd);
        __m512i t[4];
        transpose_16x4(rows, at + 2, t);
        const std::int8_t* qs = act[ib].qs;
        __m512i s0 = _mm512_set1_epi32(corr[ib]);
        __m512i s1 = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
          s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(t[j], low), _mm512_set1_epi32(load_i32(qs + 4 * j)));
          s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(t[j], high), _mm512_set1_epi32(load_i32(qs + 16 + 4 * j)));
        }
        const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(da[ib]));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(s0, _mm512_srai_epi32(s1, 4))), acc);
      }
      _mm512_mask_storeu_ps(y + s, mask, acc);
      continue;
    }
    // As Q4_0 above: the next strip into L2, spread over this strip's blocks (Gemma 3 270M's
    // 171 MB Q8_0 output matrix: its decode went from 26.9 to 40.0 t/s with this and the vec_dot
    // prefetches, 2 threads on the 2-core Xeon VM).
    for (std::int64_t ib = 0; ib < nb; ++ib) {
      prefetch.advance();
      PackedBlock p;
      P::pack(rows, ib, p);
      const std::int8_t* qs = act[ib].qs;
      __m512i s0 = _mm512_set1_epi32(corr[ib]);
      __m512i s1 = _mm512_setzero_si512();
      for (int g = 0; g < kGroups; g += 2) {
        s0 = _mm512_dpbusd_epi32(s0, p.q[g], _mm512_set1_epi32(load_i32(qs + 4 * g)));
        s1 = _mm512_dpbusd_epi32(s1, p.q[g + 1], _mm512_set1_epi32(load_i32(qs + 4 * g + 4)));
      }
      const __m512 d = _mm512_mul_ps(p.d, _mm512_set1_ps(da[ib]));
      acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc);
    }
    _mm512_mask_storeu_ps(y + s, mask, acc);
  }
}

struct Scratch {
  std::vector<PackedBlock> packed;
  ScratchBuffer<float> da;
  ScratchBuffer<int> corr;
};

template <typename P>
void matmul_rows(std::int64_t cols, const void* weights, std::size_t weight_row_bytes, std::int64_t r0,
                 std::int64_t r1, const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y,
                 std::size_t y_stride) {
  if (r1 <= r0 || batch <= 0) return;
  thread_local Scratch scratch;
  const std::int64_t nb = cols / kQK8_0;
  const std::size_t n_info = static_cast<std::size_t>(nb * batch);
  if (scratch.da.size() < n_info) {
    scratch.da.resize(n_info);
    scratch.corr.resize(n_info);
  }
  if (scratch.packed.size() < static_cast<std::size_t>(kChunkBlocks)) scratch.packed.resize(kChunkBlocks);

  // Per activation block: its fp32 scale and -offset * (sum of its quants).
  const __m256i ones = _mm256_set1_epi8(1);
  for (std::int64_t b = 0; b < batch; ++b) {
    const BlockQ8_0* row = act_row<BlockQ8_0>(acts, act_row_bytes, static_cast<int>(b));
    float* da = scratch.da.data() + b * nb;
    int* corr = scratch.corr.data() + b * nb;
    for (std::int64_t ib = 0; ib < nb; ++ib) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[ib].qs));
      da[ib] = h2f(row[ib].d);
      corr[ib] = -P::kOffset * hsum_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q));
    }
  }

  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    decode_rows<P>(nb, w, weight_row_bytes, r0, r1, act_row<BlockQ8_0>(acts, act_row_bytes, 0), scratch.da.data(),
                   scratch.corr.data(), y);
    return;
  }
  for (std::int64_t s = r0; s < r1; s += kStrip) {
    const int n_rows = static_cast<int>(std::min<std::int64_t>(kStrip, r1 - s));
    const __mmask16 mask = static_cast<__mmask16>((1u << n_rows) - 1u);
    // Lanes past the last row read the last row again; their results are masked off.
    alignas(64) int offsets[kStrip];
    for (int r = 0; r < kStrip; ++r) offsets[r] = static_cast<int>(std::min(r, n_rows - 1) * weight_row_bytes);
    const std::byte* strip = w + static_cast<std::size_t>(s) * weight_row_bytes;
    const std::byte* rows[kStrip];
    for (int r = 0; r < kStrip; ++r) rows[r] = strip + offsets[r];
    // The next strip streams into L2 a few lines per block of this strip's tiles.
    PrefetchStream prefetch = rows_ahead(w, weight_row_bytes, s + kStrip, std::min<std::int64_t>(kStrip, r1 - s - kStrip),
                                         nb * ((batch + kMaxActs - 1) / kMaxActs));
    for (std::int64_t c0 = 0; c0 < nb; c0 += kChunkBlocks) {
      const std::int64_t nblk = std::min(kChunkBlocks, nb - c0);
      for (std::int64_t i = 0; i < nblk; ++i) P::pack(rows, c0 + i, scratch.packed[i]);
      for (std::int64_t b = 0; b < batch; b += kMaxActs) {
        const int na = static_cast<int>(std::min<std::int64_t>(kMaxActs, batch - b));
        const BlockQ8_0* act[kMaxActs];
        const float* da[kMaxActs];
        const int* corr[kMaxActs];
        for (int a = 0; a < na; ++a) {
          act[a] = act_row<BlockQ8_0>(acts, act_row_bytes, static_cast<int>(b + a)) + c0;
          da[a] = scratch.da.data() + (b + a) * nb + c0;
          corr[a] = scratch.corr.data() + (b + a) * nb + c0;
        }
        kTiles[na](scratch.packed.data(), nblk, act, da, corr, y + b * y_stride + s, y_stride, mask, c0 == 0, prefetch);
      }
    }
  }
}

}  // namespace

void register_avx512_matmul_kernels(KernelTable& t) {
  t.matmul_rows[type_slot(GgmlType::Q4_0)] = matmul_rows<Q4_0Pack>;
  t.matmul_rows[type_slot(GgmlType::Q8_0)] = matmul_rows<Q8_0Pack>;
  t.matmul_rows[type_slot(GgmlType::Q5_0)] = matmul_rows<Q5_0Pack>;
}

}  // namespace sluice::cpu
