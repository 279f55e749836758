// `sluice run`: generate text from a GGUF or pack (llama.cpp's flag names). One prompt streams its
// tokens to stdout; several (--prompts FILE, one per line) run together layer-major, -np at a
// time, and print in input order. A pack runs under --mem-budget: the planner's table is printed
// first, and a streaming table (passes, bytes read, overlap, tokens/s) at the end.
// The prompt is fed raw (llama-cli's -no-cnv) unless --chat-template or --system-prompt (-sys) is
// given: then it is the user's message, rendered by the template chosen as chat, serve and batch
// choose it (engine/chat_choice.hpp), with the assistant's turn opened. `run -cnv`, or `run` with
// no prompt on a terminal, never gets here: the front door makes it `chat` (tools/front_door.hpp).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "common/error.hpp"
#include "common/trace.hpp"
#include "common/units.hpp"
#include "engine/batch_job.hpp"
#include "engine/chat_choice.hpp"
#include "engine/engine.hpp"
#include "engine/generate.hpp"
#include "engine/session.hpp"
#include "tools/cli_util.hpp"
#include "tools/session_flags.hpp"
#include "tools/speculative_flags.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct RunOptions {
  std::string prompt;
  std::string prompt_file;
  std::string prompts_file;  // one prompt per line
  std::int32_t n_predict = 64;
  std::int32_t n_parallel = 0;  // 0: one per prompt, at most 16
  std::int32_t batch = 0;       // sequences per pass (0: n_parallel)
  SamplingParams sampling;
  std::int64_t seed = -1;  // -s; -1: random
  std::vector<std::string> stop;  // generation ends before the first of these in the text
  bool no_special = false;
  std::string chat_template;  // "" : the prompt goes raw unless `system` is given
  std::string system;
  bool verbose_prompt = false;
  std::string trace;
  SessionFlags flags;
  SpeculativeFlags speculative;
};

std::vector<std::string> read_prompt_lines(const std::string& path) {
  std::istringstream in(read_text_file(path));
  std::vector<std::string> prompts;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) {
    throw Exception(ErrorContext{ErrorKind::invalid, path},
                    fmt::format("{}: no prompts (one per line; empty lines are skipped)", path));
  }
  return prompts;
}

