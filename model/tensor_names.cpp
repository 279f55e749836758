// The block-number parser of tensor_names.hpp.
#include "model/tensor_names.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace sluice::names {

std::string block_name(std::int64_t il) { return fmt::format("blk.{}", il); }

std::string block_tensor(std::int64_t il, std::string_view tensor) { return fmt::format("blk.{}.{}", il, tensor); }

bool is_block_name(std::string_view name) { return name.rfind(kBlockPrefix, 0) == 0; }

std::optional<std::int64_t> block_index_of(std::string_view name) {
  if (!is_block_name(name)) return std::nullopt;
  const std::string_view rest = name.substr(kBlockPrefix.size());
  const std::size_t end = std::min(rest.find('.'), rest.size());
  if (end == 0 || end > kMaxBlockIndexDigits) return std::nullopt;
  std::int64_t index = 0;
  for (std::size_t i = 0; i < end; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return std::nullopt;
    index = index * 10 + (rest[i] - '0');
  }
  return index;
}

std::optional<std::int64_t> block_extent_index(std::string_view name) {
  if (name.find('.', kBlockPrefix.size()) != std::string_view::npos) return std::nullopt;
  return block_index_of(name);
}

std::optional<std::int64_t> block_extent_index(std::string_view name, std::int64_t n_layer) {
  const auto il = block_extent_index(name);
  if (!il || *il >= n_layer) return std::nullopt;
  return il;
}

std::string experts_extent_name(std::int64_t il) { return block_name(il) + std::string(kExpertsSuffix); }

std::optional<std::int64_t> experts_extent_index(std::string_view name) {
  if (!name.ends_with(kExpertsSuffix)) return std::nullopt;
  return block_extent_index(name.substr(0, name.size() - kExpertsSuffix.size()));
}

bool is_expert_matrix(std::string_view tensor_name) {
  return tensor_name.ends_with(kFfnGateExps) || tensor_name.ends_with(kFfnUpExps) || tensor_name.ends_with(kFfnDownExps);
}

}  // namespace sluice::names
