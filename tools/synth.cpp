#include "tools/synth.hpp"
#include "tools/synth_vocab.hpp"


#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>

#include <tbb/parallel_for.h>

#include "common/error.hpp"
#include "common/units.hpp"
#include "compute/cpu/kernels.hpp"
#include "common/disk_space.hpp"
#include "compute/cpu/quants.hpp"
#include "model/ggml_types.hpp"
#include "model/gguf.hpp"

namespace sluice {

SynthShape synth_shape(const std::string& name) {
  if (name == "tiny") return {256, 4, 8, 4, 768, 2048};
  if (name == "1b") return {2048, 16, 32, 8, 8192, 4096};
  if (name == "7b") return {4096, 32, 32, 32, 11008, 4096};
  if (name == "13b") return {5120, 40, 40, 40, 13824, 4096};
  if (name == "70b") return {8192, 80, 64, 8, 28672, 4096};
  if (name == "100b") return {10240, 80, 80, 8, 32768, 4096};
  // Qwen3-30B-A3B's config.json (feed_forward_length: its dense intermediate_size, which the
  // converter writes though no layer uses it).
  if (name == "qwen3-30b-a3b") return {2048, 48, 32, 4, 6144, 4096, 128, 8, 768, "qwen3moe", 128, 151936};
  if (name == "mixtral-8x7b") return {4096, 32, 32, 8, 14336, 4096, 8, 2, 14336, "llama", 0, 32000};
  // gpt-oss's config.json (openai/gpt-oss-120b, -20b): 2880 wide, 64 heads of 64 over 8 KV heads,
  // experts of 2880, 4 per token, vocabulary 201088, context 131072 (YaRN 32 over 4096).
  if (name == "gpt-oss-120b") return {2880, 36, 64, 8, 2880, 131072, 128, 4, 2880, "gpt-oss", 64, 201088};
  if (name == "gpt-oss-20b") return {2880, 24, 64, 8, 2880, 131072, 32, 4, 2880, "gpt-oss", 64, 201088};
  throw std::invalid_argument(fmt::format(
      "unknown shape '{}' (tiny, 1b, 7b, 13b, 70b, 100b, qwen3-30b-a3b, mixtral-8x7b, gpt-oss-120b, gpt-oss-20b)", name));
}

namespace {

// splitmix64: fast, seedable per row, so rows can be generated in parallel reproducibly.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Bytes of generated rows handed to the writer at a time: a few MiB keeps memory flat whatever
// the tensor (a 128k-vocabulary head is 1.4 GB in Q8_0) and gives every core a few hundred rows.
constexpr std::uint64_t kGenerateChunkBytes = 8 * MiB;

// Rows generated together by one task: each row's numbers are a chain of dependent splitmix
// steps (~15 cycles of multiply latency each), so several rows' chains are interleaved in one
// loop and the core overlaps them; the numbers of each row stay those of its own chain.
constexpr std::int64_t kInterleavedRows = 8;

// A matrix of rows x cols with entries ~ uniform(-a, a), a = sqrt(3) * scale / sqrt(cols), so
// each output of W x has the variance of x times scale^2: activations neither vanish nor explode.
// Rows are seeded one by one, so they are made in parallel and in chunks with the same bytes.
// `first_column` (when set) gives column 0 of each row instead of a random entry: the router
// skew's shared direction (see SynthOptions::router_skew).
void random_matrix(GgmlType type, std::int64_t rows, std::int64_t cols, std::uint64_t seed, float scale,
                   const gguf::Writer::ByteSink& sink, const std::function<float(std::int64_t)>& first_column = {}) {
  const std::size_t row_bytes = cpu::row_bytes(type, cols);
  const auto chunk_rows = static_cast<std::int64_t>(std::max<std::uint64_t>(1, kGenerateChunkBytes / row_bytes));
  std::vector<std::byte> out(row_bytes * std::size_t(std::min(rows, chunk_rows)));
  const float amplitude = std::sqrt(3.0f) * scale / std::sqrt(float(cols));
  for (std::int64_t first = 0; first < rows; first += chunk_rows) {
    const std::int64_t n = std::min(chunk_rows, rows - first);
    const std::int64_t groups = (n + kInterleavedRows - 1) / kInterleavedRows;
    tbb::parallel_for(std::int64_t{0}, groups, [&](std::int64_t g) {
      const std::int64_t i0 = g * kInterleavedRows;
      const std::int64_t count = std::min(kInterleavedRows, n - i0);
      // (count, cols): the group's rows as floats.
      std::vector<float> block(static_cast<std::size_t>(kInterleavedRows * cols));
      std::uint64_t state[kInterleavedRows] = {};
      for (std::int64_t k = 0; k < count; ++k) state[k] = mix(seed ^ mix(std::uint64_t(first + i0 + k)));
      for (std::int64_t c = 0; c < cols; ++c) {
        for (std::int64_t k = 0; k < kInterleavedRows; ++k) {  // all 8 (unused ones too): a fixed trip count
          state[k] = mix(state[k]);
          block[std::size_t(k * cols + c)] = amplitude * (float(state[k] >> 40) / float(1ull << 24) * 2.0f - 1.0f);
        }
      }
      if (first_column) {
        for (std::int64_t k = 0; k < count; ++k) block[std::size_t(k * cols)] = first_column(first + i0 + k);
      }
      for (std::int64_t k = 0; k < count; ++k) {
        cpu::quantize_row_weights(type, block.data() + k * cols, out.data() + row_bytes * std::size_t(i0 + k), cols);
      }
    });
    sink({out.data(), row_bytes * std::size_t(n)});
  }
}

std::vector<std::byte> norm_weights(std::int64_t n, std::uint64_t seed) {
  std::vector<float> w(static_cast<std::size_t>(n));
  std::uint64_t state = seed;
  for (auto& v : w) {
    state = mix(state);
    v = 1.0f + 0.1f * (float(state >> 40) / float(1ull << 24) - 0.5f);
  }
  std::vector<std::byte> out(w.size() * sizeof(float));
  std::memcpy(out.data(), w.data(), out.size());
  return out;
}

// Entries ~ uniform(-amplitude / 2, amplitude / 2).
std::vector<std::byte> bias(std::int64_t n, std::uint64_t seed, float amplitude = 0.2f) {
  std::vector<float> w(static_cast<std::size_t>(n));
  std::uint64_t state = seed;
  for (auto& v : w) {
    state = mix(state);
    v = amplitude * (float(state >> 40) / float(1ull << 24) - 0.5f);
  }
  std::vector<std::byte> out(w.size() * sizeof(float));
  std::memcpy(out.data(), w.data(), out.size());
  return out;
}

}  // namespace

namespace {
// The key length per head: --head-dim, else the named shape's, else n_embd / n_head.
std::int64_t synth_head_dim(const SynthOptions& o) {
  if (o.arch == "gpt-oss" && o.head_dim == 0 && o.shape.head_dim == 0) return 64;  // gpt-oss's heads are 64 long
  if (o.head_dim > 0) return o.head_dim;
  if (o.shape.head_dim > 0) return o.shape.head_dim;
  return o.shape.n_embd / o.shape.n_head;
}
// One expert's feed-forward length: qwen3moe's and gpt-oss's own (default n_ff), llama's n_ff.
std::int64_t synth_expert_ff(const SynthOptions& o) {
  return (o.arch == "qwen3moe" || o.arch == "gpt-oss") && o.shape.n_ff_exp > 0 ? o.shape.n_ff_exp : o.shape.n_ff;
}
// gpt-oss's experts take --type (MXFP4 as the real model ships); its other matrices the same
// type, or Q8_0 when that is MXFP4 (which llama.cpp keeps to experts).
GgmlType synth_dense_type(const SynthOptions& o) {
  return o.arch == "gpt-oss" && o.type == GgmlType::MXFP4 ? GgmlType::Q8_0 : o.type;
}
// gpt-oss's sliding window: --sliding-window, else the real model's 128.
constexpr std::int64_t kGptOssWindow = 128;
std::int64_t synth_window(const SynthOptions& o) {
  return o.arch == "gpt-oss" && o.sliding_window == 0 ? kGptOssWindow : o.sliding_window;
}
// Column 0 of every embedding row when the router is skewed: the direction each token's residual
// stream carries (3 standard deviations of the other entries), so a router bias along it is a
// bias on every token's logits.
constexpr float kSkewColumn = 3.0f;
// gpt-oss's rope_scaling: factor 32 over an original context of 4096.
constexpr float kGptOssYarnFactor = 32.0f;
constexpr std::uint32_t kGptOssYarnContext = 4096;
}  // namespace

void validate_synth_options(const SynthOptions& o) {
  const SynthShape& s = o.shape;
  if (o.arch != "llama" && o.arch != "qwen2" && o.arch != "gemma3" && o.arch != "qwen3moe" && o.arch != "gpt-oss") {
    throw std::invalid_argument(fmt::format("synth: --arch {}: must be llama, qwen2, gemma3, qwen3moe or gpt-oss", o.arch));
  }
  if (!s.arch.empty() && s.arch != o.arch) {
    throw std::invalid_argument(fmt::format("synth: the shape is a {} model; it cannot be written as --arch {}", s.arch, o.arch));
  }
  const bool moe_arch = o.arch == "llama" || o.arch == "qwen3moe" || o.arch == "gpt-oss";
  if (s.n_expert > 0 && !moe_arch) {
    throw std::invalid_argument(
        fmt::format("synth: --experts applies to --arch qwen3moe and llama (Mixtral), and gpt-oss, not {}", o.arch));
  }
  if ((o.arch == "qwen3moe" || o.arch == "gpt-oss") && s.n_expert == 0) {
    throw std::invalid_argument(fmt::format("synth: --arch {} needs --experts N and --experts-used K", o.arch));
  }
  if (s.n_expert > 0) {
    if (s.n_expert > kMaxSynthExperts) {
      throw std::invalid_argument(fmt::format("synth: --experts {} is out of range: expected 1 to {}", s.n_expert, kMaxSynthExperts));
    }
    if (s.n_expert_used < 1 || s.n_expert_used > s.n_expert) {
      throw std::invalid_argument(
          fmt::format("synth: --experts-used {} is out of range: expected 1 to --experts {}", s.n_expert_used, s.n_expert));
    }
    if (o.arch == "llama" && s.n_ff_exp != 0 && s.n_ff_exp != s.n_ff) {
      throw std::invalid_argument("synth: --expert-ff applies to --arch qwen3moe; llama's experts are --ff wide");
    }
    if (s.n_ff_exp < 0 || s.n_ff_exp > kMaxSynthFf) {
      throw std::invalid_argument(fmt::format("synth: --expert-ff {} is out of range: expected 1 to {}", s.n_ff_exp, kMaxSynthFf));
    }
  } else if (s.n_expert_used != 0 || s.n_ff_exp != 0) {
    throw std::invalid_argument("synth: --experts-used and --expert-ff need --experts N");
  } else if (s.n_expert < 0) {
    throw std::invalid_argument(fmt::format("synth: --experts {} is out of range: expected 1 to {}", s.n_expert, kMaxSynthExperts));
  }
  if (!(o.router_skew >= 0.0f && o.router_skew <= kMaxSynthRouterSkew)) {
    throw std::invalid_argument(fmt::format("synth: --router-skew {} is out of range: expected 0 to {}", o.router_skew,
                                            kMaxSynthRouterSkew));
  }
  if (o.router_skew > 0.0f && s.n_expert == 0) throw std::invalid_argument("synth: --router-skew needs --experts N");
  const auto check_range = [](const char* flag, std::int64_t v, std::int64_t lo, std::int64_t hi) {
    if (v < lo || v > hi) throw std::invalid_argument(fmt::format("synth: {} {} is out of range: expected {} to {}", flag, v, lo, hi));
  };
  check_range("--embd", s.n_embd, 1, kMaxSynthEmbd);
  check_range("--layers", s.n_layer, 1, kMaxSynthLayers);
  check_range("--heads", s.n_head, 1, kMaxSynthHeads);
  check_range("--kv-heads", s.n_head_kv, 1, kMaxSynthHeads);
  check_range("--ff", s.n_ff, 1, kMaxSynthFf);
  check_range("context length", s.n_ctx, 1, std::numeric_limits<std::uint32_t>::max());
  check_range("--head-dim", o.head_dim, 0, kMaxSynthHeadDim);
  check_range("--sliding-window", o.sliding_window, 0, std::numeric_limits<std::uint32_t>::max());
  check_range("--swa-pattern", o.swa_pattern, -1, std::numeric_limits<std::uint32_t>::max());
  if (!(o.final_softcap >= 0.0f) || !std::isfinite(o.final_softcap)) {
    throw std::invalid_argument(fmt::format("synth: --final-softcap {} must be a finite number >= 0", o.final_softcap));
  }
  if (o.head_dim > 0 && o.arch != "gemma3" && o.arch != "qwen3moe" && o.arch != "gpt-oss") {
    throw std::invalid_argument(
        "synth: --head-dim applies to --arch gemma3, qwen3moe and gpt-oss (llama and qwen2 use embd / heads)");
  }
  if (o.arch == "gpt-oss" && o.tied_output) {
    throw std::invalid_argument("synth: --tied: gpt-oss has its own output.weight (llama.cpp requires it)");
  }
  if (synth_head_dim(o) == 0 || (o.head_dim == 0 && s.head_dim == 0 && s.n_embd % s.n_head != 0)) {
    throw std::invalid_argument(fmt::format("synth: --embd {} is not a multiple of --heads {}", s.n_embd, s.n_head));
  }
  if (s.n_head % s.n_head_kv != 0) {
    throw std::invalid_argument(fmt::format("synth: --heads {} is not a multiple of --kv-heads {}", s.n_head, s.n_head_kv));
  }
  const std::int64_t head_dim = synth_head_dim(o);
  if (head_dim % 2 != 0) {
    throw std::invalid_argument(fmt::format("synth: the head dimension {} is odd; rope rotates pairs", head_dim));
  }
  // Every matrix row must be whole quant blocks: rows are n_embd long (n_head * head_dim for
  // attn_output, n_ff for ffn_down).
  const auto check_rows = [](const char* what, std::int64_t length, GgmlType type, const char* type_flag) {
    const auto traits = ggml_type_traits(static_cast<std::uint32_t>(type));
    if (!traits) throw std::invalid_argument(fmt::format("synth: {} is not a known ggml type", type_flag));
    if (length % std::int64_t(traits->block_elements) != 0) {
      throw std::invalid_argument(fmt::format("synth: {} {} is not a multiple of {}'s block of {} ({})", what, length,
                                              traits->name, traits->block_elements, type_flag));
    }
  };
  check_rows("--embd", s.n_embd, o.type, "--type");
  check_rows("--embd", s.n_embd, synth_dense_type(o), "--type");
  check_rows("--embd", s.n_embd, o.embedding_type, "--embedding-type");
  check_rows("--heads x head dimension", s.n_head * head_dim, synth_dense_type(o), "--type");
  if (o.arch != "gpt-oss") check_rows("--ff", s.n_ff, o.type, "--type");  // gpt-oss has no dense FFN
  if (s.n_expert > 0) check_rows("--expert-ff", synth_expert_ff(o), o.type, "--type");
}

namespace {

// One tensor of a synthetic model: its table entry and the function that makes its bytes.
struct SynthTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<std::uint64_t> dims;
  std::uint64_t bytes = 0;
  std::function<void(const gguf::Writer::ByteSink&)> generate;
};

// A synthetic model before any byte of it is written: its metadata in order and its tensors.
struct SynthModel {
  std::vector<std::pair<std::string, gguf::Value>> metadata;
  std::vector<SynthTensor> tensors;
};

// An F32 vector handed over whole (norms, biases, rope factors: a few KiB).
std::function<void(const gguf::Writer::ByteSink&)> whole(std::function<std::vector<std::byte>()> make) {
  return [make = std::move(make)](const gguf::Writer::ByteSink& sink) { sink(make()); };
}

SynthModel build_model(const SynthOptions& o) {
  validate_synth_options(o);
  const bool gemma = o.arch == "gemma3";
  const bool moe = o.shape.n_expert > 0;
  const bool skew = moe && o.router_skew > 0.0f;
  // The tokenizer.* keys: copied from --vocab-from, or the built-in vocabulary of vocab_size.
  std::vector<std::pair<std::string, gguf::Value>> vocab_keys;
  if (o.vocab_from.empty()) {
    vocab_keys = builtin_vocab_metadata(o.vocab_size);
  } else {
    gguf::File vocab = gguf::File::open(o.vocab_from);
    if (!vocab.get_string_array("tokenizer.ggml.tokens")) {
      throw std::runtime_error(fmt::format("{}: has no tokenizer.ggml.tokens to copy", o.vocab_from));
    }
    for (const auto& [key, value] : vocab.metadata()) {
      if (key.rfind("tokenizer.", 0) == 0) vocab_keys.emplace_back(key, value);
    }
  }
  if (!o.chat_template.empty()) {
    std::erase_if(vocab_keys, [](const auto& kv) { return kv.first == "tokenizer.chat_template"; });
    vocab_keys.emplace_back("tokenizer.chat_template", gguf::Value::string(o.chat_template));
  }
  std::int64_t n_vocab = 0;
  for (const auto& [key, value] : vocab_keys) {
    if (key == "tokenizer.ggml.tokens") n_vocab = std::int64_t(value.array_size());
  }
  if (n_vocab < 1 || n_vocab > kMaxSynthVocab) {
    throw std::invalid_argument(fmt::format("synth: {} has {} tokens in tokenizer.ggml.tokens, expected 1 to {}",
                                            o.vocab_from.empty() ? "the built-in vocabulary" : o.vocab_from, n_vocab, kMaxSynthVocab));
  }
  const SynthShape& s = o.shape;
  const std::int64_t head_dim = synth_head_dim(o);
  const std::int64_t q_dim = s.n_head * head_dim;
  const std::int64_t ff_exp = synth_expert_ff(o);

  SynthModel model;
  // Keys in the order they are set; a key set twice keeps its first place (gguf::Writer::set).
  const auto set = [&](std::string key, gguf::Value v) {
    for (auto& kv : model.metadata) {
      if (kv.first == key) {
        kv.second = std::move(v);
        return;
      }
    }
    model.metadata.emplace_back(std::move(key), std::move(v));
  };
  const auto set_u32 = [&](std::string key, std::uint32_t v) { set(std::move(key), gguf::Value::unsigned_int(gguf::ValueType::u32, v)); };
  const auto set_f32 = [&](std::string key, float v) { set(std::move(key), gguf::Value::f32(v)); };
  const std::string a = o.arch + ".";
  set("general.architecture", gguf::Value::string(o.arch));
  set("general.name", gguf::Value::string(fmt::format("sluice-synth-{}-{}", o.arch, s.n_embd)));
  set_u32("general.file_type", 0);
  set_u32(a + "context_length", std::uint32_t(s.n_ctx));
  set_u32(a + "embedding_length", std::uint32_t(s.n_embd));
  set_u32(a + "block_count", std::uint32_t(s.n_layer));
  set_u32(a + "feed_forward_length", std::uint32_t(s.n_ff));
  set_u32(a + "attention.head_count", std::uint32_t(s.n_head));
  set_u32(a + "attention.head_count_kv", std::uint32_t(s.n_head_kv));
  set_u32(a + "rope.dimension_count", std::uint32_t(head_dim));
  const bool gpt_oss = o.arch == "gpt-oss";
  // gpt-oss: rope_theta 150000.
  const float rope_base =
      o.llama3_rope ? 500000.0f : (o.arch == "llama" ? 10000.0f : (gpt_oss ? 150000.0f : 1000000.0f));
  set_f32(a + "rope.freq_base", rope_base);
  set_f32(a + "attention.layer_norm_rms_epsilon", gemma ? 1e-6f : 1e-5f);
  if (moe) {  // the keys llama.cpp reads for experts (qwen3moe: and each expert's width)
    set_u32(a + "expert_count", std::uint32_t(s.n_expert));
    set_u32(a + "expert_used_count", std::uint32_t(s.n_expert_used));
    if (o.arch == "qwen3moe" || gpt_oss) set_u32(a + "expert_feed_forward_length", std::uint32_t(ff_exp));
  }
  if (gpt_oss) {  // the keys convert_hf_to_gguf writes for gpt-oss: the window, YaRN 32 over 4096
    set_u32(a + "attention.sliding_window", std::uint32_t(synth_window(o)));
    set(a + "rope.scaling.type", gguf::Value::string("yarn"));
    set_f32(a + "rope.scaling.factor", kGptOssYarnFactor);
    set_u32(a + "rope.scaling.original_context_length", kGptOssYarnContext);
    if (o.swa_pattern >= 0) set_u32(a + "attention.sliding_window_pattern", std::uint32_t(o.swa_pattern));
  }
  if (o.arch == "qwen3moe" || gpt_oss) {
    set_u32(a + "attention.key_length", std::uint32_t(head_dim));
    set_u32(a + "attention.value_length", std::uint32_t(head_dim));
  }
  if (gemma) {  // the keys Gemma 3's converter writes (and the optional ones llama.cpp reads)
    set_u32(a + "attention.key_length", std::uint32_t(head_dim));
    set_u32(a + "attention.value_length", std::uint32_t(head_dim));
    if (o.sliding_window > 0) set_u32(a + "attention.sliding_window", std::uint32_t(o.sliding_window));
    if (o.swa_pattern >= 0) set_u32(a + "attention.sliding_window_pattern", std::uint32_t(o.swa_pattern));
    if (o.final_softcap > 0) set_f32(a + "final_logit_softcapping", o.final_softcap);
  }
  for (auto& [key, value] : vocab_keys) set(key, std::move(value));

  std::uint64_t seed = o.seed * 1000003;
  auto next_seed = [&] { return seed = mix(seed); };
  const std::int64_t kv_dim = s.n_head_kv * head_dim;
  auto add = [&](const std::string& name, GgmlType type, std::vector<std::uint64_t> dims,
                 std::function<void(const gguf::Writer::ByteSink&)> generate) {
    std::uint64_t elements = 1;
    for (std::uint64_t d : dims) elements *= d;  // validate_synth_options bounds every dim
    const std::uint64_t bytes = elements / cpu::block_elements(type) * cpu::row_bytes(type, cpu::block_elements(type));
    model.tensors.push_back(SynthTensor{name, type, std::move(dims), bytes, std::move(generate)});
  };
  // A rows x cols matrix (dims {cols, rows}) generated in chunks of rows.
  auto matrix = [&](GgmlType type, std::int64_t rows, std::int64_t cols, float scale,
                    std::function<float(std::int64_t)> first_column = {}) {
    return [=, seed = next_seed()](const gguf::Writer::ByteSink& sink) {
      random_matrix(type, rows, cols, seed, scale, sink, first_column);
    };
  };
  auto norm = [&](std::int64_t n) { return whole([=, seed = next_seed()] { return norm_weights(n, seed); }); };
  // Entries ~1 (llama, qwen2); Gemma's forward multiplies them by sqrt(n_embd), and its head is
  // the embedding: entries ~1/sqrt(n_embd) keep both the stream and the logits O(1).
  const float embedding_scale = gemma ? 1.0f : std::sqrt(float(s.n_embd));
  add("token_embd.weight", o.embedding_type, {std::uint64_t(s.n_embd), std::uint64_t(n_vocab)},
      matrix(o.embedding_type, n_vocab, s.n_embd, embedding_scale,
             skew ? std::function<float(std::int64_t)>([](std::int64_t) { return kSkewColumn; }) : nullptr));
  for (std::int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = fmt::format("blk.{}.", il);
    const auto E = std::uint64_t(s.n_embd), Q = std::uint64_t(q_dim), K = std::uint64_t(kv_dim), F = std::uint64_t(s.n_ff);
    add(p + "attn_norm.weight", GgmlType::F32, {E}, norm(s.n_embd));
    // Q and K get a larger scale so attention is not uniform: softmax then has something to pick.
    const GgmlType dense = synth_dense_type(o);
    add(p + "attn_q.weight", dense, {E, Q}, matrix(dense, q_dim, s.n_embd, 2.0f));
    add(p + "attn_k.weight", dense, {E, K}, matrix(dense, kv_dim, s.n_embd, 2.0f));
    add(p + "attn_v.weight", dense, {E, K}, matrix(dense, kv_dim, s.n_embd, 1.0f));
    auto bias_of = [&](std::int64_t n, float amplitude) {
      return whole([=, seed = next_seed()] { return bias(n, seed, amplitude); });
    };
    if (gpt_oss) {
      add(p + "attn_q.bias", GgmlType::F32, {Q}, bias_of(q_dim, 0.2f));
      add(p + "attn_k.bias", GgmlType::F32, {K}, bias_of(kv_dim, 0.2f));
      add(p + "attn_v.bias", GgmlType::F32, {K}, bias_of(kv_dim, 0.2f));
      add(p + "attn_output.bias", GgmlType::F32, {E}, bias_of(s.n_embd, 0.2f));
      // Sink logits in [-2, 2]: as large as the scores, so the sink takes a real share.
      add(p + "attn_sinks.weight", GgmlType::F32, {std::uint64_t(s.n_head)}, bias_of(s.n_head, 4.0f));
    }
    if (o.arch == "qwen2") {
      add(p + "attn_q.bias", GgmlType::F32, {E}, whole([=, seed = next_seed()] { return bias(s.n_embd, seed); }));
      add(p + "attn_k.bias", GgmlType::F32, {K}, whole([=, seed = next_seed()] { return bias(kv_dim, seed); }));
      add(p + "attn_v.bias", GgmlType::F32, {K}, whole([=, seed = next_seed()] { return bias(kv_dim, seed); }));
    }
    if (gemma || o.arch == "qwen3moe") {  // per-head RMSNorm weights of q and k
      add(p + "attn_q_norm.weight", GgmlType::F32, {std::uint64_t(head_dim)}, norm(head_dim));
      add(p + "attn_k_norm.weight", GgmlType::F32, {std::uint64_t(head_dim)}, norm(head_dim));
    }
    // Residual branches scaled down (1/sqrt(2 * layers)) so the stream stays O(1) through depth.
    // (Gemma normalises each branch after it, so there the scale only sets the norm's input.)
    const float branch = 1.0f / std::sqrt(2.0f * float(s.n_layer));
    add(p + "attn_output.weight", dense, {Q, E}, matrix(dense, s.n_embd, q_dim, branch));
    if (gemma) add(p + "post_attention_norm.weight", GgmlType::F32, {E}, norm(s.n_embd));
    // gpt-oss names its FFN norm post_attention_norm.
    add(p + (gpt_oss ? "post_attention_norm.weight" : "ffn_norm.weight"), GgmlType::F32, {E}, norm(s.n_embd));
    if (moe) {
      // The router in F32 (as converters keep it); logits of unit spread. Skewed: column 0 (the
      // direction every row of the stream carries, kSkewColumn after the norm) holds the bias
      // -S ln(rank + 1) / kSkewColumn, the ranks a permutation of this layer's own.
      const auto X = std::uint64_t(s.n_expert), FX = std::uint64_t(ff_exp);
      std::function<float(std::int64_t)> router_bias;
      if (skew) {
        std::vector<std::int64_t> rank(static_cast<std::size_t>(s.n_expert));
        std::iota(rank.begin(), rank.end(), 0);
        std::uint64_t state = next_seed();
        for (std::size_t i = rank.size(); i > 1; --i) std::swap(rank[i - 1], rank[(state = mix(state)) % i]);  // Fisher-Yates
        router_bias = [rank, skew_s = o.router_skew](std::int64_t e) {
          return -skew_s * std::log(float(rank[std::size_t(e)] + 1)) / kSkewColumn;
        };
      }
      add(p + "ffn_gate_inp.weight", GgmlType::F32, {E, X}, matrix(GgmlType::F32, s.n_expert, s.n_embd, 1.0f, router_bias));
      add(p + "ffn_gate_exps.weight", o.type, {E, FX, X}, matrix(o.type, ff_exp * s.n_expert, s.n_embd, 1.0f));
      add(p + "ffn_up_exps.weight", o.type, {E, FX, X}, matrix(o.type, ff_exp * s.n_expert, s.n_embd, 1.0f));
      add(p + "ffn_down_exps.weight", o.type, {FX, E, X}, matrix(o.type, s.n_embd * s.n_expert, ff_exp, 2.0f * branch));
      if (gpt_oss) {  // the router's bias and each expert's biases (a row per expert)
        add(p + "ffn_gate_inp.bias", GgmlType::F32, {X}, bias_of(s.n_expert, 0.5f));
        add(p + "ffn_gate_exps.bias", GgmlType::F32, {FX, X}, bias_of(ff_exp * s.n_expert, 0.5f));
        add(p + "ffn_up_exps.bias", GgmlType::F32, {FX, X}, bias_of(ff_exp * s.n_expert, 0.5f));
        add(p + "ffn_down_exps.bias", GgmlType::F32, {E, X}, bias_of(s.n_embd * s.n_expert, 0.1f));
      }
    } else {
      add(p + "ffn_gate.weight", o.type, {E, F}, matrix(o.type, s.n_ff, s.n_embd, 1.0f));
      add(p + "ffn_up.weight", o.type, {E, F}, matrix(o.type, s.n_ff, s.n_embd, 1.0f));
      add(p + "ffn_down.weight", o.type, {F, E}, matrix(o.type, s.n_embd, s.n_ff, 2.0f * branch));
    }
    if (gemma) add(p + "post_ffw_norm.weight", GgmlType::F32, {E}, norm(s.n_embd));
  }
  if (o.llama3_rope) {
    // As llama.cpp's convert_hf_to_gguf for rope_scaling.rope_type == "llama3".
    constexpr double kFactor = 8.0, kLowFreqFactor = 1.0, kHighFreqFactor = 4.0, kOriginalContext = 8192.0;
    const double low_freq_wavelen = kOriginalContext / kLowFreqFactor, high_freq_wavelen = kOriginalContext / kHighFreqFactor;
    std::vector<float> factors;
    for (std::int64_t i = 0; i < head_dim; i += 2) {
      const double freq = 1.0 / std::pow(double(rope_base), double(i) / double(head_dim));
      const double wavelen = 2.0 * M_PI / freq;
      if (wavelen < high_freq_wavelen) {
        factors.push_back(1.0f);
      } else if (wavelen > low_freq_wavelen) {
        factors.push_back(float(kFactor));
      } else {
        const double smooth = (kOriginalContext / wavelen - kLowFreqFactor) / (kHighFreqFactor - kLowFreqFactor);
        factors.push_back(float(1.0 / ((1.0 - smooth) / kFactor + smooth)));
      }
    }
    std::vector<std::byte> bytes(factors.size() * sizeof(float));
    std::memcpy(bytes.data(), factors.data(), bytes.size());
    add("rope_freqs.weight", GgmlType::F32, {std::uint64_t(factors.size())}, whole([bytes] { return bytes; }));
  }
  add("output_norm.weight", GgmlType::F32, {std::uint64_t(s.n_embd)}, norm(s.n_embd));
  if (!o.tied_output && !gemma) {
    // Scale 4: logits spread over a few units, so top-1 is decisive but not one-hot.
    const GgmlType head = synth_dense_type(o);
    add("output.weight", head, {std::uint64_t(s.n_embd), std::uint64_t(n_vocab)}, matrix(head, n_vocab, s.n_embd, 4.0f));
  }
  return model;
}

gguf::SplitModel split_model_of(const SynthModel& model) {
  gguf::SplitModel split;
  split.source = "synth";
  split.metadata = model.metadata;
  for (const SynthTensor& t : model.tensors) {
    split.tensors.push_back(gguf::SplitTensor{t.name, static_cast<std::uint32_t>(t.type), t.dims, t.bytes});
  }
  return split;
}

// The one-file writer of `model`; `generate(i, sink)` makes tensor i's bytes when write() reaches it.
gguf::Writer single_writer(const SynthModel& model,
                           const std::function<void(std::size_t, const gguf::Writer::ByteSink&)>& generate) {
  gguf::Writer w;
  for (const auto& [key, value] : model.metadata) w.set(key, value);
  for (std::size_t i = 0; i < model.tensors.size(); ++i) {
    const SynthTensor& t = model.tensors[i];
    w.add_tensor_streamed(t.name, static_cast<std::uint32_t>(t.type), t.dims,
                          [&generate, i](const gguf::Writer::ByteSink& sink) { generate(i, sink); });
  }
  return w;
}

SynthLayout layout_of(const std::string& path, const SynthModel& model, std::uint64_t split_max_bytes) {
  SynthLayout layout;
  for (const SynthTensor& t : model.tensors) {
    std::uint64_t elements = 1;
    for (std::uint64_t d : t.dims) elements *= d;
    layout.parameters += elements;
    layout.tensor_bytes += t.bytes;
  }
  if (split_max_bytes == 0) {
    gguf::PlannedShard file;
    file.path = path;
    file.tensor_count = model.tensors.size();
    file.file_bytes = single_writer(model, {}).file_bytes();
    layout.files.push_back(file);
  } else {
    gguf::SplitOptions options;
    options.max_bytes = split_max_bytes;
    gguf::SplitPlan plan = gguf::plan_split(split_model_of(model), synth_split_prefix(path), options);
    layout.files = std::move(plan.shards);
  }
  for (const gguf::PlannedShard& f : layout.files) layout.file_bytes += f.file_bytes;
  return layout;
}

// Refuses (nothing written) when the directory the files go to has less free space than they
// take: their temporary files are written there in full before any is renamed.
void check_free_space(const SynthLayout& layout) {
  const std::filesystem::path parent = std::filesystem::path(layout.files.front().path).parent_path();
  const std::string directory = parent.empty() ? std::string(".") : parent.string();
  // A directory that cannot be asked is left to the write, which names the file and the errno.
  const std::optional<std::uint64_t> free = free_disk_bytes(directory);
  if (!free) return;
  const std::uint64_t free_bytes = *free;
  if (free_bytes < layout.file_bytes) {
    const std::string output = layout.files.size() == 1 ? layout.files.front().path
                                                        : fmt::format("{} ... {}", layout.files.front().path,
                                                                      layout.files.back().path);
    throw Exception(ErrorContext{ErrorKind::io, layout.files.front().path, {}, -1, -1, ENOSPC},
                    fmt::format("synth {}: not enough free space in {}: the model needs {} bytes ({}), {} bytes ({}) "
                                "are free; nothing written",
                                output, directory, layout.file_bytes, format_bytes(layout.file_bytes), free_bytes,
                                format_bytes(free_bytes)));
  }
}

}  // namespace

