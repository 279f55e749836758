// Type dispatch of the row-level API (quants.hpp) onto the scalar reference kernels.
#include "compute/cpu/quants.hpp"

#include <cstring>

#include "compute/cpu/check.hpp"

namespace sluice::cpu {
namespace {

using DequantizeFn = void (*)(const void*, float*, std::int64_t);
using QuantizeRowFn = void (*)(const float*, void*, std::int64_t);
using DotFn = float (*)(std::int64_t, const void*, const void*);

void dequantize_f32(const void* x, float* y, std::int64_t n) {
  std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(float));
}
void dequantize_f16(const void* x, float* y, std::int64_t n) {
  const Half* h = static_cast<const Half*>(x);
  for (std::int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
}
void dequantize_bf16(const void* x, float* y, std::int64_t n) {
  const BHalf* h = static_cast<const BHalf*>(x);
  for (std::int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
}
void quantize_f32(const float* x, void* y, std::int64_t n) {
  std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(float));
}

struct TypeKernels {
  GgmlType type;
  bool weight;            // a type sluice computes with as weights
  GgmlType dot_type;      // vec_dot_type (weights only)
  DequantizeFn dequantize;
  QuantizeRowFn quantize;  // reference quantizer (weights) or activation quantizer (Q8_*)
  DotFn dot;
};

constexpr TypeKernels kTypes[] = {
    {GgmlType::F32, true, GgmlType::F32, dequantize_f32, quantize_f32, scalar::vec_dot_f32},
    {GgmlType::F16, true, GgmlType::F16, dequantize_f16, scalar::quantize_f16, scalar::vec_dot_f16},
    {GgmlType::BF16, true, GgmlType::BF16, dequantize_bf16, scalar::quantize_bf16, scalar::vec_dot_bf16},
    {GgmlType::Q4_0, true, GgmlType::Q8_0, scalar::dequantize_q4_0, scalar::quantize_q4_0, scalar::vec_dot_q4_0},
    {GgmlType::Q4_1, true, GgmlType::Q8_1, scalar::dequantize_q4_1, scalar::quantize_q4_1, scalar::vec_dot_q4_1},
    {GgmlType::Q5_0, true, GgmlType::Q8_0, scalar::dequantize_q5_0, scalar::quantize_q5_0, scalar::vec_dot_q5_0},
    {GgmlType::Q5_1, true, GgmlType::Q8_1, scalar::dequantize_q5_1, scalar::quantize_q5_1, scalar::vec_dot_q5_1},
    {GgmlType::Q8_0, true, GgmlType::Q8_0, scalar::dequantize_q8_0, scalar::quantize_q8_0, scalar::vec_dot_q8_0},
    {GgmlType::Q8_1, false, GgmlType::Q8_1, scalar::dequantize_q8_1, scalar::quantize_q8_1, nullptr},
    {GgmlType::Q2_K, true, GgmlType::Q8_K, scalar::dequantize_q2_k, scalar::quantize_q2_k, scalar::vec_dot_q2_k},
    {GgmlType::Q3_K, true, GgmlType::Q8_K, scalar::dequantize_q3_k, scalar::quantize_q3_k, scalar::vec_dot_q3_k},
    {GgmlType::Q4_K, true, GgmlType::Q8_K, scalar::dequantize_q4_k, scalar::quantize_q4_k, scalar::vec_dot_q4_k},
    {GgmlType::Q5_K, true, GgmlType::Q8_K, scalar::dequantize_q5_k, scalar::quantize_q5_k, scalar::vec_dot_q5_k},
    {GgmlType::Q6_K, true, GgmlType::Q8_K, scalar::dequantize_q6_k, scalar::quantize_q6_k, scalar::vec_dot_q6_k},
    {GgmlType::Q8_K, false, GgmlType::Q8_K, scalar::dequantize_q8_k, scalar::quantize_q8_k, nullptr},
    {GgmlType::MXFP4, true, GgmlType::Q8_0, scalar::dequantize_mxfp4, scalar::quantize_mxfp4, scalar::vec_dot_mxfp4},
};

const TypeKernels* find(GgmlType type) {
  for (const TypeKernels& k : kTypes) {
    if (k.type == type) return &k;
  }
  return nullptr;
}

const TypeKernels& find_checked(GgmlType type) {
  const TypeKernels* k = find(type);
  SLUICE_CPU_CHECK(k != nullptr);
  return *k;
}

void check_length(GgmlType type, std::int64_t n) {
  SLUICE_CPU_CHECK(n >= 0);
  SLUICE_CPU_CHECK(n % block_elements(type) == 0);
}

bool is_activation_type(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16 || t == GgmlType::Q8_0 ||
         t == GgmlType::Q8_1 || t == GgmlType::Q8_K;
}

}  // namespace

bool is_weight_type(GgmlType type) {
  const TypeKernels* k = find(type);
  return k != nullptr && k->weight;
}

std::uint32_t block_elements(GgmlType type) {
  const BlockGeometry* g = block_geometry(type);
  SLUICE_CPU_CHECK(g != nullptr);
  return g->block_elements;
}

std::size_t row_bytes(GgmlType type, std::int64_t n) {
  const BlockGeometry* g = block_geometry(type);
  SLUICE_CPU_CHECK(g != nullptr);
  SLUICE_CPU_CHECK(n >= 0 && n % g->block_elements == 0);
  return row_bytes(*g, n);
}

GgmlType vec_dot_type(GgmlType weight_type) {
  const TypeKernels& k = find_checked(weight_type);
  SLUICE_CPU_CHECK(k.weight);
  return k.dot_type;
}

void dequantize_row(GgmlType type, const void* src, float* dst, std::int64_t n) {
  check_length(type, n);
  find_checked(type).dequantize(src, dst, n);
}

void quantize_row_reference(GgmlType type, const float* src, void* dst, std::int64_t n) {
  const TypeKernels& k = find_checked(type);
  SLUICE_CPU_CHECK(k.weight);
  check_length(type, n);
  k.quantize(src, dst, n);
}

void quantize_activation_row(GgmlType act_type, const float* src, void* dst, std::int64_t n) {
  SLUICE_CPU_CHECK(is_activation_type(act_type));
  check_length(act_type, n);
  if (act_type == GgmlType::Q8_0) return scalar::quantize_q8_0_act(src, dst, n);
  if (act_type == GgmlType::Q8_1) return scalar::quantize_q8_1_act(src, dst, n);
  find_checked(act_type).quantize(src, dst, n);
}

float vec_dot(GgmlType type, std::int64_t n, const void* weights_row, const void* activation_row) {
  const TypeKernels& k = find_checked(type);
  SLUICE_CPU_CHECK(k.weight);
  check_length(type, n);
  check_length(k.dot_type, n);
  return k.dot(n, weights_row, activation_row);
}

}  // namespace sluice::cpu
