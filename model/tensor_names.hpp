// The one table of the tensor names the engine binds (GGUF's names, which packs keep), and the
// one parser of block numbers in names ("blk.N" extents, "blk.N.<tensor>" tensors). Every file
// that looks a tensor up by name, or a block up by number, takes it from here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::names {

// Global tensors.
inline constexpr std::string_view kTokenEmbd = "token_embd.weight";    // (n_vocab, n_embd) embedding
inline constexpr std::string_view kOutput = "output.weight";           // (n_vocab, n_embd) head; absent: tied to kTokenEmbd
inline constexpr std::string_view kOutputNorm = "output_norm.weight";  // (n_embd) final norm
inline constexpr std::string_view kRopeFreqs = "rope_freqs.weight";    // (n_rot/2) rope factors, optional

// A block's tensors: block_tensor(il, kAttnQ) is "blk.<il>.attn_q.weight".
inline constexpr std::string_view kAttnNorm = "attn_norm.weight";
inline constexpr std::string_view kAttnQ = "attn_q.weight";
inline constexpr std::string_view kAttnK = "attn_k.weight";
inline constexpr std::string_view kAttnV = "attn_v.weight";
inline constexpr std::string_view kAttnOutput = "attn_output.weight";
inline constexpr std::string_view kAttnQBias = "attn_q.bias";
inline constexpr std::string_view kAttnKBias = "attn_k.bias";
inline constexpr std::string_view kAttnVBias = "attn_v.bias";
inline constexpr std::string_view kAttnOutputBias = "attn_output.bias";         // gpt-oss
inline constexpr std::string_view kAttnSinks = "attn_sinks.weight";             // gpt-oss: (n_head) sink logits
inline constexpr std::string_view kAttnQNorm = "attn_q_norm.weight";            // gemma3, qwen3moe
inline constexpr std::string_view kAttnKNorm = "attn_k_norm.weight";            // gemma3, qwen3moe
inline constexpr std::string_view kPostAttnNorm = "post_attention_norm.weight";  // gemma3; gpt-oss: the FFN's norm
inline constexpr std::string_view kFfnNorm = "ffn_norm.weight";
inline constexpr std::string_view kFfnGate = "ffn_gate.weight";
inline constexpr std::string_view kFfnUp = "ffn_up.weight";
inline constexpr std::string_view kFfnDown = "ffn_down.weight";
inline constexpr std::string_view kPostFfnNorm = "post_ffw_norm.weight";  // gemma3
// Mixture of experts (instead of ffn_gate/up/down): the router and the experts stacked along the
// slowest dimension, so expert e's matrix is a contiguous range of rows (bytes / n_expert each).
inline constexpr std::string_view kFfnGateInp = "ffn_gate_inp.weight";    // [n_embd, n_expert] router
inline constexpr std::string_view kFfnGateExps = "ffn_gate_exps.weight";  // [n_embd, n_ff_exp, n_expert]
inline constexpr std::string_view kFfnUpExps = "ffn_up_exps.weight";      // [n_embd, n_ff_exp, n_expert]
inline constexpr std::string_view kFfnDownExps = "ffn_down_exps.weight";  // [n_ff_exp, n_embd, n_expert]
// gpt-oss: the router's bias and each expert's biases, one row per expert (they stay in the block's
// unit when the experts stream: only the *_exps.weight tensors move to blk.N.exps).
inline constexpr std::string_view kFfnGateInpBias = "ffn_gate_inp.bias";    // [n_expert]
inline constexpr std::string_view kFfnGateExpsBias = "ffn_gate_exps.bias";  // [n_ff_exp, n_expert]
inline constexpr std::string_view kFfnUpExpsBias = "ffn_up_exps.bias";      // [n_ff_exp, n_expert]
inline constexpr std::string_view kFfnDownExpsBias = "ffn_down_exps.bias";  // [n_embd, n_expert]

inline constexpr std::string_view kBlockPrefix = "blk.";

// "blk.<il>": the name of block il's extent (a pack's read unit for the block).
std::string block_name(std::int64_t il);
// "blk.<il>.<tensor>".
std::string block_tensor(std::int64_t il, std::string_view tensor);

// Nine digits: any block count a model has (and kMaxBlockCount) fits, and the value fits int32.
inline constexpr std::size_t kMaxBlockIndexDigits = 9;

// Does `name` claim a block ("blk." prefix)?
bool is_block_name(std::string_view name);
// N for a name "blk.N" or "blk.N.<rest>" (N: 1 to kMaxBlockIndexDigits decimal digits, no sign);
// nullopt for any other name, including a block name whose N does not parse.
std::optional<std::int64_t> block_index_of(std::string_view name);
// N for an extent name that is exactly "blk.N" (a block's extent); nullopt otherwise.
std::optional<std::int64_t> block_extent_index(std::string_view name);
// block_extent_index, bounded: N only when 0 <= N < n_layer (an index callers may use at once).
std::optional<std::int64_t> block_extent_index(std::string_view name, std::int64_t n_layer);

// A block's experts read apart from it (a GGUF source's unit, a pack's expert extent): "blk.N.exps".
inline constexpr std::string_view kExpertsSuffix = ".exps";
std::string experts_extent_name(std::int64_t il);
// N for a name that is exactly "blk.N.exps"; nullopt otherwise.
std::optional<std::int64_t> experts_extent_index(std::string_view name);
// Whether `tensor` (a name within a block, e.g. "ffn_gate_exps.weight") is one of the stacked
// expert matrices that an experts extent holds.
bool is_expert_matrix(std::string_view tensor_name);

}  // namespace sluice::names
