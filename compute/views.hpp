// What a compute backend reads and writes besides float rows: a weight tensor (WeightView) and
// one layer's KV cache of one sequence (KvLayerView). These live above any one backend so that
// the KV cache (cache/), the weight binders (engine/weights.hpp) and every backend (compute/cpu,
// compute/cuda) share them without depending on each other's kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "model/ggml_types.hpp"

namespace sluice::compute {

// A tensor's bytes as they lie in the model file (ggml blocks of `type`), wherever they live: a
// memory-mapped GGUF, extents read whole from a pack, or a ring slot the prefetcher filled. The
// view does not own the bytes.
struct WeightView {
  GgmlType type = GgmlType::F32;
  std::vector<std::int64_t> dims;  // ggml order: dims[0] = row length (input features)
  const std::byte* data = nullptr;
  std::uint64_t bytes = 0;
  std::int64_t rows() const { return dims.size() > 1 ? dims[1] : 1; }
  std::int64_t cols() const { return dims.empty() ? 0 : dims[0]; }
  std::int64_t elements() const {
    std::int64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
  std::span<const std::byte> span() const { return {data, std::size_t(bytes)}; }
  explicit operator bool() const { return data != nullptr; }
};

// How the KV cache stores a position's K (and V) row of n_head_kv * head_dim values: fp16 (the
// default, as llama.cpp's; IEEE half, round to nearest even) or q8_0 blocks of 32 (half the
// bytes; the row length must be a multiple of 32).
enum class KvType : std::uint8_t { f16, q8_0 };
const char* to_string(KvType type);

// ggml's block_q8_0: one fp16 scale and 32 int8 quants (compute/cpu static_asserts its struct
// against these).
inline constexpr std::int64_t kKvQ8BlockFloats = 32;
inline constexpr std::int64_t kKvQ8BlockBytes = 34;

// Bytes one position's K (or V) row takes. Throws std::invalid_argument for q8_0 when
// row_floats is not a multiple of 32.
std::int64_t kv_row_bytes(KvType type, std::int64_t row_floats);

// One layer's KV cache of one sequence: [ctx][row_bytes] for K and for V, in the memory of the
// backend that reads it (host memory for compute/cpu).
// A ring (a sliding-window layer's cache, cache/kv_cache.hpp) keeps position p in row p % ctx.
struct KvLayerView {
  std::byte* k = nullptr;
  std::byte* v = nullptr;
  std::int64_t ctx = 0;  // rows
  KvType type = KvType::f16;
  std::int64_t row_bytes = 0;  // kv_row_bytes(type, n_head_kv * head_dim)
  bool ring = false;
};

// The row that holds position `pos`.
inline std::int64_t kv_row(const KvLayerView& kv, std::int64_t pos) { return kv.ring ? pos % kv.ctx : pos; }

}  // namespace sluice::compute

// Transition: the cpu:: spellings these names had when they lived in compute/cpu/ops.hpp, kept
// for tools/ and tests that still write them. New code says compute::.
namespace sluice::cpu {
using compute::KvLayerView;
using compute::KvType;
using compute::kv_row_bytes;
using compute::to_string;
}  // namespace sluice::cpu
