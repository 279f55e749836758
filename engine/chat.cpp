#include "engine/chat.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <stdexcept>
#include <utility>

#include "model/tokenizer.hpp"

namespace sluice {

Conversation::Conversation(Engine& engine, const tok::Tokenizer& tokenizer, std::int64_t n_ctx, ChatOptions options)
    : engine_(engine), tokenizer_(tokenizer), n_ctx_(n_ctx), options_(std::move(options)) {
  if (!options_.render) throw std::invalid_argument("a conversation needs a chat template");
  reset();
}

void Conversation::reset() {
  messages_.clear();
  if (!options_.system.empty()) messages_.push_back({"system", options_.system});
  cache_tokens_.clear();
  transcript_.clear();
  prompt_text_.clear();
  answer_text_.clear();
}

std::pair<std::vector<std::int32_t>, std::string> Conversation::prompt_for(std::span<const ChatMessage> messages,
                                                                           bool continues) const {
  RenderedChat chat = options_.render(messages);
  const std::size_t before = prompt_text_.size() + answer_text_.size();
  if (continues && !transcript_.empty() && chat.text.size() > before && chat.text.compare(0, prompt_text_.size(), prompt_text_) == 0 &&
      chat.text.compare(prompt_text_.size(), answer_text_.size(), answer_text_) == 0) {
    std::vector<std::pair<std::size_t, std::size_t>> rest_markup;
    for (const auto& [offset, length] : chat.markup) {
      if (offset >= before) rest_markup.emplace_back(offset - before, length);
    }
    // The rest must open with the template's own markup: text that went on from the answer's
    // last characters could tokenize differently across the seam.
    if (!rest_markup.empty() && rest_markup.front().first == 0) {
      std::vector<std::int32_t> tokens = transcript_;
      const std::vector<std::int32_t> rest = tokenizer_.encode(std::string_view(chat.text).substr(before), false, std::span(rest_markup));
      tokens.insert(tokens.end(), rest.begin(), rest.end());
      return {std::move(tokens), std::move(chat.text)};
    }
  }
  std::vector<std::int32_t> tokens = tokenizer_.encode(chat.text, true, std::span(chat.markup));
  return {std::move(tokens), std::move(chat.text)};
}

// Tokens an answer may take after a prompt of this many: -n, or (-n < 0) the context left.
std::int64_t Conversation::answer_room(std::int64_t prompt_tokens) const {
  return options_.generate.n_predict >= 0 ? options_.generate.n_predict : n_ctx_ - prompt_tokens;
}

ChatTurn Conversation::ask(std::string_view user, const std::function<void(std::string_view)>& on_text,
                           const std::function<bool()>& cancelled) {
  std::vector<ChatMessage> next = messages_;
  next.push_back({"user", std::string(user)});
  const std::size_t first_turn = next.front().role == "system" ? 1 : 0;
  // The room an answer needs: all of -n, or with -n < 0 a useful least.
  const std::int64_t needed = options_.generate.n_predict >= 0 ? options_.generate.n_predict
                                                               : std::min(options_.min_answer_tokens, n_ctx_ / 2);
  ChatTurn turn;
  auto [prompt, prompt_text] = prompt_for(next, /*continues=*/true);
  while (std::int64_t(prompt.size()) + needed > n_ctx_) {
    if (next.size() - first_turn <= 1) {
      throw std::length_error(fmt::format("the message ({} tokens as the template renders it{}) and {} tokens for the answer exceed "
                                          "the context of {} (raise -c{})",
                                          prompt.size(), first_turn ? ", with the system message" : "", needed, n_ctx_,
                                          options_.generate.n_predict >= 0 ? " or lower -n" : ""));
    }
    // The oldest turn: a message and what follows it up to the next user message, so the roles
    // still alternate as strict templates (Gemma, Llama 2) require.
    auto begin = next.begin() + std::ptrdiff_t(first_turn), end = begin + 1;
    while (end + 1 != next.end() && end->role != "user") ++end;
    turn.dropped_messages += std::size_t(end - begin);
    next.erase(begin, end);
    std::tie(prompt, prompt_text) = prompt_for(next, /*continues=*/false);
  }
  const auto mismatch = std::mismatch(prompt.begin(), prompt.end(), cache_tokens_.begin(), cache_tokens_.end());
  SeqRequest request;
  request.cached = std::min<std::int64_t>(mismatch.first - prompt.begin(), std::int64_t(prompt.size()) - 1);
  request.options = options_.generate;
  request.options.n_predict = std::int32_t(std::min<std::int64_t>(answer_room(std::int64_t(prompt.size())), n_ctx_ - std::int64_t(prompt.size())));
  request.prompt = prompt;
  request.on_text = on_text ? std::function<void(std::string_view)>(on_text) : nullptr;
  request.cancelled = [&] { return cancelled && (turn.cancelled = cancelled()); };
  turn.prompt = prompt;
  turn.prompt_tokens = std::int64_t(prompt.size());
  turn.reused_tokens = request.cached;
  // Until the turn ends, the cache holds what it held up to `cached` and then who knows what.
  cache_tokens_.resize(std::size_t(request.cached));
  turn.result = engine_.generate(std::move(request));
  // The cache now holds the prompt and every generated token but (maybe) the last, which is fed
  // only when another token follows it.
  const auto& generated = turn.result.generated;
  transcript_ = std::move(prompt);
  transcript_.insert(transcript_.end(), generated.begin(), generated.end());
  cache_tokens_.assign(transcript_.begin(), transcript_.end() - (generated.empty() ? 0 : 1));
  prompt_text_ = std::move(prompt_text);
  answer_text_ = turn.result.text;
  next.push_back({"assistant", turn.result.text});
  messages_ = std::move(next);
  return turn;
}

}  // namespace sluice
