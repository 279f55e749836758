// AVX-512 (F, BW, VL, DQ, VNNI) kernels of the float types and the 32-element block types
// (MXFP4 among them).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c; only
// reached after the CPU check. The activation quantizers are the AVX2 ones (every AVX-512 CPU
// runs them; they are bound by the float->int conversion, not the vector width).
//
// The float types use 512-bit registers. The block types form each block's integer sum with the
// 256-bit VNNI instruction (vpdpbusd: u8 x s8, four products per int32 lane, no int16
// saturation step), one 32-element block per register: on the AMD EPYC (Zen 4) development
// machine, taking two blocks per 512-bit register measured 25-30% slower for Q4_0 and Q8_0
// (decode and prefill), since Zen 4 splits 512-bit operations and the two scales then need
// inserting into one register.
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {

inline float hsum512(__m512 x) { return _mm512_reduce_add_ps(x); }

// Signed x signed int8 dot products, four per int32 lane: |x| on the unsigned side, x's sign
// moved onto y. y must lie in [-127, 127] (activation quants do).
inline __m256i dot_i8_i8_256(__m256i x, __m256i y) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// ---- float types ------------------------------------------------------------------------------

constexpr int kFloatUnroll = 2;  // as in the AVX2 file: fixed so tiles round like single rows
constexpr int kFloatStep = 16 * kFloatUnroll;

inline __m512 load16_f32(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16_f16(const Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16_bf16(const BHalf* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline float load1_f32(const float* p) { return *p; }
inline float load1_f16(const Half* p) { return h2f(*p); }
inline float load1_bf16(const BHalf* p) { return bf16_to_fp32(*p); }

template <typename T, __m512 (*Load16)(const T*), float (*Load1)(const T*), int NA>
void float_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
                std::size_t out_stride) {
  const T* x = static_cast<const T*>(w);
  const T* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<T>(acts, act_row_bytes, a);
  __m512 acc[NA][kFloatUnroll];
  for (int a = 0; a < NA; ++a) {
    for (int u = 0; u < kFloatUnroll; ++u) acc[a][u] = _mm512_setzero_ps();
  }
  std::int64_t i = 0;
  for (; i + kFloatStep <= n; i += kFloatStep) {
    prefetch_ahead<kFloatStep * sizeof(T)>(x + i);
    for (int u = 0; u < kFloatUnroll; ++u) {
      const __m512 wx = Load16(x + i + 16 * u);
      for (int a = 0; a < NA; ++a) acc[a][u] = _mm512_fmadd_ps(wx, Load16(y[a] + i + 16 * u), acc[a][u]);
    }
  }
  for (int a = 0; a < NA; ++a) {
    float tail = 0.0f;
    for (std::int64_t j = i; j < n; ++j) tail += Load1(x + j) * Load1(y[a] + j);
    out[a * out_stride] = hsum512(_mm512_add_ps(acc[a][0], acc[a][1])) + tail;
  }
}

template <int NA>
void f32_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  float_tile<float, load16_f32, load1_f32, NA>(n, w, a, s, o, os);
}
template <int NA>
void f16_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  float_tile<Half, load16_f16, load1_f16, NA>(n, w, a, s, o, os);
}
template <int NA>
void bf16_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  float_tile<BHalf, load16_bf16, load1_bf16, NA>(n, w, a, s, o, os);
}

// ---- weight quants of one block as 32 int8 (signed) or uint8 (unsigned) ---------------------------

struct Q4_0Quants {
  using Block = BlockQ4_0;
  static __m256i one(const Block& b) { return _mm256_sub_epi8(nibbles_32(b.qs), _mm256_set1_epi8(8)); }
};

struct Q5_0Quants {
  using Block = BlockQ5_0;
  // (nibble | 0xf0) as int8 is nibble - 16: the value when the fifth bit is clear.
  static __m256i one(const Block& b) {
    const __m256i high_clear = _mm256_andnot_si256(bits_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xf0)));
    return _mm256_or_si256(nibbles_32(b.qs), high_clear);
  }
};

struct Q8_0Quants {
  using Block = BlockQ8_0;
  static __m256i one(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
};

struct MXFP4Quants {
  using Block = BlockMXFP4;
  static __m256i one(const Block& b) { return mxfp4_values_32(b.qs); }
};

struct Q4_1Quants {
  using Block = BlockQ4_1;
  static __m256i one(const Block& b) { return nibbles_32(b.qs); }
};

struct Q5_1Quants {
  using Block = BlockQ5_1;
  static __m256i one(const Block& b) {
    return _mm256_or_si256(nibbles_32(b.qs), _mm256_and_si256(bits_32(b.qh), _mm256_set1_epi8(0x10)));
  }
};

// ---- signed weights x Q8_0 ----------------------------------------------------------------------

template <typename Q, int NA>
void signed_x_q8_0_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes,
                        float* out, std::size_t out_stride) {
  using Block = typename Q::Block;
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_0* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_0>(acts, act_row_bytes, a);
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    prefetch_ahead(x + ib);
    const __m256i qx = Q::one(x[ib]);
    const float dx = block_scale(x[ib]);
    for (int a = 0; a < NA; ++a) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[a][ib].qs));
      const __m256 d = _mm256_set1_ps(dx * h2f(y[a][ib].d));
      acc[a] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_i8_256(qx, qy)), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]);
}

