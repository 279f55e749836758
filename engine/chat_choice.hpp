// Which chat template renders a command's messages (`sluice batch`, `chat`, `serve`, `run
// --chat-template / -sys`), chosen one way for all four:
//  - --chat-template KIND: that built-in kind (model/chat_template.hpp), always;
//  - otherwise, when the model carries tokenizer.chat_template and the Jinja subset
//    (model/jinja.hpp) parses it: the model's own template, rendered as the model renders it
//    (Qwen2.5's adds its default system prompt); the built-in kind recognised in it
//    (detect_chat_template) renders what the subset cannot, and where none is recognised such
//    messages are refused naming --chat-template;
//  - otherwise the kind recognised in the model's template, or none (chats are refused).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "model/chat_template.hpp"

namespace sluice {

namespace tok {
class Tokenizer;
}

// A request's prompt as text, with the byte ranges (offset, length) that a chat template wrote
// itself; a completion's prompt has none.
struct PromptText {
  std::string text;
  std::vector<std::pair<std::size_t, std::size_t>> markup;
};
// The model's own chat template (tokenizer.chat_template, rendered by model/jinja.hpp) and the
// tokenizer's BOS/EOS text it may write. `strip_bos`: the tokenizer adds BOS itself, so a BOS the
// template writes first is dropped (as llama.cpp does), else the prompt would start with two.
struct ModelChatTemplate {
  std::string jinja;
  std::string bos_token, eos_token;
  bool strip_bos = false;
  bool builtin_fallback = true;  // false: no built-in kind fits, a template the subset cannot render fails the request
};

struct ChatTemplateChoice {
  std::optional<ChatTemplateKind> builtin;  // --chat-template, else the kind recognised in the model's template
  std::optional<ModelChatTemplate> own;     // the model's own template (no --chat-template, and it parses)
  bool model_has_template = false;          // tokenizer.chat_template is present
  std::string unparsed;                     // why the model's template is not used although present ("" otherwise)
  bool usable() const { return builtin.has_value() || own.has_value(); }
  // Throws std::invalid_argument unless usable(), naming `model` (a path; "" names none) and why:
  // "MODEL: the model's chat template is missing; pass --chat-template (...)".
  void require_usable(const std::string& model = "") const;
  // "the model's own template", "the built-in chatml template", "no chat template": for logs.
  std::string describe() const;
};

// The choice from the flag (nullopt: none given), the model's tokenizer.chat_template (nullopt:
// absent) and the tokenizer's BOS / EOS text and whether it adds BOS. Never throws: a template
// outside the Jinja subset is recorded in `unparsed` and left to the built-in kinds.
ChatTemplateChoice choose_chat_template(const std::optional<ChatTemplateKind>& flag, const std::optional<std::string>& model_template,
                                        const std::string& bos_token, const std::string& eos_token, bool adds_bos);
ChatTemplateChoice choose_chat_template(const std::optional<ChatTemplateKind>& flag, const std::optional<std::string>& model_template,
                                        const tok::Tokenizer& tokenizer);

// --chat-template's value: "" (not given), "model" or "auto" mean the model's own (nullopt);
// otherwise a built-in kind's name (chat_template_from_name). Throws std::invalid_argument naming
// the flag and the names it takes.
std::optional<ChatTemplateKind> parse_chat_template_flag(const std::string& name);

// `messages` rendered by `model`'s own template when given and the subset renders them, else by
// the built-in `kind` (unless model->builtin_fallback is false: then std::invalid_argument naming
// --chat-template). The model's BOS at the start is dropped when model->strip_bos. Throws
// std::invalid_argument for messages the template refuses.
PromptText render_chat_prompt(std::span<const ChatMessage> messages, ChatTemplateKind kind, const ModelChatTemplate* model);
// The same by a choice; std::invalid_argument when it is not usable().
PromptText render_chat_prompt(std::span<const ChatMessage> messages, const ChatTemplateChoice& choice);

}  // namespace sluice
