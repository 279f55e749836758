// `sluice chat`: talk to a model in the terminal. Each line typed is a user message; the answer
// streams as it is generated. The conversation (engine/chat.hpp) keeps the earlier turns in the
// KV cache, so a turn runs only its new tokens; when the context fills, the oldest turns are
// dropped with a notice. Ctrl-C stops an answer (the conversation goes on), Ctrl-C at the
// prompt, Ctrl-D or /exit leave, /reset starts over. Works on a model that streams from disk
// (--mem-budget), like `run`. Standard input that is not a terminal is read line by line the same
// way (a scripted conversation).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <string>

#include "engine/chat.hpp"
#include "engine/engine.hpp"
#include "engine/generate.hpp"
#include "engine/session.hpp"
#include "engine/chat_choice.hpp"
#include "model/chat_template.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"
#include "tools/session_flags.hpp"

namespace sluice {
namespace {

struct ChatCliOptions {
  SessionFlags flags;
  SamplingParams sampling;
  std::int64_t seed = -1;  // -s; -1: random (printed)
  std::int32_t n_predict = -1;
  std::string chat_template, system;
  bool stats = false;
};

// SIGINT during an answer stops it; at the prompt it ends the program (as llama.cpp's chat does).
std::atomic<bool> g_answering{false}, g_stop_answer{false};

extern "C" void on_chat_interrupt(int sig) {
  if (g_answering.load()) {
    g_stop_answer.store(true);
    return;
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// The template chosen as batch, serve and run choose it (engine/chat_choice.hpp): --chat-template,
// else the model's own, with the built-in kind recognised in it as the fallback.
ChatRenderer renderer_for(const ChatCliOptions& o, Session& session, std::string& described) {
  ChatTemplateChoice choice = choose_chat_template(parse_chat_template_flag(o.chat_template),
                                                   session.metadata().get_string("tokenizer.chat_template"), session.tokenizer());
  choice.require_usable(o.flags.session.model);
  described = choice.describe();
  return [choice = std::move(choice)](std::span<const ChatMessage> messages) {
    PromptText text = render_chat_prompt(messages, choice);
    return RenderedChat{std::move(text.text), std::move(text.markup)};
  };
}

void chat(ChatCliOptions o) {
  SessionOptions session_opts = session_options(o.flags);
  session_opts.n_seq = 1;
  session_opts.log = &std::cerr;
  if (o.flags.plan_only) {
    print_plan_only(session_opts, std::cout);
    return;
  }
  Session session(session_opts);
  ChatOptions chat_options;
  std::string template_used;
  chat_options.render = renderer_for(o, session, template_used);
  chat_options.system = o.system;
  chat_options.generate.n_predict = o.n_predict;
  chat_options.generate.sampling = o.sampling;
  chat_options.generate.sampling.seed = resolve_seed(o.seed, o.sampling.temperature, std::cerr);
  BatchOptions bo;
  bo.n_parallel = 1;
  bo.max_pass_tokens = session_opts.pass_tokens;
  Engine engine(session, bo);
  Conversation conversation(engine, session.tokenizer(), session.n_ctx(), chat_options);

  struct sigaction sa {};
  sa.sa_handler = on_chat_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);

  const bool terminal = ::isatty(STDIN_FILENO);
  std::cerr << fmt::format("sluice chat: {} ({}, context {}, {}). Ctrl-C stops an answer; Ctrl-D, Ctrl-C at the prompt or /exit "
                           "leaves; /reset starts over.\n",
                           o.flags.session.model, session.describe(), session.n_ctx(), template_used);
  std::string line;
  for (;;) {
    if (terminal) std::cout << "\n> " << std::flush;
    if (!std::getline(std::cin, line)) break;  // Ctrl-D, or the end of a scripted conversation
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      conversation.reset();
      std::cerr << "[conversation reset]\n";
      continue;
    }
    if (line.empty()) continue;
    g_stop_answer.store(false);
    g_answering.store(true);
    ChatTurn turn;
    try {
      turn = conversation.ask(
          line, [](std::string_view piece) { std::cout << piece << std::flush; }, [] { return g_stop_answer.load(); });
    } catch (const std::length_error& e) {
      g_answering.store(false);
      std::cerr << "[" << e.what() << "]\n";
      continue;
    }
    g_answering.store(false);
    std::cout << std::endl;
    if (!std::cout) check_stdout();
    if (turn.dropped_messages > 0) {
      std::cerr << fmt::format("[context full: the oldest {} messages were dropped]\n", turn.dropped_messages);
    }
    if (turn.cancelled) std::cerr << "[answer stopped]\n";
    if (o.stats) {
      const GenerateStats s = generate_stats(turn.result);
      std::cerr << fmt::format("[{} prompt tokens, {} of them reused from the cache; {} new at {:.1f} tok/s; {} generated at {:.1f} tok/s]\n",
                               turn.prompt_tokens, turn.reused_tokens, turn.prompt_tokens - turn.reused_tokens, s.prompt_tps(),
                               s.generated_tokens, s.generation_tps());
    }
  }
  if (terminal) std::cout << std::endl;
  session.print_stream_table(std::cerr, 0);
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "chat",
      "Talk to a model: each line you type is a message, the answer streams as it is generated. Earlier turns stay in\n"
      "the KV cache (a turn runs only its new tokens); when the context fills, the oldest turns are dropped with a\n"
      "notice. The model's chat template is used (or --chat-template). Ctrl-C stops an answer; Ctrl-D, Ctrl-C at the\n"
      "prompt or /exit leaves; /reset starts over. Runs within --mem-budget, streaming from disk what does not fit.");
  add_session_flags(cmd, o->flags);
  cmd->add_option("-n,--n-predict", o->n_predict, "Most tokens per answer (-1: until the model ends it or the context is full)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
  add_sampling_options(cmd, o->sampling, o->seed);
  cmd->add_option("--chat-template", o->chat_template, "llama2 | llama3 | chatml | mistral | gemma | gpt-oss, or model (the default: the model's own Jinja template, with the built-in kind it resembles as the fallback)");
  cmd->add_option("--system-prompt", o->system, "A system message first (also -sys)");
  cmd->add_flag("--stats", o->stats, "After each answer: prompt tokens (reused from the cache / new) and speeds");
  cmd->callback([o] { chat(*o); });
}

}  // namespace sluice
