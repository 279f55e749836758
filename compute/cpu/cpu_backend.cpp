#include "compute/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "compute/cpu/check.hpp"
#include "compute/cpu/kernels.hpp"
#include "compute/cpu/matmul.hpp"
#include "compute/cpu/ops.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu {

namespace {
compute::BackendCapabilities cpu_capabilities() {
  compute::BackendCapabilities caps;
  caps.memory = compute::MemorySpace::host;
  for (int id = 0; id < kTypeSlots; ++id) {
    const auto type = static_cast<GgmlType>(id);
    if (is_weight_type(type)) caps.weight_types.push_back(type);
  }
  caps.kv_types = {compute::KvType::f16, compute::KvType::q8_0};
  return caps;
}
}  // namespace

CpuBackend::CpuBackend(compute::Threading threading)
    : own_executor_(std::make_unique<compute::Executor>(threading.threads)),
      executor_(own_executor_.get()),
      capabilities_(cpu_capabilities()) {}

CpuBackend::CpuBackend(compute::Executor& executor) : executor_(&executor), capabilities_(cpu_capabilities()) {}

void CpuBackend::matmul(const compute::WeightView& w, const float* x, std::int64_t batch, float* y) {
  executor_->run([&] { cpu::matmul(w.type, w.data, w.rows(), w.cols(), x, batch, y); });
}

void CpuBackend::dequantize(const compute::WeightView& w, float* out) { dequantize_row(w.type, w.data, out, w.elements()); }

void CpuBackend::get_rows(const compute::WeightView& w, std::span<const std::int32_t> ids, float* out) {
  const std::int64_t cols = w.cols();
  const std::size_t bytes_per_row = row_bytes(w.type, cols);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    SLUICE_CPU_CHECK(ids[i] >= 0 && ids[i] < w.rows());
    dequantize_row(w.type, w.data + bytes_per_row * std::size_t(ids[i]), out + std::int64_t(i) * cols, cols);
  }
}

namespace {
// Rows (or chunks) of the element-wise and per-row ops go to both cores once a call holds this
// many floats: below it a fork and join costs more than the work (one decode row of a small
// model). A batch of 16 Gemma 3 270M rows spent ~9% of its wall in these ops on one core while
// the other waited for the next matmul.
constexpr std::int64_t kParallelFloats = 8192;
// Chunks of element-wise ops: a multiple of every SIMD width, so each element takes the same
// (vector or scalar-tail) path as in one call over all of them.
constexpr std::int64_t kElementChunk = 4096;
}  // namespace

template <typename Row>
void CpuBackend::by_rows(std::int64_t rows, std::int64_t row_floats, Row&& row) {
  if (rows < 2 || rows * row_floats < kParallelFloats) {
    for (std::int64_t r = 0; r < rows; ++r) row(r);
    return;
  }
  executor_->parallel_for(0, rows, [&](std::int64_t r) {
    compute::note_task();
    row(r);
  });
}

void CpuBackend::rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t n, float eps) {
  by_rows(rows, n, [&](std::int64_t r) { cpu::rms_norm(x + r * n, weight, out + r * n, n, eps); });
}

void CpuBackend::rope(float* x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos0,
                      const compute::RopeParams& params) {
  const std::int64_t width = std::int64_t(n_heads) * head_dim;
  by_rows(rows, width, [&](std::int64_t r) { cpu::rope(x + r * width, n_heads, head_dim, pos0 + r, params); });
}

template <typename Op>
void CpuBackend::elementwise(std::int64_t n, Op&& op) {
  if (n < kParallelFloats) {
    op(0, n);
    return;
  }
  executor_->parallel_for(0, (n + kElementChunk - 1) / kElementChunk, [&](std::int64_t c) {
    compute::note_task();
    const std::int64_t at = c * kElementChunk;
    op(at, std::min(kElementChunk, n - at));
  });
}

void CpuBackend::softmax(float* x, std::int64_t rows, std::int64_t n) {
  for (std::int64_t r = 0; r < rows; ++r) cpu::softmax(x + r * n, n);
}

void CpuBackend::swiglu(const float* gate, const float* up, float* out, std::int64_t n) {
  elementwise(n, [&](std::int64_t at, std::int64_t count) { cpu::swiglu(gate + at, up + at, out + at, count); });
}

void CpuBackend::geglu(const float* gate, const float* up, float* out, std::int64_t n) {
  elementwise(n, [&](std::int64_t at, std::int64_t count) { cpu::geglu(gate + at, up + at, out + at, count); });
}

void CpuBackend::swiglu_oai(const float* gate, const float* up, float* out, std::int64_t n,
                            const compute::SwigluOaiParams& params) {
  cpu::swiglu_oai(gate, up, out, n, params);
}

void CpuBackend::add(float* x, const float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void CpuBackend::add_rows(float* x, const float* bias, std::int64_t rows, std::int64_t n) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < n; ++i) x[r * n + i] += bias[i];
}

