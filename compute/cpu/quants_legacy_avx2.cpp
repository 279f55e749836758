// AVX2 (+FMA, F16C) kernels of the float types and the 32-element block types (MXFP4 among them),
// and the AVX2
// activation quantizers (F16, BF16, Q8_0, Q8_1). Compiled with -mavx2 -mfma -mf16c; only reached
// through the kernel table after the CPU check (kernels.cpp).
//
// Dot products follow ggml's AVX2 structure: integer sums per block (exact), then one fused
// multiply-add of the block's float scale into 8 float lanes. They differ from the scalar
// reference only in the order of the float additions. Each is a template over the number of
// activation rows NA so that a weight block is decoded once for a tile of activations.
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {

// ---- float types ------------------------------------------------------------------------------

// Two 8-lane accumulators per activation row: enough independent FMAs to stay memory-bound,
// few enough that four activation rows fit the 16 ymm registers. The same for every NA, so the
// tile and the single-row kernel round identically.
constexpr int kFloatUnroll = 2;
constexpr int kFloatStep = 8 * kFloatUnroll;

inline __m256 load8_f32(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8_f16(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8_bf16(const BHalf* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float load1(const float* p) { return *p; }

template <typename T, __m256 (*Load8)(const T*), float (*Load1)(const T*), int NA>
void float_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
                std::size_t out_stride) {
  const T* x = static_cast<const T*>(w);
  const T* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<T>(acts, act_row_bytes, a);
  __m256 acc[NA][kFloatUnroll];
  for (int a = 0; a < NA; ++a) {
    for (int u = 0; u < kFloatUnroll; ++u) acc[a][u] = _mm256_setzero_ps();
  }
  std::int64_t i = 0;
  for (; i + kFloatStep <= n; i += kFloatStep) {
    prefetch_ahead<kFloatStep * sizeof(T)>(x + i);
    for (int u = 0; u < kFloatUnroll; ++u) {
      const __m256 wx = Load8(x + i + 8 * u);
      for (int a = 0; a < NA; ++a) acc[a][u] = _mm256_fmadd_ps(wx, Load8(y[a] + i + 8 * u), acc[a][u]);
    }
  }
  for (int a = 0; a < NA; ++a) {
    float tail = 0.0f;
    for (std::int64_t j = i; j < n; ++j) tail += Load1(x + j) * Load1(y[a] + j);
    out[a * out_stride] = hsum_ps(_mm256_add_ps(acc[a][0], acc[a][1])) + tail;
  }
}

inline float load1_f16(const Half* p) { return h2f(*p); }
inline float load1_bf16(const BHalf* p) { return bf16_to_fp32(*p); }

template <int NA>
void f32_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  float_tile<float, load8_f32, load1, NA>(n, w, a, s, o, os);
}
template <int NA>
void f16_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  float_tile<Half, load8_f16, load1_f16, NA>(n, w, a, s, o, os);
}
template <int NA>
void bf16_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  float_tile<BHalf, load8_bf16, load1_bf16, NA>(n, w, a, s, o, os);
}

// ---- Q4_0, Q5_0, Q8_0 (x Q8_0) ----------------------------------------------------------------

// Signed quants of one weight block as 32 int8.
inline __m256i q4_0_quants(const BlockQ4_0& b) { return _mm256_sub_epi8(nibbles_32(b.qs), _mm256_set1_epi8(8)); }
inline __m256i q5_0_quants(const BlockQ5_0& b) {
  // (nibble | 0xf0) read as int8 is nibble - 16: exactly the value when the fifth bit is clear.
  const __m256i high_clear = _mm256_andnot_si256(bits_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xf0)));
  return _mm256_or_si256(nibbles_32(b.qs), high_clear);
}
inline __m256i q8_0_quants(const BlockQ8_0& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
inline __m256i mxfp4_quants(const BlockMXFP4& b) { return mxfp4_values_32(b.qs); }

template <typename Block, __m256i (*Quants)(const Block&), int NA>
void signed_x_q8_0_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes,
                        float* out, std::size_t out_stride) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_0* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_0>(acts, act_row_bytes, a);
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    prefetch_ahead(x + ib);
    const __m256i qx = Quants(x[ib]);
    const float dx = block_scale(x[ib]);
    for (int a = 0; a < NA; ++a) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[a][ib].qs));
      const __m256 d = _mm256_set1_ps(dx * h2f(y[a][ib].d));
      acc[a] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_i8(qx, qy)), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]);
}

template <int NA>
void q4_0_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_tile<BlockQ4_0, q4_0_quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void q5_0_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_tile<BlockQ5_0, q5_0_quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void q8_0_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_tile<BlockQ8_0, q8_0_quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void mxfp4_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  signed_x_q8_0_tile<BlockMXFP4, mxfp4_quants, NA>(n, w, a, s, o, os);
}

