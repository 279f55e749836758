// `sluice synth`: write a synthetic GGUF (real architecture metadata and vocabulary, random
// well-scaled weights) at any shape and quant type.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>
#include <stdexcept>

#include "common/units.hpp"
#include "model/ggml_types.hpp"
#include "model/output_file.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"
#include "tools/synth.hpp"
#include "tools/synth_vocab.hpp"

namespace sluice {
namespace {

struct SynthCli {
  std::string out, arch = "llama", shape = "tiny", type = "Q4_0", embedding_type = "Q8_0", vocab_from, split_max_size;
  std::int64_t vocab_size = 512;
  std::int64_t embd = 0, layers = 0, heads = 0, kv_heads = 0, ff = 0;
  std::int64_t experts = 0, experts_used = 0, expert_ff = 0;
  float router_skew = 0.0f;
  std::string chat_template_file;
  std::uint64_t seed = 1;
  bool tied = false;
  bool llama3_rope = false;
  bool no_data = false;
  std::int64_t head_dim = 0, sliding_window = 0, swa_pattern = -1;
  float final_softcap = 0.0f;
};

GgmlType parse_type(const std::string& flag, const std::string& name) {
  auto t = ggml_type_from_name(name);
  if (!t || *t == GgmlType::Q8_1 || *t == GgmlType::Q8_K) {
    throw CLI::ValidationError(flag, "unknown or unsupported type '" + name +
                                         "' (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K MXFP4)");
  }
  return *t;
}

// Progress lines only for models that take a while to write: under 256 MiB synth takes seconds.
constexpr std::uint64_t kProgressMinBytes = 256 * MiB;

// 101,234,567: counts of this size are read at a glance only with separators.
std::string with_commas(std::uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void print_layout(const SynthLayout& layout) {
  std::cout << fmt::format("{} parameters, {} bytes ({}) in {} file(s)\n", with_commas(layout.parameters),
                           with_commas(layout.file_bytes), format_bytes(layout.file_bytes), layout.files.size());
  if (layout.files.size() > 1) {
    for (const gguf::PlannedShard& f : layout.files) {
      std::cout << fmt::format("  {}: {} tensor(s), {} bytes\n", f.path, f.tensor_count, with_commas(f.file_bytes));
    }
  }
  std::cout << std::flush;
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto o = std::make_shared<SynthCli>();
  const char* default_vocab = "../shared/models/stories260K.gguf";
  if (std::filesystem::exists(default_vocab)) o->vocab_from = default_vocab;
  CLI::App* cmd = app.add_subcommand("synth", "Write a synthetic GGUF model (random well-scaled weights, a real vocabulary).");
  cmd->add_option("output", o->out, "Output GGUF")->required();
  CLI::Option* arch = cmd->add_option("--arch", o->arch, "Architecture (llama with --experts: Mixtral)")
                         ->capture_default_str()
                         ->check(CLI::IsMember({"llama", "qwen2", "gemma3", "qwen3moe", "gpt-oss"}));
  cmd->add_option("--shape", o->shape,
                  "tiny, 1b, 7b, 13b, 70b, 100b, or the mixtures of experts qwen3-30b-a3b (qwen3moe), mixtral-8x7b "
                  "(llama), gpt-oss-120b and gpt-oss-20b (gpt-oss), whose architecture and vocabulary size they set (then --embd/--layers/... override)")
      ->capture_default_str();
  cmd->add_option("--type", o->type, "Quant type of the matrices")->capture_default_str();
  cmd->add_option("--embedding-type", o->embedding_type, "Quant type of token_embd")->capture_default_str();
  CLI::Option* vocab_from = cmd->add_option("--vocab-from", o->vocab_from,
                                            "GGUF whose tokenizer.* metadata is copied (default: stories260K from ../shared "
                                            "when present, else the built-in vocabulary)")
                                ->capture_default_str();
  CLI::Option* vocab_size =
      cmd->add_option("--vocab-size", o->vocab_size,
                      "Use the built-in vocabulary with this many tokens (e.g. 128256: a Llama 3-size embedding and head)")
          ->check(CLI::Range(kMinBuiltinVocab, kMaxBuiltinVocab));
  vocab_size->excludes(vocab_from);
  // 0 and negative values are errors, not "keep the shape's value": count() says what was given.
  CLI::Option* embd = cmd->add_option("--embd", o->embd, "Override: embedding length");
  CLI::Option* layers = cmd->add_option("--layers", o->layers, "Override: blocks");
  CLI::Option* heads = cmd->add_option("--heads", o->heads, "Override: attention heads");
  CLI::Option* kv_heads = cmd->add_option("--kv-heads", o->kv_heads, "Override: KV heads (GQA)");
  CLI::Option* ff = cmd->add_option("--ff", o->ff, "Override: feed-forward length");
  CLI::Option* experts = cmd->add_option("--experts", o->experts,
                                         "Mixture of experts (qwen3moe, gpt-oss, llama): experts per layer (llama with experts is Mixtral)");
  CLI::Option* experts_used = cmd->add_option("--experts-used", o->experts_used, "Mixture of experts: experts each token uses");
  CLI::Option* expert_ff =
      cmd->add_option("--expert-ff", o->expert_ff, "qwen3moe, gpt-oss: one expert's feed-forward length (default: --ff)");
  cmd->add_option("--chat-template-file", o->chat_template_file, "Write this Jinja text as tokenizer.chat_template (the model's own chat template)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--router-skew", o->router_skew,
                  "Mixture of experts: expert popularity follows a power law with this exponent, in a different order "
                  "per layer (0: no preference)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Weights seed")->capture_default_str();
  cmd->add_flag("--tied", o->tied, "No output.weight: the head reuses token_embd");
  cmd->add_flag("--llama3-rope", o->llama3_rope, "Llama 3.1 rope scaling (rope_freqs.weight, base 500000)");
  cmd->add_option("--head-dim", o->head_dim, "gemma3, qwen3moe, gpt-oss: key/value length per head (0: the shape's, else embd / heads; gpt-oss 64)");
  cmd->add_option("--sliding-window", o->sliding_window, "gemma3: sliding window of the local layers (0: none); gpt-oss: of its even layers (0: 128)");
  cmd->add_option("--swa-pattern", o->swa_pattern,
                  "gemma3, gpt-oss: every Nth layer is global (-1: not written, Gemma 3's 6, gpt-oss's 2; 0: all local; 1: all "
                  "global)");
  cmd->add_option("--final-softcap", o->final_softcap, "gemma3: final logit soft-cap (0: none)");
  cmd->add_flag("--no-data", o->no_data,
                "Header and tensor table only: the tensor data is a hole (a sparse file of the full size; reads as "
                "zeros), for --plan-only at any shape");
  cmd->add_option("--split-max-size", o->split_max_size,
                  "Write llama.cpp gguf-split shards OUT-00001-of-0000N.gguf ... (OUT less .gguf) of at most SIZE "
                  "(4GiB, 500MiB, bytes) each, as `sluice split --max-size` would cut the model, with no unsplit copy");
  cmd->callback([o, arch, embd, layers, heads, kv_heads, ff, experts, experts_used, expert_ff, vocab_size, vocab_from] {
    SynthOptions s;
    s.arch = o->arch;
    try {
      s.shape = synth_shape(o->shape);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("--shape", e.what());
    }
    // A named model's shape is that architecture unless --arch says otherwise (then validation
    // refuses the mix).
    if (!s.shape.arch.empty() && arch->count() == 0) s.arch = s.shape.arch;
    if (experts->count() > 0) s.shape.n_expert = o->experts;
    if (experts_used->count() > 0) s.shape.n_expert_used = o->experts_used;
    if (expert_ff->count() > 0) s.shape.n_ff_exp = o->expert_ff;
    s.router_skew = o->router_skew;
    if (!o->chat_template_file.empty()) s.chat_template = read_text_file(o->chat_template_file);
    if (embd->count() > 0) s.shape.n_embd = o->embd;
    if (layers->count() > 0) s.shape.n_layer = o->layers;
    if (heads->count() > 0) s.shape.n_head = o->heads;
    if (kv_heads->count() > 0) s.shape.n_head_kv = o->kv_heads;
    if (ff->count() > 0) s.shape.n_ff = o->ff;
    s.type = parse_type("--type", o->type);
    s.embedding_type = parse_type("--embedding-type", o->embedding_type);
    s.vocab_from = vocab_size->count() > 0 ? std::string() : o->vocab_from;
    s.vocab_size = o->vocab_size;
    // A named model's vocabulary size: the built-in vocabulary of that many tokens, unless a
    // vocabulary was asked for.
    if (s.shape.n_vocab > 0 && vocab_size->count() == 0 && vocab_from->count() == 0) {
      s.vocab_from.clear();
      s.vocab_size = s.shape.n_vocab;
    }
    s.seed = o->seed;
    s.tied_output = o->tied;
    s.llama3_rope = o->llama3_rope;
    s.head_dim = o->head_dim;
    s.sliding_window = o->sliding_window;
    s.swa_pattern = o->swa_pattern;
    s.final_softcap = o->final_softcap;
    s.no_data = o->no_data;
    try {
      validate_synth_options(s);
    } catch (const std::invalid_argument& e) {
      // A flag error: CLI11 prints it with the usage hint and exits non-zero; nothing is written.
      throw CLI::ValidationError(e.what());
    }
    SynthWriteOptions write;
    if (!o->split_max_size.empty()) write.split_max_bytes = parse_size_option("--split-max-size", o->split_max_size);
    write.planned = [&](const SynthLayout& layout) {
      print_layout(layout);
      // The vocabulary source is read while the files are written: replacing it would lose the
      // user's model.
      if (!s.vocab_from.empty()) {
        for (const gguf::PlannedShard& f : layout.files) refuse_output_that_is_input("synth", s.vocab_from, f.path);
      }
    };
    write.progress = progress_printer("synth", kProgressMinBytes);
    const SynthLayout layout = write_synthetic_gguf(o->out, s, write);
    if (layout.files.size() > 1) o->out = fmt::format("{} ... {}", layout.files.front().path, layout.files.back().path);
    const std::string experts_text =
        s.shape.n_expert > 0 ? fmt::format(", {} experts ({} per token) of ff {}", s.shape.n_expert, s.shape.n_expert_used,
                                           (s.arch == "qwen3moe" || s.arch == "gpt-oss") && s.shape.n_ff_exp > 0 ? s.shape.n_ff_exp : s.shape.n_ff)
                             : "";
    std::cout << fmt::format("wrote {} ({} {}, embd {}, {} layers, {} heads / {} kv, ff {}{}{})\n", o->out, s.arch, o->type,
                             s.shape.n_embd, s.shape.n_layer, s.shape.n_head, s.shape.n_head_kv, s.shape.n_ff, experts_text,
                             s.no_data ? ", no data: tensor bytes are a hole" : "");
  });
}

}  // namespace sluice