// Q4_0, Q5_0 and Q8_0 accumulate block by block in one fp32 chain per output, sum = fma(dx * dy,
// float(block integer sum), sum) in block order (the scalar reference's order, fused): the order
// the GEMM micro-kernel (matmul_avx512.cpp) keeps with one fp32 lane per weight row, so that the
// matmul equals these dot products bit for bit. (The matmul takes that GEMM at every batch, batch
// 1 included, so these serve as its reference. Q5_0 kept llama.cpp's 8-lane order before; Gemma
// 3 270M's greedy and logit parity tests pass with either.)
template <typename Q, int NA>
void signed_x_q8_0_chain_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes,
                              float* out, std::size_t out_stride) {
  using Block = typename Q::Block;
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_0* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_0>(acts, act_row_bytes, a);
  __m128 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm_setzero_ps();
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    prefetch_ahead(x + ib);
    const __m256i qx = Q::one(x[ib]);
    const float dx = h2f(x[ib].d);
    for (int a = 0; a < NA; ++a) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[a][ib].qs));
      const int isum = hsum_epi32(dot_i8_i8_256(qx, qy));
      const __m128 d = _mm_set_ss(dx * h2f(y[a][ib].d));
      acc[a] = _mm_fmadd_ss(d, _mm_cvtsi32_ss(_mm_setzero_ps(), isum), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = _mm_cvtss_f32(acc[a]);
}

template <int NA>
void q4_0_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_chain_tile<Q4_0Quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void q5_0_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_chain_tile<Q5_0Quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void q8_0_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_chain_tile<Q8_0Quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void mxfp4_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_tile<MXFP4Quants, NA>(n, w, a, s, o, os);
}

// ---- unsigned weights with min x Q8_1 -----------------------------------------------------------

template <typename Q, int NA>
void unsigned_x_q8_1_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes,
                          float* out, std::size_t out_stride) {
  using Block = typename Q::Block;
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_1* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_1>(acts, act_row_bytes, a);
  __m256 acc[NA];
  float min_terms[NA];
  for (int a = 0; a < NA; ++a) {
    acc[a] = _mm256_setzero_ps();
    min_terms[a] = 0.0f;
  }
  const std::int64_t nb = n / kQK8_1;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    prefetch_ahead(x + ib);
    const __m256i qx = Q::one(x[ib]);
    const float dx = h2f(x[ib].d);
    const float mx = h2f(x[ib].m);
    for (int a = 0; a < NA; ++a) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[a][ib].qs));
      const __m256 d = _mm256_set1_ps(dx * h2f(y[a][ib].d));
      const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qx, qy);
      acc[a] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[a]);
      min_terms[a] += mx * h2f(y[a][ib].s);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]) + min_terms[a];
}

template <int NA>
void q4_1_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  unsigned_x_q8_1_tile<Q4_1Quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void q5_1_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  unsigned_x_q8_1_tile<Q5_1Quants, NA>(n, w, a, s, o, os);
}

SLUICE_DEFINE_TILE_ENTRY_POINTS(f32, f32_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(f16, f16_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(bf16, bf16_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q4_0, q4_0_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q5_0, q5_0_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q8_0, q8_0_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(mxfp4, mxfp4_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q4_1, q4_1_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q5_1, q5_1_tile)

}  // namespace

// Defined in quants_k_avx512.cpp.
void register_avx512_k_kernels(KernelTable& table);
// Defined in matmul_avx512.cpp.
void register_avx512_matmul_kernels(KernelTable& table);
// Defined in matmul_k_avx512.cpp: replaces the AVX2 level's K-quant GEMMs, which would not match
// this level's vec_dots bit for bit.
void register_avx512_matmul_k_kernels(KernelTable& table);
// Defined in matmul_signed_avx512.cpp: MXFP4's GEMM.
void register_avx512_matmul_signed_kernels(KernelTable& table);

void register_avx512_kernels(KernelTable& t) {
  register_avx2_kernels(t);  // quantizers and anything not overridden below
  t.vec_dot[type_slot(GgmlType::F32)] = f32_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::F32)] = f32_multi;
  t.vec_dot[type_slot(GgmlType::F16)] = f16_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::F16)] = f16_multi;
  t.vec_dot[type_slot(GgmlType::BF16)] = bf16_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::BF16)] = bf16_multi;
  t.vec_dot[type_slot(GgmlType::Q4_0)] = q4_0_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q4_0)] = q4_0_multi;
  t.vec_dot[type_slot(GgmlType::Q5_0)] = q5_0_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q5_0)] = q5_0_multi;
  t.vec_dot[type_slot(GgmlType::Q8_0)] = q8_0_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q8_0)] = q8_0_multi;
  t.vec_dot[type_slot(GgmlType::Q4_1)] = q4_1_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q4_1)] = q4_1_multi;
  t.vec_dot[type_slot(GgmlType::Q5_1)] = q5_1_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q5_1)] = q5_1_multi;
  t.vec_dot[type_slot(GgmlType::MXFP4)] = mxfp4_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::MXFP4)] = mxfp4_multi;
  register_avx512_k_kernels(t);
  register_avx512_matmul_kernels(t);
  register_avx512_matmul_k_kernels(t);
  register_avx512_matmul_signed_kernels(t);
}

}  // namespace sluice::cpu