// ---- Q4_1, Q5_1 (x Q8_1) ------------------------------------------------------------------------

inline __m256i q4_1_quants(const BlockQ4_1& b) { return nibbles_32(b.qs); }
inline __m256i q5_1_quants(const BlockQ5_1& b) {
  const __m256i high = _mm256_and_si256(bits_32(b.qh), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(nibbles_32(b.qs), high);
}

template <typename Block, __m256i (*Quants)(const Block&), int NA>
void unsigned_x_q8_1_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes,
                          float* out, std::size_t out_stride) {
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
    const __m256i qx = Quants(x[ib]);
    const float dx = h2f(x[ib].d);
    const float mx = h2f(x[ib].m);
    for (int a = 0; a < NA; ++a) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[a][ib].qs));
      const __m256 d = _mm256_set1_ps(dx * h2f(y[a][ib].d));
      acc[a] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8_i8(qx, qy)), acc[a]);
      min_terms[a] += mx * h2f(y[a][ib].s);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]) + min_terms[a];
}

template <int NA>
void q4_1_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  unsigned_x_q8_1_tile<BlockQ4_1, q4_1_quants, NA>(n, w, a, s, o, os);
}
template <int NA>
void q5_1_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  unsigned_x_q8_1_tile<BlockQ5_1, q5_1_quants, NA>(n, w, a, s, o, os);
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

// ---- activation quantizers ----------------------------------------------------------------------

inline float block_amax_32(const float* x) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_and_ps(_mm256_loadu_ps(x), abs_mask);
  for (int k = 1; k < 4; ++k) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 8 * k), abs_mask));
  __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
  r = _mm_max_ps(r, _mm_movehl_ps(r, r));
  r = _mm_max_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// One Q8_0/Q8_1 block: quants into qs, returns their sum. Same arithmetic as the scalar
// quantize_q8_0_act (ggml-cpu's x86 quantize_row_q8_0): id = 127 / amax, q = x * id rounded to
// nearest even.
inline int quantize_block_q8(const float* x, float amax, std::int8_t* qs) {
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  const __m256 vid = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_32_i8(q[0], q[1], q[2], q[3]));
  return hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

void quantize_q8_0(const float* x, void* vy, std::int64_t n) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(vy);
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK8_0) {
    const float amax = block_amax_32(x);
    y[i].d = static_cast<Half>(_cvtss_sh(amax / 127.f, _MM_FROUND_TO_NEAREST_INT));
    quantize_block_q8(x, amax, y[i].qs);
  }
}

void quantize_q8_1(const float* x, void* vy, std::int64_t n) {
  BlockQ8_1* y = static_cast<BlockQ8_1*>(vy);
  const std::int64_t nb = n / kQK8_1;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK8_1) {
    const float amax = block_amax_32(x);
    const float d = amax / 127.f;
    y[i].d = static_cast<Half>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    const int sum = quantize_block_q8(x, amax, y[i].qs);
    y[i].s = static_cast<Half>(_cvtss_sh(d * static_cast<float>(sum), _MM_FROUND_TO_NEAREST_INT));
  }
}

// Round-to-nearest-even fp16 (VCVTPS2PH); equal to fp32_to_fp16 for every non-NaN input.
void quantize_f16(const float* x, void* vy, std::int64_t n) {
  Half* y = static_cast<Half*>(vy);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) y[i] = static_cast<Half>(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

// fp32_to_bf16 (blocks.hpp) on 8 lanes: the same integer rounding, NaNs forced quiet.
void quantize_bf16(const float* x, void* vy, std::int64_t n) {
  BHalf* y = static_cast<BHalf*>(vy);
  std::int64_t i = 0;
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf_bits = _mm256_set1_epi32(0x7f800000);
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
    const __m256i quiet_nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf_bits);
    const __m256i h = _mm256_blendv_epi8(rounded, quiet_nan, is_nan);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}

}  // namespace

// Defined in quants_k_avx2.cpp.
void register_avx2_k_kernels(KernelTable& table);
// Defined in matmul_k_avx2.cpp.
void register_avx2_matmul_k_kernels(KernelTable& table);
// Defined in matmul_signed_avx2.cpp: MXFP4's GEMM.
void register_avx2_matmul_signed_kernels(KernelTable& table);

void register_avx2_kernels(KernelTable& t) {
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
  t.quantize_activation[type_slot(GgmlType::F16)] = quantize_f16;
  t.quantize_activation[type_slot(GgmlType::BF16)] = quantize_bf16;
  t.quantize_activation[type_slot(GgmlType::Q8_0)] = quantize_q8_0;
  t.quantize_activation[type_slot(GgmlType::Q8_1)] = quantize_q8_1;
  register_avx2_k_kernels(t);
  register_avx2_matmul_k_kernels(t);
  register_avx2_matmul_signed_kernels(t);
  register_avx2_weight_quantizers(t);
}

}  // namespace sluice::cpu
