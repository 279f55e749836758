// The reference forward pass of a decoder-only transformer, organised layer-major: embed(),
// then block() for each layer over the whole batch of tokens, then head_rows(). The caller supplies
// each block's weights when it runs it, so the same code serves a model held in RAM and one
// streamed block by block through the prefetcher (engine/ issue 4). Every computation goes
// through a compute::ComputeBackend (compute/backend.hpp; the CPU's by default): this file
// decides what to compute, the backend how.
//
// Architectures (model/model_config.hpp): llama and qwen2 (pre-norm, SwiGLU; qwen2 adds q/k/v
// biases), qwen3moe (per-head RMSNorm of q and k, experts), llama with experts (Mixtral), and gemma3 as llama.cpp's graph has it: embedding scaled by sqrt(n_embd), per-head
// RMSNorm of q and k before RoPE, q scaled before attention, RMSNorm of the attention and FFN
// outputs before they join the residual, GeGLU, and sliding-window (local) layers with their
// own RoPE base interleaved with global ones; and gpt-oss (llama.cpp's openai-moe graph): q/k/v/o
// biases, attention sinks, sliding-window even layers, YaRN RoPE, experts with biases routed by
// "select, then softmax" and activated by SwiGLU-OAI (run_expert), the FFN norm named
// post_attention_norm.
//
// Buffers (n = tokens in the batch, d = n_embd, hd = head_dim):
//   x     (n, d)             residual stream, updated in place by block()
//   xn    (n, d)             normalised input of attention / FFN
//   q     (n, n_head * hd)   queries;  k, v (n, n_head_kv * hd)
//   att   (n, n_head * hd)   attention output before the output projection
//   gate, up (n, n_ff)       FFN activations (n_ff_exp wide with experts: one expert's rows)
//
// Mixture of experts (qwen3moe, Mixtral): the FFN is n_expert SwiGLU experts; each row's router
// logits (W_router xn) pick n_expert_used of them (backend moe_route: softmax, top-k, weights
// renormalised), and each expert runs once per pass on the rows routed to it (gathered), its
// weighted output added to those rows (scattered). An expert no row chose is not computed.
//   kv cache (cache/kv_cache.hpp): per layer, per sequence, ctx positions of K and V
//
// A batch may hold several sequences (layer-major batching): x's rows are grouped in SeqSpans,
// each a run of consecutive positions of one sequence. Matmuls run over all rows at once (one
// read of a block's weights serves every sequence); attention runs per row against its own
// sequence's cache. Every row's result is independent of what else is in the batch (the
// kernels compute each output element the same way at any batch size), so a sequence's logits
// are bit-identical whether it runs alone or with others.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cache/kv_cache.hpp"
#include "compute/backend.hpp"
#include "engine/expert_provider.hpp"
#include "engine/weights.hpp"
#include "model/model_config.hpp"

namespace sluice {

// n consecutive rows of the batch: sequence `seq` at positions pos0 .. pos0 + n - 1.
struct SeqSpan {
  std::int32_t seq = 0;
  std::int64_t pos0 = 0;
  std::int64_t n = 0;
};

// The KV cache shape of `config` for n_seq sequences of n_ctx positions: its sliding-window
// layers keep rings of the window plus KvShape::ring_slack rows (cache/kv_cache.hpp) unless
// `rings` is false.
cache::KvShape kv_shape(const ModelConfig& config, std::int64_t n_ctx, std::int32_t n_seq = 1,
                        compute::KvType type = compute::KvType::f16, bool rings = true);

class Transformer {
 public:
  // One sequence with a resident fp16 KV cache of `n_ctx` positions, on its own CPU backend
  // (with an executor of threading.threads threads).
  Transformer(ModelConfig config, std::int64_t n_ctx, compute::Threading threading);
  // Any KV cache (resident or spilled, fp16 or q8_0, several sequences); its shape must match
  // the config's layers and KV width. On its own CPU backend.
  Transformer(ModelConfig config, std::unique_ptr<cache::KvCache> kv, compute::Threading threading);
  // The same on `backend`, which must outlive the Transformer. Throws std::invalid_argument
  // naming the backend when it cannot run this pass: memory not on the host (the buffers below
  // are host vectors), or the cache's KV type unsupported.
  Transformer(ModelConfig config, std::unique_ptr<cache::KvCache> kv, compute::ComputeBackend& backend);
  ~Transformer();

