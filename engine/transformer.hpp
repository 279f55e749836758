// The reference forward pass of a decoder-only transformer on the CPU, organised layer-major:
// embed(), then block() for each layer over the whole batch of tokens, then head(). The caller
// supplies each block's weights when it runs it, so the same code serves a model held in RAM
// and one streamed block by block through the prefetcher (engine/ issue 4).
//
// Buffers (n = tokens in the batch, d = n_embd, hd = head_dim):
//   x     (n, d)             residual stream, updated in place by block()
//   xn    (n, d)             normalised input of attention / FFN
//   q     (n, n_head * hd)   queries;  k, v (n, n_head_kv * hd)
//   att   (n, n_head * hd)   attention output before the output projection
//   gate, up (n, n_ff)       FFN activations
//   kv cache (layer, ctx, n_head_kv * hd) fp16, K and V
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "compute/cpu/matmul.hpp"
#include "compute/cpu/ops.hpp"
#include "engine/weights.hpp"
#include "model/model_config.hpp"

namespace sluice {

class Transformer {
 public:
  // Allocates the KV cache for `n_ctx` positions (fp16: 2 * n_layer * n_ctx * kv_dim * 2 bytes).
  Transformer(ModelConfig config, std::int64_t n_ctx, cpu::Threading threading);

  const ModelConfig& config() const { return config_; }
  std::int64_t n_ctx() const { return n_ctx_; }
  std::uint64_t kv_cache_bytes() const { return (k_cache_.size() + v_cache_.size()) * sizeof(std::uint16_t); }

  // x (n, d) <- embedding rows of `tokens` (dequantized). Tokens must be < n_vocab.
  void embed(const TensorView& tok_embd, std::span<const std::int32_t> tokens, float* x) const;
  // Runs layer `il` over n tokens at positions pos0 .. pos0+n-1 (pos0+n <= n_ctx), updating x
  // and writing the layer's K/V for those positions into the cache.
  void block(std::int64_t il, const BlockWeights& w, const GlobalWeights& g, float* x, std::int64_t n, std::int64_t pos0);
  // logits (n_rows, n_vocab) for the last n_rows rows of x (n rows in total).
  void head(const GlobalWeights& g, const float* x, std::int64_t n, std::int64_t n_rows, float* logits);

 private:
  void ensure_scratch(std::int64_t n);
  const float* f32(const TensorView& t, std::vector<float>& tmp) const;

  ModelConfig config_;
  std::int64_t n_ctx_;
  cpu::Threading threading_;
  std::int64_t kv_dim_;
  std::vector<std::uint16_t> k_cache_, v_cache_;
  std::vector<float> xn_, q_, k_, v_, att_, proj_, gate_, up_;
  std::vector<float> tmp_a_, tmp_b_;
  std::int64_t scratch_tokens_ = 0;
};

}  // namespace sluice
