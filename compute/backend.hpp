// The seam between the forward pass and the hardware it runs on. engine/transformer.cpp calls
// only this interface; compute/cpu/cpu_backend.cpp implements it with the CPU kernels, and a
// device backend (compute/cuda) implements the same calls with its own. The engine asks a
// backend what it can do (capabilities()) instead of knowing which one it holds.
//
// Every op works on row-major fp32 rows (a row is one token's vector, heads contiguous slices of
// it), weights in ggml blocks (WeightView) and one layer's KV cache of one sequence
// (KvLayerView), all in the memory capabilities().memory names. Shapes and types outside a
// backend's capabilities are programmer errors (abort with file and line), not operating errors:
// the engine checks the model against the capabilities before the first pass.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "compute/executor.hpp"
#include "compute/op_params.hpp"
#include "compute/views.hpp"
#include "model/ggml_types.hpp"

namespace sluice::compute {

enum class MemorySpace : std::uint8_t {
  host,    // pointers the ops take are ordinary host memory (std::vector, mmap, ring slots)
  device,  // pointers are the backend's device memory; the caller stages data in and out
};
const char* to_string(MemorySpace space);

struct BackendCapabilities {
  MemorySpace memory = MemorySpace::host;
  std::vector<GgmlType> weight_types;  // what matmul, dequantize and get_rows take
  std::vector<KvType> kv_types;        // what kv_store and attend take
  bool supports(GgmlType type) const;
  bool supports(KvType type) const;
};

// Contract for every op: out-pointers do not alias inputs unless the op says so; calls on one
// backend object come from one thread at a time (a backend may keep scratch between calls) but
// may use many threads inside a call.
class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  virtual std::string_view name() const = 0;  // "cpu", "cuda", ... for reports and errors
  virtual const BackendCapabilities& capabilities() const = 0;

  // ---- weights ----
  // y (batch, w.rows()) = x (batch, w.cols()) times w's rows: y[b, r] = dot(w row r, x row b).
  virtual void matmul(const WeightView& w, const float* x, std::int64_t batch, float* y) = 0;
  // out (w.elements()) = w's values as fp32 (norm weights, biases, rope factors stored quantized).
  virtual void dequantize(const WeightView& w, float* out) = 0;
  // out (ids.size(), w.cols()) = rows ids[i] of w as fp32 (embedding lookup); ids in [0, w.rows()).
  virtual void get_rows(const WeightView& w, std::span<const std::int32_t> ids, float* out) = 0;

  // ---- row ops ----
  // Each of `rows` rows of n floats: out = x / sqrt(mean(x^2) + eps) * weight (weight may be
  // null: no scaling). out may alias x.
  virtual void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t n, float eps) = 0;
  // Rotates n_heads heads of head_dim floats in each of `rows` rows, in place; row r is at
  // position pos0 + r.
  virtual void rope(float* x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos0,
                    const RopeParams& params) = 0;
  // Each of `rows` rows of n floats, in place.
  virtual void softmax(float* x, std::int64_t rows, std::int64_t n) = 0;
  // out = silu(gate) * up (SwiGLU); out may alias gate.
  virtual void swiglu(const float* gate, const float* up, float* out, std::int64_t n) = 0;
  // out = gelu_tanh(gate) * up as ggml's CPU backend rounds it (GeGLU; compute/cpu/ops.hpp);
  // out may alias gate.
  virtual void geglu(const float* gate, const float* up, float* out, std::int64_t n) = 0;
  // SwiGLU-OAI (op_params.hpp), as ggml's CPU backend rounds it; out may alias gate.
  virtual void swiglu_oai(const float* gate, const float* up, float* out, std::int64_t n, const SwigluOaiParams& params) = 0;
  // x += y (n floats).
  virtual void add(float* x, const float* y, std::int64_t n) = 0;
  // Each of `rows` rows of n floats: x += bias (n floats).
  virtual void add_rows(float* x, const float* bias, std::int64_t rows, std::int64_t n) = 0;
  // x *= s (n floats).
  virtual void scale(float* x, std::int64_t n, float s) = 0;
  // x = cap * tanh(x * (1 / cap)) (n floats), in llama.cpp's order of roundings.
  virtual void softcap(float* x, std::int64_t n, float cap) = 0;

  // ---- mixture of experts ----
  // Routing of `rows` tokens over n_expert experts (llama.cpp's build_moe_ffn with softmax gating):
  // p = softmax(logits row); ids (rows, k) = the k most probable experts, most probable first
  // (equal probabilities: the lower id first); weights (rows, k) = their p, divided by their sum
  // (summed in double, clamped below at 2^-14 as llama.cpp does) when `normalize`.
  // 1 <= k <= n_expert.
  virtual void moe_route(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k, bool normalize,
                         std::int32_t* ids, float* weights) = 0;
  // Routing with "select, then softmax" gating (llama.cpp's SOFTMAX_WEIGHT, gpt-oss): ids (rows,
  // k) = the k largest logits of the row, largest first (equal: the lower id first); weights
  // (rows, k) = softmax over those k logits alone (max subtracted, summed in double, as ggml's
  // soft_max). 1 <= k <= n_expert.
  virtual void moe_route_topk_softmax(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k,
                                      std::int32_t* ids, float* weights) = 0;
  // out (rows.size(), n) = rows rows[i] of x (n floats each): the tokens routed to one expert.
  virtual void gather_rows(const float* x, std::int64_t n, std::span<const std::int32_t> rows, float* out) = 0;
  // y row rows[i] += weights[i] * src row i (n floats each; the product rounded, then added), for
  // i in order: an expert's output joining each token's sum. src must not alias y.
  virtual void scatter_add_rows(float* y, std::int64_t n, std::span<const std::int32_t> rows, const float* weights,
                                const float* src) = 0;

  // ---- attention ----
  // Writes `rows` consecutive K and V rows (row_floats floats each) at positions pos0.. of kv
  // (a ring: rows (pos0 + r) % kv.ctx, rows <= kv.ctx).
  virtual void kv_store(const KvLayerView& kv, std::int64_t pos0, std::int64_t rows, std::int64_t row_floats,
                        const float* k, const float* v) = 0;
  // Causal attention of `rows` consecutive query rows (n_head * head_dim floats each) of one
  // sequence, query r at position pos0 + r, over kv positions [0, pos0 + r] (within the window):
  // out row r = sum_j softmax_j(q . k_j * scale) v_j, head h using KV head h / (n_head / n_head_kv);
  // with shape.sinks, head h's softmax denominator also counts exp(sinks[h]).
  virtual void attend(const float* q, std::int64_t rows, const KvLayerView& kv, std::int64_t pos0,
                      const AttentionShape& shape, float* out) = 0;
};

// The CPU backend (compute/cpu/cpu_backend.hpp): host memory, every CPU weight type, fp16 and
// q8_0 KV caches. Declared here so that the engine can make its default backend without
// including compute/cpu headers. Its kernels run on an executor of its own with
// threading.threads threads (0: every core)...
std::unique_ptr<ComputeBackend> make_cpu_backend(Threading threading = {});
// ... or on `executor`, which must outlive the backend (the Session's: one executor per run).
std::unique_ptr<ComputeBackend> make_cpu_backend(Executor& executor);

}  // namespace sluice::compute