std::string synth_split_prefix(const std::string& path) {
  constexpr std::string_view kSuffix = ".gguf";
  if (path.size() > kSuffix.size() && path.compare(path.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
    return path.substr(0, path.size() - kSuffix.size());
  }
  return path;
}

SynthLayout plan_synthetic_gguf(const std::string& path, const SynthOptions& options, std::uint64_t split_max_bytes) {
  return layout_of(path, build_model(options), split_max_bytes);
}

SynthLayout write_synthetic_gguf(const std::string& path, const SynthOptions& options, const SynthWriteOptions& write) {
  const SynthModel model = build_model(options);
  const SynthLayout layout = layout_of(path, model, write.split_max_bytes);
  if (write.planned) write.planned(layout);
  if (options.no_data) {
    // The header and a hole of the data's size (--plan-only at any shape): no space to check.
    if (write.split_max_bytes != 0) throw std::invalid_argument("synth: --no-data writes one file; leave out --split-max-size");
    single_writer(model, {}).write_without_data(path);
    return layout;
  }
  check_free_space(layout);
  // Each tensor's bytes are made as the writer reaches it, a chunk of rows at a time, so a 100B
  // model needs a few MiB, not its size; the files are renamed into place at the end.
  std::uint64_t done = 0;
  const auto generate = [&](std::size_t i, const gguf::Writer::ByteSink& sink) {
    model.tensors[i].generate([&](std::span<const std::byte> piece) {
      sink(piece);
      done += piece.size();
      if (write.progress) write.progress(done, layout.tensor_bytes);
    });
  };
  if (write.split_max_bytes == 0) {
    single_writer(model, generate).write(path);
  } else {
    gguf::SplitPlan plan;
    plan.shards = layout.files;
    const gguf::SplitModel split = split_model_of(model);
    gguf::write_split(
        split, plan,
        [&](gguf::Writer& w, std::size_t i) {
          const SynthTensor& t = model.tensors[i];
          w.add_tensor_streamed(t.name, static_cast<std::uint32_t>(t.type), t.dims,
                                [&generate, i](const gguf::Writer::ByteSink& sink) { generate(i, sink); });
        },
        {});
  }
  return layout;
}

}  // namespace sluice
