// Synthetic GGUF models (`sluice synth`): real architecture metadata and a real tokenizer
// vocabulary (copied from a GGUF that has one), with random but well-scaled weights in any
// supported quant type, so outputs are finite and logits are not all equal. Used for parity
// tests against llama.cpp and for benchmarks at shapes no real model here has.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/gguf_splitter.hpp"

namespace sluice {

struct SynthShape {
  std::int64_t n_embd = 256, n_layer = 4, n_head = 8, n_head_kv = 4, n_ff = 768, n_ctx = 2048;
  // Mixture of experts (0 experts: a dense FFN): experts per layer, experts per token, and one
  // expert's feed-forward length (qwen3moe; llama's experts are n_ff wide).
  std::int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
  // Set by the named shapes of real models: the architecture they are (empty: any), the key
  // length per head (0: n_embd / n_head) and the vocabulary size (0: from the vocabulary source).
  std::string arch;
  std::int64_t head_dim = 0;
  std::int64_t n_vocab = 0;
};

// tiny, 1b, 7b, 13b, 70b (Llama 3 70B), 100b (80 x 10240, 80 heads of 128, 8 kv, ff 32768) (Llama-family
// proportions); the mixtures of experts qwen3-30b-a3b (qwen3moe: 48 x 2048, 32 heads of 128, 4 kv,
// 128 experts of ff 768, 8 per token, vocabulary 151936) and mixtral-8x7b (llama: 32 x 4096, 32
// heads, 8 kv, 8 experts of ff 14336, 2 per token, vocabulary 32000), gpt-oss-120b (36 x 2880, 64 heads
// of 64, 8 kv, 128 experts of ff 2880, 4 per token, vocabulary 201088, context 131072) and gpt-oss-20b
// (the same with 24 layers and 32 experts). Throws std::invalid_argument.
SynthShape synth_shape(const std::string& name);

struct SynthOptions {
  // llama | qwen2 | gemma3 | qwen3moe | gpt-oss (llama with shape.n_expert > 0: Mixtral). gpt-oss:
  // experts of --type (MXFP4 as shipped; then the other matrices Q8_0), biases, attention sinks,
  // sliding_window (default 128) on even layers, YaRN 32 over 4096, rope base 150000.
  std::string arch = "llama";
  SynthShape shape;
  GgmlType type = GgmlType::Q4_0;  // matrices; norms stay F32
  GgmlType embedding_type = GgmlType::Q8_0;
  std::string vocab_from;  // GGUF whose tokenizer.* keys are copied; empty: the built-in vocabulary
  std::int64_t vocab_size = 512;  // tokens of the built-in vocabulary (tools/synth_vocab.hpp)
  std::uint64_t seed = 1;
  bool tied_output = false;
  // Llama 3.1 rope scaling: rope.freq_base 500000 and a rope_freqs.weight tensor of per-pair
  // frequency divisors (factor 8, low/high frequency factors 1 and 4, original context 8192),
  // computed the way llama.cpp's converter does.
  bool llama3_rope = false;
  // gemma3 only: key/value length per head (0: n_embd / n_head), the sliding window (0: none),
  // the local/global pattern written as attention.sliding_window_pattern (-1: not written, so
  // readers use Gemma 3's 6; 0: every layer local; 1: every layer global) and a final logit
  // soft-cap (0: not written). Gemma 3 always ties its head to the embedding.
  std::int64_t head_dim = 0;
  std::int64_t sliding_window = 0;
  std::int64_t swa_pattern = -1;
  float final_softcap = 0.0f;
  // Write the header and tensor table only; the tensor data is a hole of its full size
  // (gguf::Writer::write_without_data): the shape of a 100B model in a few MB of disk, for what
  // reads no weight (--plan-only, planner tests). Running it computes on zeros.
  bool no_data = false;
  // Mixture of experts: how unevenly each layer's router favours its experts. 0: no preference
  // (random router rows); S > 0: expert popularity follows a power law with exponent S (the
  // expert of rank r, in a permutation of its own per layer, gets a router bias of -S ln(r + 1)
  // over a direction every token's residual stream carries, so P(chosen) ~ (r + 1)^-S).
  float router_skew = 0.0f;
  // Written as tokenizer.chat_template (Jinja text; "": the vocabulary source's, if any), so tests
  // can give a synthetic model a template of its own.
  std::string chat_template;
};

// Limits on a synthetic shape: beyond the largest real models (Llama 3.1 405B: embd 16384, 126
// layers, ff 53248, 128 heads), so any real shape fits, but a typo cannot ask for petabytes.
inline constexpr std::int64_t kMaxSynthEmbd = 65536;
inline constexpr std::int64_t kMaxSynthLayers = 1024;
inline constexpr std::int64_t kMaxSynthHeads = 1024;
inline constexpr std::int64_t kMaxSynthFf = 262144;
inline constexpr std::int64_t kMaxSynthHeadDim = 1024;
inline constexpr std::int64_t kMaxSynthVocab = 1 << 24;
inline constexpr std::int64_t kMaxSynthExperts = 512;  // llama.cpp's LLAMA_MAX_EXPERTS
inline constexpr float kMaxSynthRouterSkew = 8.0f;     // beyond it every token picks the same experts

// Throws std::invalid_argument naming the flag (--layers, --embd, ...) when the options cannot
// make a valid model: a size out of range, heads that do not divide, rows that are not whole
// quant blocks.
void validate_synth_options(const SynthOptions& options);

// What a synthetic model takes on disk, known before any byte of it is written.
struct SynthLayout {
  std::uint64_t parameters = 0;    // elements of all its tensors
  std::uint64_t tensor_bytes = 0;  // their bytes, unpadded (what progress counts)
  std::uint64_t file_bytes = 0;    // all the files together, exactly: headers, padding, tensors
  std::vector<gguf::PlannedShard> files;  // one file, or the gguf-split shards, each with its size
};

struct SynthWriteOptions {
  // > 0: write llama.cpp gguf-split shards PREFIX-00001-of-0000N.gguf ... straight away (PREFIX:
  // the output path less a ".gguf" ending), each at most this many bytes (as `sluice split
  // --max-size`, the same shards); no unsplit file is ever written. 0: one file.
  std::uint64_t split_max_bytes = 0;
  // Called once the layout is known, before the free-space check and before anything is written.
  std::function<void(const SynthLayout&)> planned;
  // Called as tensor bytes are written: (written so far, total), on the writing thread.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
};

// The shard prefix of an output path: "dir/m.gguf" -> "dir/m"; other paths as they are.
std::string synth_split_prefix(const std::string& path);

// The layout write_synthetic_gguf(path, options, {split_max_bytes}) would write, without
// writing. Throws as write_synthetic_gguf does for bad options.
SynthLayout plan_synthetic_gguf(const std::string& path, const SynthOptions& options, std::uint64_t split_max_bytes = 0);

// Validates the options, then writes OUT (or its shards) atomically: temporary files beside it,
// renamed at the end, so an error or a kill leaves nothing new under the final names. Refuses
// (sluice::Exception naming the directory, the bytes needed and the bytes free; nothing written)
// when the output's directory has less free space than the files take. Memory: a few MiB of
// generated rows at a time, whatever the model's size. Throws std::invalid_argument for bad
// options and std::runtime_error naming the file on failure. Returns the layout written.
SynthLayout write_synthetic_gguf(const std::string& path, const SynthOptions& options, const SynthWriteOptions& write = {});

}  // namespace sluice
