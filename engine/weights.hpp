// Where a forward pass finds its tensors: a view (type, shape, bytes) per tensor name, whether
// the bytes live in a memory-mapped GGUF, in extents read whole from a pack, or in a ring slot
// the prefetcher just filled. Names are GGUF's (blk.N.attn_q.weight, ...).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "compute/views.hpp"
#include "model/ggml_types.hpp"
#include "model/model_config.hpp"

namespace sluice {

class ExpertProvider;  // engine/expert_provider.hpp

// A tensor's type, shape and bytes (compute/views.hpp): what a ComputeBackend reads.
using TensorView = compute::WeightView;

// Looks a tensor up by name; returns an empty view when absent.
using TensorLookup = std::function<TensorView(std::string_view name)>;

// Matrices whose rows arrive in pieces (engine/block_pieces.hpp: a streamed block in small ring
// slots): their views carry a tag as data, never bytes; the forward pass multiplies by each one
// piece of rows at a time, in the order the pieces are read.
class WeightRows {
 public:
  using RowsFn = std::function<void(std::int64_t first_row, const TensorView& rows)>;
  virtual ~WeightRows() = default;
  virtual bool holds(const TensorView& tensor) const = 0;
  // Calls fn for runs of whole rows covering `tensor`, in order.
  virtual void for_each_rows(const TensorView& tensor, const RowsFn& fn) = 0;
};

// One transformer block's tensors (absent optional ones are empty views).
struct BlockWeights {
  TensorView attn_norm, wq, wk, wv, wo, bq, bk, bv;
  TensorView q_norm, k_norm, post_attn_norm;            // gemma3
  TensorView bo, attn_sinks;                            // gpt-oss: output bias, (n_head) sink logits
  TensorView ffn_norm, w_gate, w_up, w_down, post_ffn_norm;
  // Mixture of experts (instead of w_gate/w_up/w_down): the router (n_expert rows of n_embd) and
  // the experts' matrices stacked along the slowest dimension (expert_slice() cuts one out).
  TensorView router, gate_exps, up_exps, down_exps;
  // gpt-oss: the router's bias (n_expert) and the experts' biases, one row per expert ([n_ff_exp,
  // n_expert], [n_embd, n_expert]); they stay here when the experts come from a provider.
  TensorView router_bias, gate_exps_bias, up_exps_bias, down_exps_bias;
  // When set, the experts come from here (streamed one by one) and the *_exps views may be
  // empty; when null, moe_ffn slices the stacked tensors above. Not owned.
  ExpertProvider* experts = nullptr;
  // With `experts`: the next block's weights when they are in RAM, whose FFN norm and router run
  // early on this block's FFN input to guess the experts the next layer will want (the guesses'
  // reads overlap this layer's compute). Null: no guesses. Not owned.
  const BlockWeights* next = nullptr;
  // When set, the views it holds() arrive in pieces (their matmuls go row run by row run). Not owned.
  WeightRows* rows = nullptr;
};

// Expert e's matrix of a stacked expert tensor [cols, rows, n_expert]: a 2-D view of its rows
// (the bytes are contiguous: experts are the slowest dimension). e in [0, dims[2]).
TensorView expert_slice(const TensorView& stacked, std::int64_t e);

struct GlobalWeights {
  TensorView tok_embd, output_norm, output, rope_freqs;
};

// Binds block `il`'s tensors; throws std::runtime_error naming `source` and the missing tensor.
// `experts_apart`: the stacked expert tensors are read elsewhere (an ExpertProvider) and are
// neither required nor bound.
BlockWeights bind_block(const TensorLookup& lookup, const ModelConfig& config, std::int64_t il, const std::string& source,
                        bool experts_apart = false);
// Binds the embedding, final norm and head (head = embedding when output.weight is absent: tied).
GlobalWeights bind_globals(const TensorLookup& lookup, const ModelConfig& config, const std::string& source);

}  // namespace sluice
