// `sluice run`: generate text from a GGUF or pack with the weights in RAM (llama.cpp's flag
// names), streaming tokens to stdout and ending with a timing line on stderr.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "common/memory.hpp"
#include "common/trace.hpp"
#include <nlohmann/json.hpp>
#include "common/units.hpp"
#include "engine/generate.hpp"
#include "engine/planner.hpp"
#include "engine/streamed_model.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  std::int32_t n_predict = 64;
  std::int64_t n_ctx = 0;  // 0: min(model's trained context, 4096)
  int threads = 0;
  SamplingParams sampling;
  bool no_special = false;
  std::string mem_budget;       // empty: 80% of available RAM
  std::string stream = "auto";  // auto: stream a pack whose weights exceed the budget
  unsigned slots = 4;
  std::string trace;  // Chrome/Perfetto trace output
};

// Default budget: 80% of what the kernel says is available (DESIGN.md §5).
std::uint64_t default_budget() { return available_memory_bytes() / 10 * 8; }

void run(const RunOptions& o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) throw std::runtime_error(fmt::format("cannot read prompt file {}", o.prompt_file));
    std::ostringstream text;
    text << in.rdbuf();
    prompt = text.str();
  }
  const std::uint64_t budget = o.mem_budget.empty() ? default_budget() : parse_size_option("--mem-budget", o.mem_budget);
  // 4096 positions of fp16 K and V is what most prompts need and keeps big models' caches modest.
  constexpr std::int64_t kDefaultCtxCap = 4096;
  GenerateOptions options;
  options.n_predict = o.n_predict;
  options.sampling = o.sampling;
  auto print_piece = [](const std::string& piece) { std::cout << piece << std::flush; };

  std::unique_ptr<Model> model;
  std::unique_ptr<StreamedModel> streamed;
  bool is_pack = false;
  {
    std::ifstream probe(o.model, std::ios::binary);
    char magic[8] = {};
    probe.read(magic, 8);
    is_pack = std::string(magic, 8) == "SLUICEPK";
  }
  bool stream = o.stream == "on";
  if (o.stream == "auto" && is_pack) {
    pack::Pack pack = pack::Pack::open(o.model);
    std::uint64_t weights = 0;
    for (const auto& t : pack.tensors()) weights += t.bytes;
    stream = weights > budget / 10 * 9;  // leave a tenth for KV cache and activations
  }
  if (stream && !is_pack) throw std::runtime_error(fmt::format("{}: streaming needs a pack; run `sluice convert {} OUT.sluice`", o.model, o.model));

  GenerateStats stats;
  std::int64_t n_ctx = 0;
  std::string mode;
  TraceRecorder trace(!o.trace.empty());
  if (!o.trace.empty() && !stream) throw std::runtime_error("--trace records the streaming lanes: use it with a pack and --stream on");
  if (stream) {
    StreamOptions so;
    so.prefetch.trace = &trace;
    streamed = std::make_unique<StreamedModel>(o.model, so);
    n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min(streamed->config().n_ctx_train, kDefaultCtxCap);
    tok::Tokenizer tokenizer(vocab_from_metadata(streamed->metadata()));
    std::vector<std::int32_t> ids = tokenizer.encode(prompt, true, !o.no_special);
    MemoryPlan plan = plan_memory(streamed->pack(), streamed->config(), n_ctx, std::int64_t(ids.size()), budget, o.slots, 0.0);
    print_plan(plan, std::cerr);
    streamed.reset();
    so.prefetch.slots = plan.slots;
    streamed = std::make_unique<StreamedModel>(o.model, so);
    Transformer transformer(streamed->config(), n_ctx, cpu::Threading{o.threads});
    Evaluator eval = [&](std::span<const std::int32_t> tokens, std::int64_t pos0, std::vector<float>& logits) {
      streamed->evaluate(transformer, tokens, pos0, false, logits);
    };
    std::cout << prompt << std::flush;
    stats = generate(eval, n_ctx, tokenizer, ids, options, print_piece);
    const StreamStats ss = streamed->stats();
    mode = fmt::format("streamed pack: {} passes, {} read, {:.2f} GB/s while reading", ss.passes, format_bytes(ss.bytes_streamed),
                       ss.io_busy.count() > 0 ? double(ss.bytes_streamed) / double(ss.io_busy.count()) : 0.0);
  } else {
    model = Model::open(o.model);
    n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min(model->config().n_ctx_train, kDefaultCtxCap);
    tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
    std::vector<std::int32_t> ids = tokenizer.encode(prompt, true, !o.no_special);
    Transformer transformer(model->config(), n_ctx, cpu::Threading{o.threads});
    std::cout << prompt << std::flush;
    stats = generate(transformer, *model, tokenizer, ids, options, print_piece);
    mode = fmt::format("in RAM ({})", model->is_pack() ? "pack" : "gguf");
  }
  std::cout << std::endl;
  if (!o.trace.empty()) {
    trace.set_summary({{"prompt_tokens", stats.prompt_tokens}, {"generated_tokens", stats.generated_tokens},
                       {"prompt_tps", stats.prompt_tps()}, {"generation_tps", stats.generation_tps()}, {"mode", mode}});
    trace.write(o.trace);
    std::cerr << fmt::format("trace written to {} (open in ui.perfetto.dev or chrome://tracing)\n", o.trace);
  }
  std::cerr << fmt::format("\nsluice run: prompt {} tokens at {:.2f} tok/s | generation {} tokens at {:.2f} tok/s | {} | ctx {}\n",
                           stats.prompt_tokens, stats.prompt_tps(), stats.generated_tokens, stats.generation_tps(), mode, n_ctx);
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a GGUF or .sluice model, streaming tokens to stdout. A pack whose weights exceed\n--mem-budget streams its blocks from disk every pass (see --stream); the plan is printed first.");
  cmd->add_option("-m,--model", o->model, "Model file: GGUF or .sluice pack")->required()->check(CLI::ExistingFile);
  auto* p = cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  auto* f = cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  p->excludes(f);
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size (0: the model's, capped at 4096)")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0: all cores)")->capture_default_str();
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1: off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Tokens the penalty looks back over")->capture_default_str();
  cmd->add_option("-s,--seed", o->sampling.seed, "RNG seed")->capture_default_str();
  cmd->add_flag("--no-special", o->no_special, "Treat special-token text in the prompt as plain text");
  cmd->add_option("--mem-budget", o->mem_budget, "Memory budget, e.g. 4GiB (default: 80% of available RAM)");
  cmd->add_option("--stream", o->stream, "Stream blocks from a pack: auto (when the weights exceed the budget), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--trace", o->trace, "Write a Chrome/Perfetto trace (lanes io, decompress, compute) to this file");
  cmd->add_option("--slots", o->slots, "Ring slots when streaming (the planner may lower it to fit the budget)")
      ->capture_default_str()
      ->check(CLI::Range(2, 64));
  cmd->callback([o] { run(*o); });
}

}  // namespace sluice