  const ModelConfig& config() const { return config_; }
  std::int64_t n_ctx() const { return n_ctx_; }
  // Most rows one pass may carry (0: no limit). The memory planner sizes a pass's buffers for
  // this many; Forward::forward() cuts a longer batch into passes of at most this many rows.
  std::int64_t max_pass_tokens() const { return max_pass_tokens_; }
  void set_max_pass_tokens(std::int64_t n);
  // Bytes of the buffers block() keeps for a pass of n_tokens rows (xn, q, k, v, att, proj,
  // gate, up: what it allocates and holds until the Transformer dies).
  static std::uint64_t scratch_bytes(const ModelConfig& config, std::int64_t n_tokens);
  // What block() holds besides scratch_bytes when a block's matrices arrive in pieces (WeightRows):
  // each run of rows' products for n_tokens rows before they join the output.
  static std::uint64_t piece_out_bytes(std::int64_t n_tokens);
  // What block() holds besides scratch_bytes when its experts come from an ExpertProvider: each
  // route's expert output (n_tokens x n_expert_used rows of n_embd) and the chosen ids.
  static std::uint64_t expert_provider_scratch_bytes(const ModelConfig& config, std::int64_t n_tokens);
  std::int32_t n_seq() const { return kv_->shape().n_seq; }
  cache::KvCache& kv_cache() { return *kv_; }
  compute::ComputeBackend& backend() { return *backend_; }
  std::uint64_t kv_cache_bytes() const { return kv_->memory_bytes(); }

  // x (n, d) <- embedding rows of `tokens` (dequantized). Tokens must be < n_vocab.
  void embed(const TensorView& tok_embd, std::span<const std::int32_t> tokens, float* x) const;
  // Runs layer `il` over n tokens at positions pos0 .. pos0+n-1 (pos0+n <= n_ctx), updating x
  // and writing the layer's K/V for those positions into the cache.
  void block(std::int64_t il, const BlockWeights& w, const GlobalWeights& g, float* x, std::int64_t n, std::int64_t pos0);
  // The same over several sequences: rows of x in the order of `spans`. Throws
  // std::length_error when a span runs past the context (check_spans), before anything is written.
  void block(std::int64_t il, const BlockWeights& w, const GlobalWeights& g, float* x, std::span<const SeqSpan> spans);
  // Throws std::length_error naming the span when one runs past the context.
  void check_spans(std::span<const SeqSpan> spans) const;
  // logits (rows.size(), n_vocab) for the given rows of x.
  void head_rows(const GlobalWeights& g, const float* x, std::span<const std::int64_t> rows, float* logits);
  // The same in parts, for a head that streams in pieces (a slice of vocabulary rows at a time):
  // head_norm() normalises the rows once; each head_part() multiplies them by `output_rows` (the
  // output matrix's rows v0 .. v0 + output_rows.rows() - 1), writing those columns of logits
  // (row-major, n_vocab wide); head_finish() soft-caps. Each logit is the same dot product as in
  // head_rows(), so the results are identical.
  void head_norm(const GlobalWeights& g, const float* x, std::span<const std::int64_t> rows);
  void head_part(const TensorView& output_rows, std::int64_t v0, float* logits, std::int64_t n_vocab);
  void head_finish(float* logits, std::int64_t n_rows, std::int64_t n_vocab);

