// ggml tensor types as they appear in GGUF files: ids (GGML_TYPE_*), block sizes and bytes per
// block. Shared by the GGUF reader (to validate tensor sizes), the pack converter, and the
// compute kernels (compute/cpu), which pin the block layouts themselves with static_asserts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice {

enum class GgmlType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
  MXFP4 = 39,  // OCP microscaling FP4 (gpt-oss experts): E8M0 scale + 32 E2M1 codes
};

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;        // "Q4_K", as llama.cpp prints it
  std::uint32_t block_elements;  // elements per block (1 for float types)
  std::uint32_t block_bytes;     // bytes per block
};

// Traits for the types sluice knows; nullopt for ids it does not (other ggml types exist:
// IQ*, TQ*, ...; a GGUF using them is rejected with the type named).
std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t type_id);
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes of a row of `elements` elements; requires elements % block_elements == 0.
constexpr std::uint64_t ggml_row_bytes(const GgmlTypeTraits& t, std::uint64_t elements) {
  return elements / t.block_elements * t.block_bytes;
}

// The K-quant super-block size (QK_K in ggml).
inline constexpr std::uint32_t kQK_K = 256;

}  // namespace sluice
