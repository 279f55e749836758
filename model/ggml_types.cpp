#include "model/ggml_types.hpp"

#include <array>

namespace sluice {
namespace {
// Bytes per block follow ggml's block structs (ggml-common.h); compute/cpu static_asserts the
// same numbers against its own struct definitions.
constexpr std::array<GgmlTypeTraits, 16> kTraits = {{
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::Q4_0, "Q4_0", 32, 2 + 16},
    {GgmlType::Q4_1, "Q4_1", 32, 2 + 2 + 16},
    {GgmlType::Q5_0, "Q5_0", 32, 2 + 4 + 16},
    {GgmlType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16},
    {GgmlType::Q8_0, "Q8_0", 32, 2 + 32},
    {GgmlType::Q8_1, "Q8_1", 32, 2 + 2 + 32},
    {GgmlType::Q2_K, "Q2_K", 256, 256 / 16 + 256 / 4 + 2 + 2},
    {GgmlType::Q3_K, "Q3_K", 256, 256 / 8 + 256 / 4 + 12 + 2},
    {GgmlType::Q4_K, "Q4_K", 256, 2 + 2 + 12 + 256 / 2},
    {GgmlType::Q5_K, "Q5_K", 256, 2 + 2 + 12 + 256 / 8 + 256 / 2},
    {GgmlType::Q6_K, "Q6_K", 256, 256 / 2 + 256 / 4 + 256 / 16 + 2},
    {GgmlType::Q8_K, "Q8_K", 256, 4 + 256 + 256 / 16 * 2},
    {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::MXFP4, "MXFP4", 32, 1 + 16},
}};
}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t type_id) {
  for (const auto& t : kTraits) {
    if (static_cast<std::uint32_t>(t.type) == type_id) return t;
  }
  return std::nullopt;
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const auto& t : kTraits) {
    if (t.name == name) return t.type;
  }
  return std::nullopt;
}

}  // namespace sluice
