// The scalar row kernels (row_kernels.hpp): the reference the SIMD levels are tested against, and
// what a CPU without AVX2 runs.
#include <cmath>
#include <vector>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/check.hpp"
#include "compute/cpu/row_kernels.hpp"

namespace sluice::cpu::scalar {
namespace {
// fp16 -> fp32 for every half: a 256 KiB table beats the branchy exact conversion in these loops
// (the same values: built from fp16_to_fp32).
const float* half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (std::uint32_t h = 0; h < 65536; ++h) t[h] = fp16_to_fp32(static_cast<std::uint16_t>(h));
    return t;
  }();
  return table.data();
}
}  // namespace

void attention_scores_f16(const float* q, const std::uint16_t* keys, std::int64_t key_stride, std::int64_t n,
                          std::int32_t head_dim, float* scores) {
  const float* half = half_table();
  SLUICE_CPU_CHECK(head_dim <= kMaxAttentionHeadDim);
  float qh[kMaxAttentionHeadDim];
  for (std::int32_t d = 0; d < head_dim; ++d) qh[d] = half[fp32_to_fp16(q[d])];
  for (std::int64_t j = 0; j < n; ++j) {
    const std::uint16_t* k = keys + j * key_stride;
    float dot = 0.0f;
    for (std::int32_t d = 0; d < head_dim; ++d) dot += qh[d] * half[k[d]];
    scores[j] = dot;
  }
}

void attention_values_f16(const float* weights, const std::uint16_t* values, std::int64_t value_stride,
                          std::int64_t n, std::int32_t head_dim, float* out) {
  const float* half = half_table();
  for (std::int64_t j = 0; j < n; ++j) {
    const std::uint16_t* v = values + j * value_stride;
    const float w = half[fp32_to_fp16(weights[j])];
    for (std::int32_t d = 0; d < head_dim; ++d) out[d] += w * half[v[d]];
  }
}

void geglu(const float* gate, const float* up, float* out, std::int64_t n, const std::uint16_t* table) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    if (x <= -kGeluTableLimit) {
      out[i] = 0.0f;
    } else if (x >= kGeluTableLimit) {
      out[i] = x * up[i];
    } else {
      out[i] = fp16_to_fp32(table[fp32_to_fp16(x)]) * up[i];
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    out[i] = x / (1.0f + std::exp(-x)) * up[i];
  }
}

}  // namespace sluice::cpu::scalar
