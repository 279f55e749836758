// The CPU's ComputeBackend (compute/backend.hpp): each op is a call of the CPU kernels
// (matmul.hpp, ops.hpp, quants.hpp), with the loops the forward pass used to run itself (bias and
// residual adds, scaling, soft-capping, SwiGLU) moved here unchanged, so a forward pass through
// this backend computes the same bits as one that called the kernels directly. The parallel
// kernels (matmul, attention) run inside the backend's compute::Executor, so its thread count is
// the most threads any op uses; the other ops run on the calling thread.
#pragma once

#include <memory>

#include "compute/backend.hpp"
#include "compute/executor.hpp"

namespace sluice::cpu {

// Stateless apart from its executor: thread-safe, any number of concurrent callers (they share
// the executor's threads).
class CpuBackend final : public compute::ComputeBackend {
 public:
  // Computes on `executor`, which must outlive the backend (a Session lends its own).
  explicit CpuBackend(compute::Executor& executor);
  // Computes on an executor of its own with threading.threads threads (0: every core).
  explicit CpuBackend(compute::Threading threading = {});

  std::string_view name() const override { return "cpu"; }
  const compute::BackendCapabilities& capabilities() const override { return capabilities_; }
  compute::Executor& executor() { return *executor_; }

  void matmul(const compute::WeightView& w, const float* x, std::int64_t batch, float* y) override;
  void dequantize(const compute::WeightView& w, float* out) override;
  void get_rows(const compute::WeightView& w, std::span<const std::int32_t> ids, float* out) override;

  void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t n, float eps) override;
  void rope(float* x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos0,
            const compute::RopeParams& params) override;
  void softmax(float* x, std::int64_t rows, std::int64_t n) override;
  void swiglu(const float* gate, const float* up, float* out, std::int64_t n) override;
  void geglu(const float* gate, const float* up, float* out, std::int64_t n) override;
  void swiglu_oai(const float* gate, const float* up, float* out, std::int64_t n,
                  const compute::SwigluOaiParams& params) override;
  void add(float* x, const float* y, std::int64_t n) override;
  void add_rows(float* x, const float* bias, std::int64_t rows, std::int64_t n) override;
  void scale(float* x, std::int64_t n, float s) override;
  void softcap(float* x, std::int64_t n, float cap) override;

  void moe_route(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k, bool normalize,
                 std::int32_t* ids, float* weights) override;
  void moe_route_topk_softmax(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k,
                              std::int32_t* ids, float* weights) override;
  void gather_rows(const float* x, std::int64_t n, std::span<const std::int32_t> rows, float* out) override;
  void scatter_add_rows(float* y, std::int64_t n, std::span<const std::int32_t> rows, const float* weights,
                        const float* src) override;

  void kv_store(const compute::KvLayerView& kv, std::int64_t pos0, std::int64_t rows, std::int64_t row_floats,
                const float* k, const float* v) override;
  void attend(const float* q, std::int64_t rows, const compute::KvLayerView& kv, std::int64_t pos0,
              const compute::AttentionShape& shape, float* out) override;

 private:
  // row(r) for r in [0, rows) on the executor, or in order on this thread when the rows are few.
  template <typename Row>
  void by_rows(std::int64_t rows, std::int64_t row_floats, Row&& row);
  // op(at, count) over [0, n) in chunks on the executor, or at once when n is small.
  template <typename Op>
  void elementwise(std::int64_t n, Op&& op);

  std::unique_ptr<compute::Executor> own_executor_;  // null when borrowed
  compute::Executor* executor_;
  compute::BackendCapabilities capabilities_;
};

}  // namespace sluice::cpu