 private:
  Transformer(ModelConfig config, std::unique_ptr<cache::KvCache> kv, std::unique_ptr<compute::ComputeBackend> own_backend,
              compute::ComputeBackend* borrowed);
  void ensure_scratch(std::int64_t n);
  const float* f32(const TensorView& t, std::vector<float>& tmp) const;
  void linear(const TensorView& w, const float* x, std::int64_t n, float* y) const;
  // y = t x for a matrix of block `w`: linear(), or piece by piece when w.rows holds it.
  void project(const BlockWeights& w, const TensorView& t, const float* x, std::int64_t n, float* y);
  // proj_ (n, d) <- the mixture-of-experts FFN of layer il over xn_'s n rows (see block()); the
  // experts come from w.experts when it is set (engine/expert_provider.hpp).
  // x: the residual stream the FFN reads (the next layer's guess starts from it).
  void moe_ffn(std::int64_t il, const BlockWeights& w, const float* x, std::int64_t n);
  // Runs layer il's FFN norm and router (from `next`) on x's n rows and tells the provider the
  // union of their top-k experts (ExpertProvider::guess): the next layer's likely experts.
  void guess_experts(std::int64_t il, const BlockWeights& next, const float* x, std::int64_t n, ExpertProvider& provider);
  // Row 0 of each expert bias tensor as floats (row e at + e * width), or null: gpt-oss.
  struct ExpertBiases {
    const float* gate = nullptr;
    const float* up = nullptr;
    const float* down = nullptr;
  };
  // out (rows.size(), d) = expert e (its matrices `ew`) on the rows of xn_ listed in `rows`.
  void run_expert(const ExpertWeights& ew, const ExpertBiases& biases, std::int64_t e, std::span<const std::int32_t> rows,
                  float* out);
  // RoPE of layer il: base and scaling (local or global), rope_freqs, YaRN.
  compute::RopeParams rope_params(std::int64_t il, const GlobalWeights& g);

  ModelConfig config_;
  std::int64_t n_ctx_;
  std::unique_ptr<compute::ComputeBackend> own_backend_;  // set by the constructors that make one
  compute::ComputeBackend* backend_;
  std::int64_t kv_dim_;
  std::unique_ptr<cache::KvCache> kv_;
  std::vector<cache::KvWrite> writes_;
  std::vector<float> xn_, q_, k_, v_, att_, proj_, gate_, up_;
  std::vector<float> tmp_a_, tmp_b_;
  std::vector<float> tmp_rope_, tmp_sinks_;               // rope_freqs, attention sinks as floats
  std::array<std::vector<float>, 4> moe_bias_tmp_;        // router, gate, up, down biases as floats
  // Mixture of experts (k = n_expert_used): moe_x_, moe_out_ (n, d) one expert's input and output
  // rows; router_logits_ (n, n_expert); route_ids_, route_weights_ (n, k) each row's experts;
  // expert_rows_, expert_weights_ (n * k) the same routes grouped by expert.
  std::vector<float> moe_x_, moe_out_, router_logits_, route_weights_, expert_weights_;
  std::vector<std::int32_t> route_ids_, expert_rows_;
  std::vector<std::int64_t> expert_first_, expert_next_;  // (n_expert + 1), (n_expert): the grouping's offsets
  // With an expert provider: moe_route_out_ (n * k, d) each route's expert output, in the
  // grouping's order (not counted by scratch_bytes: expert_provider_scratch_bytes);
  // moe_chosen_, moe_left_ (<= n_expert) the experts of the pass, those not yet computed.
  std::vector<float> moe_route_out_;
  std::vector<std::int32_t> moe_chosen_, moe_left_;
  // The next layer's guess (counted in expert_provider_scratch_bytes): its input (n, d), router
  // logits (n, n_expert), routes (n, k), which experts any row chose, their ascending union.
  std::vector<float> guess_xn_, guess_logits_, guess_weights_;
  std::vector<std::int32_t> guess_ids_, guess_union_;
  std::vector<std::uint8_t> guess_chosen_;
  std::vector<float> guess_bias_tmp_;  // the next layer's router bias as floats (gpt-oss)
  std::vector<float> head_tmp_;    // head_part: (head_rows_, slice) before it joins the logits
  std::vector<float> piece_out_;   // project(): (n, rows of one piece) before they join y
  std::int64_t head_rows_ = 0;     // rows normalised by the last head_norm()
  std::int64_t scratch_tokens_ = 0;
  std::int64_t max_pass_tokens_ = 0;
};

}  // namespace sluice