void run(RunOptions o) {
  std::vector<std::string> prompts;
  if (!o.prompts_file.empty()) {
    prompts = read_prompt_lines(o.prompts_file);
  } else {
    prompts.push_back(o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file));
  }
  SessionOptions session_opts = session_options(o.flags);
  const bool templated = !o.chat_template.empty() || !o.system.empty();
  const std::optional<ChatTemplateKind> template_flag = parse_chat_template_flag(o.chat_template);  // refuses a bad name before loading
  const std::int32_t n_parallel = o.n_parallel > 0 ? o.n_parallel : std::min<std::int32_t>(std::int32_t(prompts.size()), 16);
  session_opts.n_seq = n_parallel;
  if (session_opts.n_ctx == 0) {
    // No -c: the context this run can need (a prompt has at most one token per byte, plus BOS
    // and a leading space), so the KV cache does not take a small budget's resident blocks.
    std::size_t longest = 0;
    for (const std::string& p : prompts) longest = std::max(longest, p.size());
    session_opts.ctx_needed = std::int64_t(longest) + 2 + o.n_predict + (o.speculative.any() ? o.speculative.draft_max : 0);
    // A chat template's markers and the system message; 256 bytes for what a model's own template
    // adds (Qwen2.5's default system prompt), as batch allows.
    if (templated) session_opts.ctx_needed += std::int64_t(o.system.size()) + 256;
  }
  TraceRecorder trace(!o.trace.empty());
  session_opts.trace = o.trace.empty() ? nullptr : &trace;
  session_opts.log = &std::cerr;
  // Before the target is planned: a draft model's bytes come out of its budget.
  std::unique_ptr<Speculation> speculation = Speculation::prepare(o.speculative, session_opts);
  if (o.flags.plan_only) {  // the plan for these flags, and no token
    print_plan_only(session_opts, std::cout);
    return;
  }
  Session session(session_opts);
  if (!o.trace.empty() && !session.streamed())
    throw std::invalid_argument("--trace records the streaming lanes: use it with a pack");

  // Each prompt's tokens: raw, or as the user's message in the chat template (-sys: after a system
  // message), the assistant's turn opened.
  std::optional<ChatTemplateChoice> chat;
  if (templated) {
    chat = choose_chat_template(template_flag, session.metadata().get_string("tokenizer.chat_template"), session.tokenizer());
    chat->require_usable(session_opts.model);
    std::cerr << fmt::format("sluice run: the prompt as a user message, rendered with {}\n", chat->describe());
  }
  auto encode = [&](const std::string& prompt) {
    if (!chat) return session.tokenizer().encode(prompt, true, !o.no_special);
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", prompt});
    // The template's markers are special tokens; the prompt's own text too unless --no-special,
    // as for a raw prompt.
    return tokenize_prompt(session.tokenizer(), render_chat_prompt(messages, *chat), !o.no_special);
  };
  // llama.cpp's --verbose-prompt: the prompt's tokens, one a line, before generating.
  auto print_prompt = [&](const std::vector<std::int32_t>& ids) {
    if (!o.verbose_prompt) return;
    std::string text;
    for (std::int32_t id : ids) text += session.tokenizer().token_to_piece(id, true);
    std::cerr << fmt::format("sluice run: prompt: '{}'\nsluice run: number of tokens in prompt = {}\n", text, ids.size());
    for (std::int32_t id : ids) std::cerr << fmt::format("{:>6} -> '{}'\n", id, session.tokenizer().token_to_piece(id, true));
    std::cerr << '\n';
  };

  GenerateOptions options;
  options.n_predict = o.n_predict;
  options.sampling = o.sampling;
  options.sampling.seed = resolve_seed(o.seed, o.sampling.temperature, std::cerr);
  std::int64_t prompt_tokens = 0, generated_tokens = 0;
  double seconds = 0;
  // Prompts whose pass failed (a read error): the rest still run; the command then exits 1.
  std::uint64_t failed_in_pass = 0;
  std::exception_ptr first_failure;
  BatchRunStats spec_stats;  // for the speculative summary
  if (prompts.size() == 1 && n_parallel == 1) {
    std::vector<std::int32_t> ids = encode(prompts[0]);
    print_prompt(ids);
    // Checked before the prompt is echoed, so a refused prompt is not printed in full first.
    if (ids.empty()) throw std::invalid_argument("the prompt is empty (no tokens)");
    if (std::int64_t(ids.size()) + options.n_predict > session.n_ctx()) {
      throw std::length_error(fmt::format("the prompt ({} tokens) + {} to generate exceed the context of {} (raise -c)", ids.size(),
                                          options.n_predict, session.n_ctx()));
    }
    std::cout << prompts[0] << std::flush;
    SeqRequest request;
    request.prompt = std::move(ids);
    request.options = options;
    request.stop = o.stop;
    request.on_text = [](std::string_view piece) {
      std::cout << piece << std::flush;
      if (!std::cout) check_stdout();  // stop generating into a full disk
    };
    BatchOptions bo;
    bo.n_parallel = 1;
    bo.max_pass_tokens = session_opts.pass_tokens;
    if (speculation) speculation->attach(session, session_opts.model, bo, session_opts.trace);
    Engine engine(session, bo);
    const SeqResult result = engine.generate(std::move(request));
    spec_stats = engine.last_run();
    const GenerateStats stats = generate_stats(result);
    std::cout << std::endl;
    prompt_tokens = stats.prompt_tokens;
    generated_tokens = stats.generated_tokens;
    seconds = std::chrono::duration<double>(stats.prompt_time + stats.generation_time).count();
    std::cerr << fmt::format("\nsluice run: prompt {} tokens at {:.2f} tok/s | generation {} tokens at {:.2f} tok/s | {} | ctx {}\n",
                             stats.prompt_tokens, stats.prompt_tps(), stats.generated_tokens, stats.generation_tps(),
                             session.describe(), session.n_ctx());
  } else {
    BatchOptions bo;
    bo.n_parallel = n_parallel;
    bo.batch = o.batch;
    bo.max_pass_tokens = session_opts.pass_tokens;
    if (speculation) speculation->attach(session, session_opts.model, bo, session_opts.trace);
    std::size_t next = 0, printed = 0;
    std::map<std::size_t, SeqResult> done;
    auto source = [&]() -> std::optional<SeqRequest> {
      if (next == prompts.size()) return std::nullopt;
      SeqRequest r;
      r.prompt = encode(prompts[next++]);
      print_prompt(r.prompt);
      r.options = options;
      r.stop = o.stop;
      return r;
    };
    auto sink = [&](SeqResult&& r) {
      done.emplace(r.index, std::move(r));
      for (auto it = done.find(printed); it != done.end(); it = done.find(printed)) {  // input order
        const SeqResult& res = it->second;
        std::cout << fmt::format("--- prompt {} ({} tokens, {} generated, {})\n", printed + 1, res.prompt_tokens,
                                 res.generated.size(), to_string(res.finish));
        if (res.finish == FinishReason::error) {
          std::cout << "error: " << res.error << "\n";
          if (res.exception) {
            ++failed_in_pass;
            if (!first_failure) first_failure = res.exception;
          }
        } else {
          std::cout << prompts[printed] << res.text << "\n";
        }
        check_stdout();
        done.erase(it);
        ++printed;
      }
    };
    BatchRunStats stats = Engine(session, bo).run(source, sink);
    spec_stats = stats;
    prompt_tokens = stats.prompt_tokens;
    generated_tokens = stats.generated_tokens;
    seconds = std::chrono::duration<double>(stats.wall).count();
    std::cerr << fmt::format(
        "\nsluice run: {} prompts, {} parallel, {:.1f} sequences per pass | {} prompt + {} generated tokens in {:.2f} s: "
        "{:.2f} tok/s ({:.2f} generated tok/s) | {}{} | ctx {}\n",
        prompts.size(), n_parallel, stats.passes ? double(stats.sequence_steps) / double(stats.passes) : 0.0, stats.prompt_tokens,
        stats.generated_tokens, seconds, stats.tokens_per_second(), stats.generated_per_second(), session.describe(),
        stats.failed ? fmt::format(" | {} failed", stats.failed) : "", session.n_ctx());
  }
  session.print_stream_table(std::cerr, prompt_tokens + generated_tokens);
  if (speculation) speculation->print_summary(std::cerr, spec_stats);
  if (!o.trace.empty()) {
    nlohmann::json summary = {{"prompt_tokens", prompt_tokens}, {"generated_tokens", generated_tokens}, {"seconds", seconds},
                              {"mode", session.describe()}};
    if (StreamedModel* s = session.streamed()) {
      const StreamStats st = s->stats();
      summary["passes"] = st.passes;
      summary["bytes_read"] = st.bytes_streamed;
      summary["io_busy_s"] = std::chrono::duration<double>(st.io_busy).count();
      summary["compute_busy_s"] = std::chrono::duration<double>(st.compute_busy).count();
      summary["wall_s"] = std::chrono::duration<double>(st.wall).count();
      summary["overlap"] = st.overlap();
    }
    trace.set_summary(summary);
    trace.write(o.trace);
    std::cerr << fmt::format("trace written to {} (open in ui.perfetto.dev or chrome://tracing)\n", o.trace);
  }
  if (first_failure) {
    try {
      std::rethrow_exception(first_failure);
    } catch (const Exception& e) {
      throw Exception(e.context(), fmt::format("{} of {} prompts failed with the pass they were in; the first: {}",
                                               failed_in_pass, prompts.size(), e.what()));
    }
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Generate text from a GGUF (single or split) or .sluice model, streaming tokens to stdout. It runs\n"
      "within --mem-budget: the planner keeps what fits in RAM (KV cache, ring, a fixed set of blocks) and\n"
      "streams the rest from disk every pass; its plan is printed first and a streaming table at the end. Without -c the\n"
      "context is what the prompts and -n need (rounded up to 256, at most the model's or 4096). Several prompts\n"
      "(--prompts) share every pass: one read of each block serves the whole batch. The prompt is fed as given\n"
      "(llama-cli's -no-cnv); with --chat-template or -sys it is a user message in the chat template, the\n"
      "assistant's turn opened. -cnv, or no prompt at all while stdin is a terminal, is a conversation of\n"
      "several turns: `sluice chat` with the same flags, -p its system prompt (as llama-cli does).");
  add_session_flags(cmd, o->flags);
  auto* p = cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  auto* f = cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  auto* many = cmd->add_option("--prompts", o->prompts_file, "Many prompts, one per line; output in input order")
                   ->check(CLI::ExistingFile);
  p->excludes(f);
  many->excludes(p);
  many->excludes(f);
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--parallel", o->n_parallel, "Sequences in flight (KV slots; also -np; 0: one per prompt, at most 16)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--batch", o->batch, "Sequences per pass (0: all in flight)")->capture_default_str()->check(CLI::Range(0, 4096));
  add_sampling_options(cmd, o->sampling, o->seed);
  cmd->add_option("--stop", o->stop, "Stop generating when the text contains STR (repeatable); the text is cut before it")
      ->allow_extra_args(false)
      ->check([](const std::string& s) { return s.empty() ? std::string("--stop needs a non-empty string") : std::string(); });
  cmd->add_flag("--no-special", o->no_special, "Treat special-token text in the prompt as plain text");
  cmd->add_option("--chat-template", o->chat_template,
                  "Send the prompt as a user message in this chat template, the assistant's turn opened: llama2 | llama3 | "
                  "chatml | mistral | gemma | gpt-oss, or model (the model's own Jinja template). Without it (and -sys) the "
                  "prompt goes raw");
  cmd->add_option("--system-prompt", o->system,
                  "A system message before the prompt (also -sys); the prompt becomes a user message in the chat template "
                  "(--chat-template, default the model's own)");
  cmd->add_flag("--verbose-prompt", o->verbose_prompt, "Print the prompt's tokens (id -> text) to stderr before generating");
  add_speculative_flags(cmd, o->speculative);
  cmd->add_option("--trace", o->trace, "Write a Chrome/Perfetto trace (lanes io, decompress, compute) to this file");
  cmd->callback([o] { run(*o); });
}

}  // namespace sluice
