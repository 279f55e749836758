// `sluice perplexity -m MODEL -f TEXT -c CTX`: the perplexity of a model on a text, computed the
// way llama.cpp's perplexity tool (tools/perplexity/perplexity.cpp, perplexity()) computes it, so
// the two numbers can be compared:
//   - the whole text is tokenized once, BOS added as the vocabulary asks, special-token text left
//     as plain text;
//   - it is cut into non-overlapping chunks of CTX tokens (the tail that does not fill a chunk is
//     dropped; at least 2 x CTX tokens are needed); each chunk runs from a fresh KV state, its
//     first token replaced by BOS when the vocabulary adds one;
//   - only the second half is scored: the logits at positions CTX/2 .. CTX-2 predict the tokens
//     after them (CTX/2 - 1 tokens per chunk), nll = -log softmax(logits)[next token];
//   - after each chunk the running estimate exp(mean nll) is printed as "[chunk]ppl,", and at the
//     end "Final estimate: PPL = P +/- E", E = P * sqrt((mean nll^2 - mean nll^2) / (count - 1)).
// A pack runs under --mem-budget like `sluice run` (the plan first, the streaming table last).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "engine/session.hpp"
#include "tools/cli_util.hpp"
#include "tools/session_flags.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct PerplexityOptions {
  std::string text_file;
  std::int64_t n_ctx = 512;
  std::int32_t chunks = -1;  // -1: every whole chunk of the text
  std::int64_t pass_tokens = 0;  // 0: a whole chunk per pass
  SessionFlags flags;
};

