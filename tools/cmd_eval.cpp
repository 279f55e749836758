// `sluice eval`: machine-readable access to the forward pass and the tokenizer, for parity
// checks against llama.cpp (tests/parity/) and for debugging. Prints one JSON object:
//   {"tokens": [...], "n_vocab": V, "logits_rows": R, "greedy": [...]}
// and writes the logits of the first R positions as float32 (R x V, row-major) to --logits-out.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/generate.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct EvalOptions {
  std::string model, prompt, tokens, logits_out;
  std::int64_t logits_rows = 0;
  std::int32_t greedy = 0;
  std::int64_t n_ctx = 512;
  int threads = 0;
  bool tokenize_only = false;
  bool no_bos = false;
};

// "1,2,3" -> ids, each in [0, n_vocab): an id past the vocabulary would index past the embedding.
std::vector<std::int32_t> parse_ids(const std::string& text, std::int64_t n_vocab) {
  std::vector<std::int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    long long id = -1;
    try {
      std::size_t used = 0;
      id = std::stoll(item, &used);
      if (used != item.size()) id = -1;
    } catch (const std::exception&) {
    }
    if (id < 0 || id >= n_vocab) {
      throw CLI::ValidationError("--tokens", fmt::format("'{}' is not a token id of this model (0..{})", item, n_vocab - 1));
    }
    ids.push_back(std::int32_t(id));
  }
  return ids;
}

void eval(const EvalOptions& o) {
  auto model = Model::open(o.model);
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  std::vector<std::int32_t> ids =
      o.tokens.empty() ? tokenizer.encode(o.prompt, !o.no_bos, true) : parse_ids(o.tokens, model->config().n_vocab);
  if (!o.tokenize_only) {
    if (ids.empty()) throw std::invalid_argument("nothing to evaluate: the prompt has no tokens");
    if (std::int64_t(ids.size()) + o.greedy > o.n_ctx) {
      throw std::length_error(fmt::format("{} tokens + {} greedy exceed the context of {} (raise -c)", ids.size(), o.greedy, o.n_ctx));
    }
  }
  nlohmann::json out;
  out["tokens"] = ids;
  out["n_vocab"] = model->config().n_vocab;
  if (!o.tokenize_only) {
    Transformer transformer(model->config(), o.n_ctx, cpu::Threading{o.threads});
    std::vector<float> logits;
    evaluate(transformer, *model, ids, 0, true, logits);
    const std::int64_t rows = std::min<std::int64_t>(o.logits_rows, std::int64_t(ids.size()));
    if (!o.logits_out.empty()) {
      std::ofstream file(o.logits_out, std::ios::binary);
      file.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(rows * model->config().n_vocab * sizeof(float)));
      file.close();
      if (!file) throw std::runtime_error(fmt::format("cannot write {}: {}", o.logits_out, std::strerror(errno)));
    }
    out["logits_rows"] = rows;
    if (o.greedy > 0) {
      Transformer fresh(model->config(), o.n_ctx, cpu::Threading{o.threads});
      GenerateOptions g;
      g.n_predict = o.greedy;
      g.sampling.temperature = 0.0f;
      g.stop_at_eog = false;
      std::vector<std::int32_t> generated;
      generate(fresh, *model, tokenizer, ids, g, {}, &generated);
      out["greedy"] = generated;
      out["greedy_text"] = tokenizer.decode(generated);
    }
  }
  // Generated text may hold a token that is half of a UTF-8 character: written as U+FFFD, since
  // JSON text must be valid UTF-8 (the token ids are exact).
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand("eval", "Tokenize, evaluate and dump logits as JSON + float32 (parity checks).");
  cmd->add_option("-m,--model", o->model, "GGUF or pack")->required()->check(CLI::ExistingFile);
  cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize (BOS added unless --no-bos; special tokens parsed)");
  cmd->add_option("--tokens", o->tokens, "Comma-separated token ids instead of a prompt");
  cmd->add_option("--logits-rows", o->logits_rows, "Positions whose logits are written")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--logits-out", o->logits_out, "File for the float32 logits");
  cmd->add_option("--greedy", o->greedy, "Also generate this many tokens greedily (no early stop)")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  add_threads_option(cmd, o->threads);
  cmd->add_flag("--tokenize-only", o->tokenize_only, "Only print the token ids");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS");
  cmd->callback([o] { eval(*o); });
}

}  // namespace sluice
