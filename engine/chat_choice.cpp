#include "engine/chat_choice.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "model/jinja.hpp"
#include "model/tokenizer.hpp"

namespace sluice {

std::string ChatTemplateChoice::describe() const {
  if (own) {
    return builtin ? fmt::format("the model's own template (built-in {} where the Jinja subset cannot render it)", to_string(*builtin))
                   : std::string("the model's own template");
  }
  if (builtin) return fmt::format("the built-in {} template", to_string(*builtin));
  return "no chat template";
}

void ChatTemplateChoice::require_usable(const std::string& model) const {
  if (usable()) return;
  throw std::invalid_argument(fmt::format("{}the model's chat template is {}; pass --chat-template (llama2, llama3, chatml, mistral, gemma, gpt-oss)",
                                          model.empty() ? "" : model + ": ", model_has_template ? "not one sluice renders" : "missing"));
}

ChatTemplateChoice choose_chat_template(const std::optional<ChatTemplateKind>& flag, const std::optional<std::string>& model_template,
                                        const std::string& bos_token, const std::string& eos_token, bool adds_bos) {
  ChatTemplateChoice choice;
  choice.model_has_template = model_template.has_value();
  choice.builtin = flag;
  if (!choice.builtin && model_template) choice.builtin = detect_chat_template(*model_template);
  if (flag || !model_template) return choice;
  try {
    const jinja::Template parsed(*model_template);  // only to know it parses
    choice.own = ModelChatTemplate{*model_template, bos_token, eos_token, adds_bos, choice.builtin.has_value()};
  } catch (const jinja::JinjaError& ex) {
    choice.unparsed = ex.what();
  }
  return choice;
}

ChatTemplateChoice choose_chat_template(const std::optional<ChatTemplateKind>& flag, const std::optional<std::string>& model_template,
                                        const tok::Tokenizer& tk) {
  return choose_chat_template(flag, model_template, tk.bos() >= 0 ? tk.token_text(tk.bos()) : std::string(),
                              tk.eos() >= 0 ? tk.token_text(tk.eos()) : std::string(), tk.adds_bos());
}

std::optional<ChatTemplateKind> parse_chat_template_flag(const std::string& name) {
  if (name.empty() || name == "model" || name == "auto") return std::nullopt;
  if (auto kind = chat_template_from_name(name)) return kind;
  throw std::invalid_argument(
      fmt::format("--chat-template {}: unknown (llama2, llama3, chatml, mistral, gemma, gpt-oss, or model: the model's own)", name));
}

PromptText render_chat_prompt(std::span<const ChatMessage> messages, ChatTemplateKind kind, const ModelChatTemplate* model) {
  if (model) {
    std::string why;
    std::optional<RenderedChat> own = render_model_template(model->jinja, messages, true, model->bos_token, model->eos_token, &why);
    if (!own && !model->builtin_fallback)
      throw std::invalid_argument("the model's chat template cannot be rendered (" + why + "); pass --chat-template");
    if (own) {
      PromptText text{std::move(own->text), std::move(own->markup)};
      const std::size_t bos = model->bos_token.size();
      if (model->strip_bos && bos > 0 && text.text.starts_with(model->bos_token)) {
        text.text.erase(0, bos);
        std::vector<std::pair<std::size_t, std::size_t>> shifted;
        for (const auto& [off, len] : text.markup) {
          const std::size_t lo = std::max(off, bos), hi = off + len;
          if (hi > lo) shifted.emplace_back(lo - bos, hi - lo);
        }
        text.markup = std::move(shifted);
      }
      return text;
    }
  }
  RenderedChat chat = render_chat_marked(kind, messages);
  return {std::move(chat.text), std::move(chat.markup)};
}

PromptText render_chat_prompt(std::span<const ChatMessage> messages, const ChatTemplateChoice& choice) {
  choice.require_usable();
  return render_chat_prompt(messages, choice.builtin.value_or(ChatTemplateKind::chatml), choice.own ? &*choice.own : nullptr);
}

}  // namespace sluice