// -log p(token) under softmax(logits), as llama.cpp's log_softmax: the max in float, the sum of
// exponentials in double, the difference taken in double.
double negative_log_prob(const float* logits, std::int64_t n_vocab, std::int32_t token) {
  float max_logit = logits[0];
  for (std::int64_t i = 1; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum_exp = 0.0;
  for (std::int64_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
  return -(double(logits[token] - max_logit) - std::log(sum_exp));
}

void perplexity(PerplexityOptions o) {
  using Clock = std::chrono::steady_clock;
  const std::int64_t n_ctx = o.n_ctx;
  const std::int64_t first = n_ctx / 2;  // positions before it give context only
  const std::int64_t pass = o.pass_tokens > 0 ? std::min(o.pass_tokens, n_ctx) : n_ctx;
  SessionOptions session_opts = session_options(o.flags);
  session_opts.n_ctx = n_ctx;
  session_opts.n_seq = 1;
  session_opts.pass_tokens = pass;
  session_opts.logit_rows = std::min(pass, n_ctx - 1 - first);  // the scored rows one pass can hold
  session_opts.log = &std::cerr;
  if (o.flags.plan_only) {
    print_plan_only(session_opts, std::cout);
    return;
  }
  const std::string text = read_text_file(o.text_file);
  Session session(session_opts);
  const tok::Tokenizer& tokenizer = session.tokenizer();
  const std::int64_t n_vocab = session.config().n_vocab;

  const auto t_tokenize = Clock::now();
  const std::vector<std::int32_t> tokens = tokenizer.encode(text, true, false);
  std::cerr << fmt::format("perplexity: tokenized {} bytes into {} tokens in {:.0f} ms\n", text.size(), tokens.size(),
                           std::chrono::duration<double, std::milli>(Clock::now() - t_tokenize).count());
  if (std::int64_t(tokens.size()) < 2 * n_ctx) {
    throw std::runtime_error(fmt::format("{} tokenizes to {} tokens; a context of {} needs at least {}", o.text_file,
                                         tokens.size(), n_ctx, 2 * n_ctx));
  }
  const std::int64_t n_chunk_max = std::int64_t(tokens.size()) / n_ctx;
  const std::int64_t n_chunk = o.chunks < 0 ? n_chunk_max : std::min<std::int64_t>(o.chunks, n_chunk_max);
  std::cerr << fmt::format("perplexity: {} chunks of {} tokens, {} tokens per pass, {}\n", n_chunk, n_ctx, pass,
                           session.describe());

  double nll = 0.0, nll2 = 0.0;
  std::int64_t count = 0;
  std::vector<float> logits;
  std::vector<std::int32_t> chunk(static_cast<std::size_t>(n_ctx));
  const auto t_start = Clock::now();
  for (std::int64_t i = 0; i < n_chunk; ++i) {
    const std::int64_t start = i * n_ctx;
    std::copy(tokens.begin() + start, tokens.begin() + start + n_ctx, chunk.begin());
    if (tokenizer.adds_bos()) chunk[0] = tokenizer.bos();
    session.transformer().kv_cache().clear(0);  // a fresh KV state per chunk
    for (std::int64_t p0 = 0; p0 < n_ctx; p0 += pass) {
      const std::int64_t n = std::min(pass, n_ctx - p0);
      Batch batch;
      batch.add(0, p0, std::span(chunk).subspan(std::size_t(p0), std::size_t(n)), false);
      const std::int64_t scored_from = std::max(first, p0), scored_to = std::min(p0 + n, n_ctx - 1);  // positions
      if (scored_from == p0 && scored_to == p0 + n) {
        batch.want_all();
      } else {
        for (std::int64_t pos = scored_from; pos < scored_to; ++pos) batch.logit_rows.push_back(pos - p0);
      }
      session.forward().forward(session.transformer(), batch, logits);
      for (std::size_t r = 0; r < batch.logit_rows.size(); ++r) {
        const std::int64_t pos = p0 + batch.logit_rows[r];
        // The next token of the text (never the BOS that replaced position 0).
        const double v = negative_log_prob(logits.data() + std::int64_t(r) * n_vocab, n_vocab, tokens[std::size_t(start + pos + 1)]);
        nll += v;
        nll2 += v * v;
        ++count;
      }
    }
    if (i == 0) {
      const double seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
      std::cerr << fmt::format("perplexity: {:.2f} seconds per chunk - ETA {:.2f} minutes\n", seconds,
                               seconds * double(n_chunk) / 60.0);
    }
    std::cout << fmt::format("[{}]{:.4f},", i + 1, std::exp(nll / double(count))) << std::flush;
    if (!std::cout) check_stdout();
  }
  std::cout << "\n";
  const double seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  const double mean = nll / double(count);
  const double ppl = std::exp(mean);
  const double var = nll2 / double(count) - mean * mean;
  if (var > 0 && count > 1) {
    std::cout << fmt::format("Final estimate: PPL = {:.4f} +/- {:.5f}\n", ppl, std::sqrt(var / double(count - 1)) * ppl);
  } else {
    std::cout << fmt::format("Final estimate: PPL = {:.4f} (no spread: the standard error is undefined)\n", ppl);
  }
  // Full precision for comparisons (a pack and its GGUF give the same bits).
  std::cerr << fmt::format("\nsluice perplexity: {} chunks, {} tokens scored, mean nll {:.12f}, ppl {:.9f} | {:.2f} s, {:.1f} tok/s | {}\n",
                           n_chunk, count, mean, ppl, seconds, double(n_chunk * n_ctx) / seconds, session.describe());
  session.print_stream_table(std::cerr, n_chunk * n_ctx);
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity",
      "Perplexity of a model on a text, as llama.cpp's perplexity tool computes it: chunks of -c tokens from a\n"
      "fresh KV state, BOS first, the second half of each chunk scored; prints the running estimate per chunk\n"
      "and the final value with its standard error. The model (GGUF or pack) runs within --mem-budget (streamed as `run` does).");
  // -c (the chunk) and --pass-tokens (0: a chunk) mean what llama.cpp's perplexity means by them.
  add_session_flags(cmd, o->flags, kOmitCtx | kOmitPassTokens);
  cmd->add_option("-f,--file", o->text_file, "The text")->required()->check(CLI::ExistingFile);
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Tokens per chunk")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Score at most this many chunks (-1: all)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            try {
              const long v = std::stol(text);
              if (v == -1 || (v >= 1 && v <= (1 << 30))) return {};
            } catch (const std::exception&) {
            }
            return "expected -1 (all) or a count of at least 1, got '" + text + "'";
          },
          "-1 | INT >= 1"));
  cmd->add_option("--pass-tokens", o->pass_tokens,
                  "Tokens per forward pass (also -ub; 0: a whole chunk). Each scored row's logits (n_vocab floats) "
                  "count against --mem-budget: a large vocabulary under a small budget needs few")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->callback([o] { perplexity(*o); });
}

}  // namespace sluice
