// `sluice eval`: machine-readable access to the forward pass and the tokenizer, for parity
// checks against llama.cpp (tests/parity/) and for debugging. Prints one JSON object:
//   {"tokens": [...], "n_vocab": V, "logits_rows": R, "greedy": [...]}
// and writes the logits of the first R positions as float32 (R x V, row-major) to --logits-out.
// The model runs through a Session like `run` and `perplexity`: a GGUF that fits is memory-mapped,
// anything else (or --stream on) streams within --mem-budget; the plan and the mode go to stderr.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/engine.hpp"
#include "engine/session.hpp"
#include "model/model_source.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"
#include "tools/session_flags.hpp"

namespace sluice {
namespace {

struct EvalOptions {
  std::string prompt, tokens, logits_out;
  std::int64_t logits_rows = 0;
  std::int32_t greedy = 0;
  std::int64_t n_ctx = 512;
  bool tokenize_only = false;
  bool no_bos = false;
  SessionFlags flags;
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

// The ids to evaluate: --tokens, or the prompt encoded.
std::vector<std::int32_t> input_ids(const EvalOptions& o, const tok::Tokenizer& tokenizer, std::int64_t n_vocab) {
  return o.tokens.empty() ? tokenizer.encode(o.prompt, !o.no_bos, true) : parse_ids(o.tokens, n_vocab);
}

// --tokenize-only needs the vocabulary, not the weights: the model's headers are read, nothing
// is planned or loaded.
void tokenize_only(const EvalOptions& o) {
  const std::string& path = o.flags.session.model;
  const std::unique_ptr<ModelSource> source = open_model_source(path);
  const tok::Tokenizer tokenizer(vocab_from_metadata(*source->metadata()));
  const std::int64_t n_vocab = source->checked_config().n_vocab;
  nlohmann::json out;
  out["tokens"] = input_ids(o, tokenizer, n_vocab);
  out["n_vocab"] = n_vocab;
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

void eval(const EvalOptions& o) {
  if (o.tokenize_only) return tokenize_only(o);
  SessionOptions session_opts = session_options(o.flags);
  session_opts.n_ctx = o.n_ctx;
  session_opts.n_seq = 1;
  // The rows asked for, as many per pass as a pass has tokens (at least one: the last position
  // is evaluated when none is asked for). Each row is n_vocab floats the plan counts.
  session_opts.logit_rows =
      std::max<std::int64_t>(1, std::min({o.logits_rows, o.n_ctx, std::max<std::int64_t>(session_opts.pass_tokens, 1)}));
  session_opts.log = &std::cerr;
  Session session(session_opts);
  const std::int64_t n_vocab = session.config().n_vocab;
  std::vector<std::int32_t> ids = input_ids(o, session.tokenizer(), n_vocab);
  if (ids.empty()) throw std::invalid_argument("nothing to evaluate: the prompt has no tokens");
  if (std::int64_t(ids.size()) + o.greedy > session.n_ctx()) {
    throw std::length_error(
        fmt::format("{} tokens + {} greedy exceed the context of {} (raise -c)", ids.size(), o.greedy, session.n_ctx()));
  }
  std::cerr << fmt::format("eval: {} tokens, {}\n", ids.size(), session.describe());

  nlohmann::json out;
  out["tokens"] = ids;
  out["n_vocab"] = n_vocab;
  // Every token runs (in passes of at most the session's pass size); only the first `rows`
  // positions' logits are kept, or the last one's when none are asked for.
  const std::int64_t rows = std::min<std::int64_t>(o.logits_rows, std::int64_t(ids.size()));
  Batch batch;
  batch.add(0, 0, ids, rows == 0);
  for (std::int64_t r = 0; r < rows; ++r) batch.logit_rows.push_back(r);
  std::vector<float> logits;
  session.forward().forward(session.transformer(), batch, logits);
  if (!o.logits_out.empty()) {
    std::ofstream file(o.logits_out, std::ios::binary);
    file.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(rows * n_vocab * sizeof(float)));
    file.close();
    if (!file) throw std::runtime_error(fmt::format("cannot write {}: {}", o.logits_out, std::strerror(errno)));
  }
  out["logits_rows"] = rows;
  std::int64_t tokens_run = std::int64_t(ids.size());
  if (o.greedy > 0) {
    session.transformer().kv_cache().clear(0);  // from a fresh KV state, as the prompt alone
    SeqRequest request;
    request.prompt = ids;
    request.options.n_predict = o.greedy;
    request.options.sampling.temperature = 0.0f;
    request.options.stop_at_eog = false;
    BatchOptions bo;
    bo.n_parallel = 1;
    bo.max_pass_tokens = session.pass_tokens() > 0 ? session.pass_tokens() : std::int64_t(ids.size());
    const SeqResult result = Engine(session, bo).generate(std::move(request));
    out["greedy"] = result.generated;
    out["greedy_text"] = session.tokenizer().decode(result.generated);
    tokens_run += result.prompt_tokens + std::int64_t(result.generated.size());
  }
  // Generated text may hold a token that is half of a UTF-8 character: written as U+FFFD, since
  // JSON text must be valid UTF-8 (the token ids are exact).
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  session.print_stream_table(std::cerr, tokens_run);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand("eval", "Tokenize, evaluate and dump logits as JSON + float32 (parity checks).");
  // -c keeps eval's own default (512, as before it ran through a Session).
  add_session_flags(cmd, o->flags, kOmitCtx);
  cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize (BOS added unless --no-bos; special tokens parsed)");
  cmd->add_option("--tokens", o->tokens, "Comma-separated token ids instead of a prompt");
  cmd->add_option("--logits-rows", o->logits_rows, "Positions whose logits are written")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--logits-out", o->logits_out, "File for the float32 logits");
  cmd->add_option("--greedy", o->greedy, "Also generate this many tokens greedily (no early stop)")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  cmd->add_flag("--tokenize-only", o->tokenize_only, "Only print the token ids");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS");
  cmd->callback([o] { eval(*o); });
}

}  // namespace sluice
