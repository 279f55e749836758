#include "compute/views.hpp"

#include <stdexcept>
#include <string>

namespace sluice::compute {

const char* to_string(KvType type) { return type == KvType::f16 ? "f16" : "q8_0"; }

std::int64_t kv_row_bytes(KvType type, std::int64_t row_floats) {
  if (type == KvType::f16) return row_floats * std::int64_t(sizeof(std::uint16_t));
  if (row_floats % kKvQ8BlockFloats != 0) {
    throw std::invalid_argument(
        "a q8_0 KV cache needs n_head_kv * head_dim to be a multiple of 32 (this model's is " + std::to_string(row_floats) + ")");
  }
  return row_floats / kKvQ8BlockFloats * kKvQ8BlockBytes;
}

}  // namespace sluice::compute
