// `sluice run`: generate text from a GGUF or pack with the weights in RAM (llama.cpp's flag
// names), streaming tokens to stdout and ending with a timing line on stderr.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "engine/generate.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
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
};

void run(const RunOptions& o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) throw std::runtime_error(fmt::format("cannot read prompt file {}", o.prompt_file));
    std::ostringstream text;
    text << in.rdbuf();
    prompt = text.str();
  }
  auto model = Model::open(o.model);
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  std::vector<std::int32_t> ids = tokenizer.encode(prompt, /*add_special=*/true, /*parse_special=*/!o.no_special);
  // 4096 positions of fp16 K and V is what most prompts need and keeps big models' caches modest.
  constexpr std::int64_t kDefaultCtxCap = 4096;
  std::int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min(model->config().n_ctx_train, kDefaultCtxCap);
  Transformer transformer(model->config(), n_ctx, cpu::Threading{o.threads});

  GenerateOptions options;
  options.n_predict = o.n_predict;
  options.sampling = o.sampling;
  std::cout << prompt << std::flush;
  GenerateStats stats = generate(transformer, *model, tokenizer, ids, options, [](const std::string& piece) {
    std::cout << piece << std::flush;
  });
  std::cout << std::endl;
  std::cerr << fmt::format("\nsluice run: prompt {} tokens at {:.2f} tok/s | generation {} tokens at {:.2f} tok/s | {} {} ({}), ctx {}\n",
                           stats.prompt_tokens, stats.prompt_tps(), stats.generated_tokens, stats.generation_tps(),
                           to_string(model->config().arch), model->is_pack() ? "pack" : "gguf", o.model, n_ctx);
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a GGUF or .sluice model (weights in RAM), streaming to stdout.");
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
  cmd->callback([o] { run(*o); });
}

}  // namespace sluice