void CpuBackend::scale(float* x, std::int64_t n, float s) {
  for (std::int64_t i = 0; i < n; ++i) x[i] *= s;
}

void CpuBackend::softcap(float* x, std::int64_t n, float cap) {
  // llama.cpp's order: scale by 1/cap, tanh, scale by cap (x * (1/cap) rounds unlike x / cap).
  const float inv_cap = 1.0f / cap;
  for (std::int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv_cap);
}

void CpuBackend::moe_route(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k, bool normalize,
                           std::int32_t* ids, float* weights) {
  SLUICE_CPU_CHECK(n_expert >= 1 && k >= 1 && k <= n_expert);
  // (n_expert): one row's probabilities; (n_expert): expert ids ordered by them.
  std::vector<float> p(static_cast<std::size_t>(n_expert));
  std::vector<std::int32_t> order(static_cast<std::size_t>(n_expert));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy_n(logits + r * n_expert, n_expert, p.begin());
    cpu::softmax(p.data(), n_expert);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int32_t a, std::int32_t b) {
      return p[std::size_t(a)] > p[std::size_t(b)] || (p[std::size_t(a)] == p[std::size_t(b)] && a < b);
    });
    std::int32_t* row_ids = ids + r * k;
    float* row_w = weights + r * k;
    double sum = 0;
    for (std::int32_t j = 0; j < k; ++j) {
      row_ids[j] = order[std::size_t(j)];
      row_w[j] = p[std::size_t(order[std::size_t(j)])];
      sum += row_w[j];
    }
    if (normalize) {
      // llama.cpp clamps the sum at the smallest normal fp16 (6.103515625e-5 = 2^-14) before dividing.
      const float total = std::max(float(sum), 6.103515625e-5f);
      for (std::int32_t j = 0; j < k; ++j) row_w[j] /= total;
    }
  }
}

void CpuBackend::moe_route_topk_softmax(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k,
                                        std::int32_t* ids, float* weights) {
  SLUICE_CPU_CHECK(n_expert >= 1 && k >= 1 && k <= n_expert);
  std::vector<std::int32_t> order(static_cast<std::size_t>(n_expert));  // expert ids by logit
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * n_expert;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int32_t a, std::int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    std::int32_t* row_ids = ids + r * k;
    float* row_w = weights + r * k;
    for (std::int32_t j = 0; j < k; ++j) {
      row_ids[j] = order[std::size_t(j)];
      row_w[j] = row[order[std::size_t(j)]];
    }
    cpu::softmax(row_w, k);
  }
}

void CpuBackend::gather_rows(const float* x, std::int64_t n, std::span<const std::int32_t> rows, float* out) {
  for (std::size_t i = 0; i < rows.size(); ++i) std::copy_n(x + std::int64_t(rows[i]) * n, n, out + std::int64_t(i) * n);
}

void CpuBackend::scatter_add_rows(float* y, std::int64_t n, std::span<const std::int32_t> rows, const float* weights,
                                  const float* src) {
  for (std::size_t i = 0; i < rows.size(); ++i) {
    float* out = y + std::int64_t(rows[i]) * n;
    const float* in = src + std::int64_t(i) * n;
    const float w = weights[i];
    for (std::int64_t j = 0; j < n; ++j) {
      const float weighted = w * in[j];  // rounded on its own, as ggml_mul then ggml_add
      out[j] += weighted;
    }
  }
}

void CpuBackend::kv_store(const compute::KvLayerView& kv, std::int64_t pos0, std::int64_t rows, std::int64_t row_floats,
                          const float* k, const float* v) {
  // A ring keeps the last kv.ctx positions: a store of more would overwrite its own rows.
  SLUICE_CPU_CHECK(pos0 >= 0 && (kv.ring ? rows <= kv.ctx : pos0 + rows <= kv.ctx));
  for (std::int64_t r = 0; r < rows; ++r) cpu::kv_store(kv, pos0 + r, row_floats, k + r * row_floats, v + r * row_floats);
}

void CpuBackend::attend(const float* q, std::int64_t rows, const compute::KvLayerView& kv, std::int64_t pos0,
                        const compute::AttentionShape& shape, float* out) {
  const std::int64_t width = std::int64_t(shape.n_head) * shape.head_dim;
  // Rows attend independently (each reads the cache up to its own position; cpu::attend is
  // thread-safe for distinct outputs), so a prompt's rows run in parallel: in prefill this
  // O(n^2) part otherwise leaves all but one core idle for short-headed models.
  executor_->parallel_for(0, rows, [&](std::int64_t r) { cpu::attend(q + r * width, kv, pos0 + r, shape, out + r * width); });
}

}  // namespace sluice::cpu

namespace sluice::compute {
std::unique_ptr<ComputeBackend> make_cpu_backend(Threading threading) { return std::make_unique<cpu::CpuBackend>(threading); }
std::unique_ptr<ComputeBackend> make_cpu_backend(Executor& executor) { return std::make_unique<cpu::CpuBackend>(executor); }
}  // namespace sluice::compute
