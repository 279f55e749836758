// A conversation with a model (`sluice chat`): messages rendered by a chat template, each turn one
// request through the engine (engine/engine.hpp) in KV slot 0, which keeps the earlier turns.
//
// Each turn renders the whole conversation (the template decides what a turn looks like), with
// special tokens only inside the template's own markup, so a message cannot open a turn of its
// own. When the rendering begins with last turn's text and its answer, and what follows starts
// with the template's markup (an end-of-turn marker), the prompt is last turn's tokens, the
// answer's tokens as generated, then that rest tokenized (as llama.cpp's chat does: an answer
// re-tokenized from its text need not give the tokens generated). Otherwise (a template that
// rewrites contents, turns dropped) the whole text is tokenized. The longest common prefix with
// what the cache holds is not run again (SeqRequest::cached).
//
// When the context cannot hold the conversation and room for an answer, the oldest turns (after
// a leading system message) are dropped, whole, until it can; the turn says how many. A message
// too long for the context even alone is refused (std::length_error), the conversation unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.hpp"
#include "model/chat_template.hpp"

namespace sluice {

// Renders messages as the model expects (ending where the assistant's reply begins), with the
// byte ranges the template wrote itself. Throws std::invalid_argument for what it cannot express.
using ChatRenderer = std::function<RenderedChat(std::span<const ChatMessage>)>;

struct ChatOptions {
  ChatRenderer render;
  std::string system;       // a system message first ("" : none)
  GenerateOptions generate;  // n_predict < 0: up to the context left
  // With n_predict < 0: the least room an answer must have; older turns are dropped for it.
  std::int64_t min_answer_tokens = 256;
};

struct ChatTurn {
  SeqResult result;              // result.text is the answer (cut where it was cancelled)
  std::vector<std::int32_t> prompt;  // the whole conversation as fed this turn
  std::int64_t prompt_tokens = 0;    // prompt.size()
  std::int64_t reused_tokens = 0;  // of those, already in the cache
  std::size_t dropped_messages = 0;  // older messages dropped to make room this turn
  bool cancelled = false;
};

class Conversation {
 public:
  // `engine` runs one sequence in slot 0 (BatchOptions n_parallel 1); it and the tokenizer
  // outlive the conversation. n_ctx: the cache's context.
  Conversation(Engine& engine, const tok::Tokenizer& tokenizer, std::int64_t n_ctx, ChatOptions options);

  // Adds the user's message, answers it (on_text streams the answer; cancelled, asked after
  // every token, ends it early) and adds the answer. Throws std::length_error for a message that
  // cannot fit, and what the engine throws for a failed pass (the message is not kept then).
  ChatTurn ask(std::string_view user, const std::function<void(std::string_view)>& on_text = {},
               const std::function<bool()>& cancelled = {});
  // Forgets every turn (the system message stays).
  void reset();
  const std::vector<ChatMessage>& messages() const { return messages_; }

 private:
  // The prompt for `messages` and its rendered text; `continues`: they are last turn's, its
  // answer and one new message.
  std::pair<std::vector<std::int32_t>, std::string> prompt_for(std::span<const ChatMessage> messages, bool continues) const;
  std::int64_t answer_room(std::int64_t prompt_tokens) const;

  Engine& engine_;
  const tok::Tokenizer& tokenizer_;
  std::int64_t n_ctx_;
  ChatOptions options_;
  std::vector<ChatMessage> messages_;
  std::vector<std::int32_t> cache_tokens_;  // what slot 0's cache holds, in order
  std::vector<std::int32_t> transcript_;    // last turn's prompt and the tokens it generated
  std::string prompt_text_, answer_text_;   // last turn's rendered prompt and its answer
};

}  // namespace sluice
