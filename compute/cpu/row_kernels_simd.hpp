// The SIMD row kernels (row_kernels.hpp), written once over a vector-traits class `V` and
// instantiated by row_kernels_avx2.cpp and row_kernels_avx512.cpp, each compiled for its level.
// Include only from those files (anonymous namespace: each gets its own copy, see simd_x86.hpp).
//
// A key's score is one vector accumulator of fused multiply-adds over head_dim, reduced at the
// end; four keys run side by side for the multiply-add latency, but each key's operations are the
// same in the four-key loop and the one-key tail. A value dimension accumulates w_j * v_j[d] into
// out[d] in key order, up to eight vectors of dimensions kept in registers across all keys. The
// fp16 roundings (q, the weights, GeGLU's table index) use the F16C conversion, which rounds to
// nearest even exactly as fp32_to_fp16 does.
#pragma once

#include <algorithm>

#include "compute/cpu/check.hpp"
#include "compute/cpu/row_kernels.hpp"
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file

constexpr int kKeysTogether = 4;
constexpr int kValueVectors = 8;

template <class V, int K>
inline void score_keys(const float* q, const std::uint16_t* keys, std::int64_t key_stride, std::int32_t head_dim,
                       float* scores) {
  constexpr int W = V::kWidth;
  const int full = head_dim / W, tail = head_dim % W;
  typename V::F acc[K];
  for (int k = 0; k < K; ++k) acc[k] = V::zero();
  for (int c = 0; c < full; ++c) {
    const typename V::F qv = V::load(q + c * W);
    for (int k = 0; k < K; ++k) acc[k] = V::fma(qv, V::load_half(keys + k * key_stride + c * W), acc[k]);
  }
  if (tail != 0) {
    const typename V::F qv = V::load_tail(q + full * W, tail);
    for (int k = 0; k < K; ++k) acc[k] = V::fma(qv, V::load_half_tail(keys + k * key_stride + full * W, tail), acc[k]);
  }
  for (int k = 0; k < K; ++k) scores[k] = V::reduce(acc[k]);
}

template <class V>
void attention_scores_f16(const float* q, const std::uint16_t* keys, std::int64_t key_stride, std::int64_t n,
                          std::int32_t head_dim, float* scores) {
  constexpr int W = V::kWidth;
  alignas(64) float qh[kMaxAttentionHeadDim];
  SLUICE_CPU_CHECK(head_dim <= kMaxAttentionHeadDim);
  int d = 0;
  for (; d + W <= head_dim; d += W) V::store(qh + d, V::round_to_half(V::load(q + d)));
  if (d < head_dim) V::store_tail(qh + d, V::round_to_half(V::load_tail(q + d, head_dim - d)), head_dim - d);
  q = qh;
  std::int64_t j = 0;
  for (; j + kKeysTogether <= n; j += kKeysTogether) {
    score_keys<V, kKeysTogether>(q, keys + j * key_stride, key_stride, head_dim, scores + j);
  }
  for (; j < n; ++j) score_keys<V, 1>(q, keys + j * key_stride, key_stride, head_dim, scores + j);
}

// Dimensions [0, width) of out, C vectors (the last one `width - (C - 1) * W` wide).
template <class V, int C>
void accumulate_values(const float* weights, const std::uint16_t* values, std::int64_t value_stride, std::int64_t n,
                       int width, float* out) {
  constexpr int W = V::kWidth;
  const int last = width - (C - 1) * W;  // 1..W
  typename V::F acc[C];
  for (int c = 0; c < C - 1; ++c) acc[c] = V::load(out + c * W);
  acc[C - 1] = last == W ? V::load(out + (C - 1) * W) : V::load_tail(out + (C - 1) * W, last);
  for (std::int64_t j = 0; j < n; ++j) {
    const typename V::F w = V::set1_rounded_to_half(weights[j]);
    const std::uint16_t* v = values + j * value_stride;
    for (int c = 0; c < C - 1; ++c) acc[c] = V::fma(w, V::load_half(v + c * W), acc[c]);
    const typename V::F tail = last == W ? V::load_half(v + (C - 1) * W) : V::load_half_tail(v + (C - 1) * W, last);
    acc[C - 1] = V::fma(w, tail, acc[C - 1]);
  }
  for (int c = 0; c < C - 1; ++c) V::store(out + c * W, acc[c]);
  if (last == W) {
    V::store(out + (C - 1) * W, acc[C - 1]);
  } else {
    V::store_tail(out + (C - 1) * W, acc[C - 1], last);
  }
}

template <class V>
void attention_values_f16(const float* weights, const std::uint16_t* values, std::int64_t value_stride,
                          std::int64_t n, std::int32_t head_dim, float* out) {
  constexpr int W = V::kWidth;
  for (int d0 = 0; d0 < head_dim; d0 += kValueVectors * W) {
    const int width = std::min(head_dim - d0, kValueVectors * W);
    const std::uint16_t* v = values + d0;
    switch ((width + W - 1) / W) {
      case 1: accumulate_values<V, 1>(weights, v, value_stride, n, width, out + d0); break;
      case 2: accumulate_values<V, 2>(weights, v, value_stride, n, width, out + d0); break;
      case 3: accumulate_values<V, 3>(weights, v, value_stride, n, width, out + d0); break;
      case 4: accumulate_values<V, 4>(weights, v, value_stride, n, width, out + d0); break;
      case 5: accumulate_values<V, 5>(weights, v, value_stride, n, width, out + d0); break;
      case 6: accumulate_values<V, 6>(weights, v, value_stride, n, width, out + d0); break;
      case 7: accumulate_values<V, 7>(weights, v, value_stride, n, width, out + d0); break;
      default: accumulate_values<V, 8>(weights, v, value_stride, n, width, out + d0); break;
    }
  }
}

template <class V>
void geglu(const float* gate, const float* up, float* out, std::int64_t n, const std::uint16_t* table) {
  constexpr int W = V::kWidth;
  std::int64_t i = 0;
  for (; i + W <= n; i += W) V::store(out + i, V::geglu(V::load(gate + i), V::load(up + i), table));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    V::store_tail(out + i, V::geglu(V::load_tail(gate + i, rest), V::load_tail(up + i, rest), table), rest);
  }
}

template <class V>
void swiglu(const float* gate, const float* up, float* out, std::int64_t n) {
  constexpr int W = V::kWidth;
  std::int64_t i = 0;
  for (; i + W <= n; i += W) V::store(out + i, V::mul(V::silu(V::load(gate + i)), V::load(up + i)));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    V::store_tail(out + i, V::mul(V::silu(V::load_tail(gate + i, rest)), V::load_tail(up + i, rest)), rest);
  }
}

// A level's table entries, from its vector traits.
template <class V>
void fill_row_kernels(KernelTable& t) {
  t.attention_scores_f16 = attention_scores_f16<V>;
  t.attention_values_f16 = attention_values_f16<V>;
  t.geglu = geglu<V>;
  t.swiglu = swiglu<V>;
}

}  // namespace
}  // namespace sluice::cpu
