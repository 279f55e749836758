// model/chat_template.cpp: the five chat renderers and template detection, transcribed from
// llama.cpp's src/llama-chat.cpp (llm_chat_apply_template, llm_chat_detect_template); see
// chat_template.hpp for the shapes and conventions.
#include "model/chat_template.hpp"

#include <array>
#include <cstddef>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace sluice {
namespace {

enum class Role { system, user, assistant };

// What llama.cpp's trim() strips: isspace() in the C locale.
constexpr std::string_view kTrimmed = " \t\n\v\f\r";

std::string_view trim(std::string_view s) {
  const std::size_t begin = s.find_first_not_of(kTrimmed);
  if (begin == std::string_view::npos) return {};
  const std::size_t end = s.find_last_not_of(kTrimmed);
  return s.substr(begin, end - begin + 1);
}

// A role or content for an error message: at most kQuotedMax bytes, other bytes than printable
// ASCII as \xNN, so a hostile role cannot flood or garble the message.
constexpr std::size_t kQuotedMax = 40;

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < kQuotedMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  out += s.size() > kQuotedMax ? "\"..." : "\"";
  return out;
}

Role role_of(ChatTemplateKind kind, const ChatMessage& m, std::size_t index) {
  if (m.role == "system") return Role::system;
  if (m.role == "user") return Role::user;
  if (m.role == "assistant") return Role::assistant;
  throw std::invalid_argument(fmt::format("chat template {}: message {} has role {}; the roles are system, user and assistant",
                                          to_string(kind), index + 1, quoted(m.role)));
}

// llama2, mistral and gemma: [system] user assistant user ... user, as the real templates demand
// ("conversation roles must alternate user/assistant/user/assistant/...") with the reply being the
// assistant's turn.
void require_alternation(ChatTemplateKind kind, std::span<const ChatMessage> messages) {
  const std::size_t first = role_of(kind, messages[0], 0) == Role::system ? 1 : 0;
  for (std::size_t i = first; i < messages.size(); ++i) {
    const Role role = role_of(kind, messages[i], i);
    const Role expected = (i - first) % 2 == 0 ? Role::user : Role::assistant;
    if (role == Role::system) {
      throw std::invalid_argument(fmt::format("chat template {}: message {} is a system message; only the first message may be one",
                                              to_string(kind), i + 1));
    }
    if (role != expected) {
      throw std::invalid_argument(fmt::format("chat template {}: message {} is \"{}\" where \"{}\" was expected; after an optional "
                                              "system message the roles must alternate user, assistant, user, ...",
                                              to_string(kind), i + 1, messages[i].role, expected == Role::user ? "user" : "assistant"));
    }
  }
  if (messages.size() == first || role_of(kind, messages.back(), messages.size() - 1) != Role::user) {
    throw std::invalid_argument(fmt::format("chat template {}: the last message must be the user's (the reply is the assistant's "
                                            "turn), but it is \"{}\"",
                                            to_string(kind), messages.back().role));
  }
}

std::size_t content_bytes(std::span<const ChatMessage> messages) {
  std::size_t n = 0;
  for (const ChatMessage& m : messages) n += m.role.size() + m.content.size();
  return n;
}

// A reservation hint: the most marker text a renderer adds per message (llama3's header and
// <|eot_id|>: 19 + 19 + 10 bytes).
constexpr std::size_t kMarkupPerMessageBytes = 48;

// The rendered text and where the template's own markup lies in it, so the markup alone can be
// tokenized with special tokens (RenderedChat).
struct Builder {
  RenderedChat chat;
  void markup(std::string_view s) {
    if (s.empty()) return;
    // Adjacent markup is one range, so a special token written across two pieces still matches.
    if (!chat.markup.empty() && chat.markup.back().first + chat.markup.back().second == chat.text.size()) {
      chat.markup.back().second += s.size();
    } else {
      chat.markup.emplace_back(chat.text.size(), s.size());
    }
    chat.text += s;
  }
  void content(std::string_view s) { chat.text += s; }
};

void render_chatml(std::span<const ChatMessage> messages, Builder& out) {
  for (const ChatMessage& m : messages) {
    out.markup("<|im_start|>");
    out.content(m.role);
    out.markup("\n");
    out.content(m.content);
    out.markup("<|im_end|>\n");
  }
  out.markup("<|im_start|>assistant\n");
}

// llama.cpp's OPENAI_MOE ("gpt-oss"): harmony turns; an assistant's past turn ends with <|return|>.
void render_gpt_oss(std::span<const ChatMessage> messages, Builder& out) {
  for (const ChatMessage& m : messages) {
    out.markup("<|start|>");
    out.content(m.role);
    out.markup("<|message|>");
    out.content(m.content);
    out.markup(m.role == "assistant" ? "<|return|>" : "<|end|>");
  }
  out.markup("<|start|>assistant");
}

void render_llama3(std::span<const ChatMessage> messages, Builder& out) {
  for (const ChatMessage& m : messages) {
    out.markup("<|start_header_id|>");
    out.content(m.role);
    out.markup("<|end_header_id|>\n\n");
    out.content(trim(m.content));
    out.markup("<|eot_id|>");
  }
  out.markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// llama.cpp's LLAMA_2_SYS_STRIP. The first "[INST] " is written up front, so a system message
// (first, by require_alternation) lands inside the first user turn.
void render_llama2(std::span<const ChatMessage> messages, Builder& out) {
  out.markup("[INST] ");
  bool inside_turn = true;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string_view content = trim(messages[i].content);
    if (!inside_turn) {
      inside_turn = true;
      out.markup("[INST] ");
    }
    switch (role_of(ChatTemplateKind::llama2, messages[i], i)) {
      case Role::system:
        out.markup("<<SYS>>\n");
        out.content(content);
        out.markup("\n<</SYS>>\n\n");
        break;
      case Role::user:
        out.content(content);
        out.markup(" [/INST]");
        break;
      case Role::assistant:
        out.content(content);
        out.markup("</s>");
        inside_turn = false;
        break;
    }
  }
}

// llama.cpp's MISTRAL_V7 (the v7 template with its spaces; v7-tekken drops them).
void render_mistral(std::span<const ChatMessage> messages, Builder& out) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string& content = messages[i].content;
    switch (role_of(ChatTemplateKind::mistral, messages[i], i)) {
      case Role::system:
        out.markup("[SYSTEM_PROMPT] ");
        out.content(content);
        out.markup("[/SYSTEM_PROMPT]");
        break;
      case Role::user:
        out.markup("[INST] ");
        out.content(content);
        out.markup("[/INST]");
        break;
      case Role::assistant:
        out.markup(" ");
        out.content(content);
        out.markup("</s>");
        break;
    }
  }
}

// Gemma has no system role: the (trimmed) system prompt opens the first user turn.
void render_gemma(std::span<const ChatMessage> messages, Builder& out) {
  std::string_view system_prompt;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Role role = role_of(ChatTemplateKind::gemma, messages[i], i);
    if (role == Role::system) {
      system_prompt = trim(messages[i].content);
      continue;
    }
    out.markup(role == Role::assistant ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
    if (!system_prompt.empty() && role == Role::user) {
      out.content(system_prompt);
      out.markup("\n\n");
      system_prompt = {};
    }
    out.content(trim(messages[i].content));
    out.markup("<end_of_turn>\n");
  }
  out.markup("<start_of_turn>model\n");
}

struct Name {
  std::string_view name;
  ChatTemplateKind kind;
};

constexpr std::array<Name, 9> kNames = {{
    {"llama2", ChatTemplateKind::llama2},
    {"llama3", ChatTemplateKind::llama3},
    {"chatml", ChatTemplateKind::chatml},
    {"mistral", ChatTemplateKind::mistral},
    {"gemma", ChatTemplateKind::gemma},
    {"qwen", ChatTemplateKind::chatml},
    {"llama2-sys-strip", ChatTemplateKind::llama2},
    {"mistral-v7", ChatTemplateKind::mistral},
    {"gpt-oss", ChatTemplateKind::gpt_oss},
}};

}  // namespace

const char* to_string(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::llama2: return "llama2";
    case ChatTemplateKind::llama3: return "llama3";
    case ChatTemplateKind::chatml: return "chatml";
    case ChatTemplateKind::mistral: return "mistral";
    case ChatTemplateKind::gemma: return "gemma";
    case ChatTemplateKind::gpt_oss: return "gpt-oss";
  }
  return "unknown";
}

std::optional<ChatTemplateKind> chat_template_from_name(std::string_view name) {
  for (const Name& n : kNames) {
    if (n.name == name) return n.kind;
  }
  return std::nullopt;
}

// llm_chat_detect_template, branch for branch, up to the last branch that yields one of our
// kinds (gpt-oss); every branch before it that picks another llama.cpp renderer answers nullopt,
// so a template holding several families' markers resolves as in llama.cpp.
std::optional<ChatTemplateKind> detect_chat_template(std::string_view tmpl) {
  using K = ChatTemplateKind;
  // llama.cpp first takes the text as a template name (its map holds these five for our kinds).
  for (const auto& [name, kind] : {std::pair{"chatml", K::chatml}, std::pair{"llama3", K::llama3}, std::pair{"gemma", K::gemma},
                                   std::pair{"llama2-sys-strip", K::llama2}, std::pair{"mistral-v7", K::mistral},
                                   std::pair{"gpt-oss", K::gpt_oss}}) {
    if (tmpl == name) return kind;
  }
  auto has = [tmpl](std::string_view marker) { return tmpl.find(marker) != std::string_view::npos; };
  const std::optional<K> other;  // a llama.cpp renderer sluice does not have
  if (has("<|im_start|>")) {
    if (has("<|im_sep|>") || has("<end_of_utterance>")) return other;  // phi4, smolvlm
    return K::chatml;
  }
  if (tmpl.starts_with("mistral") || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return K::mistral;                                       // mistral-v7
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) return other;  // mistral-v1, -v3, -v3-tekken
    if (has("content.strip()")) return K::llama2;                                       // llama2-sys-strip
    return other;                                                                       // llama2, -sys, -sys-bos
  }
  if (has("<|assistant|>") && has("<|end|>")) return other;                         // phi3
  if (has("[gMASK]<sop>")) return other;                                           // chatglm4
  if (has("<|assistant|>") && has("<|user|>")) return other;                        // falcon3, glmedge
  if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return other;     // glmedge
  if (has("<|user|>") && has("<|endoftext|>")) return other;                        // zephyr
  if (has("bos_token + message['role']")) return other;                             // monarch
  if (has("<start_of_turn>")) return K::gemma;
  if (has("'\\n\\nAssistant: ' + eos_token")) return other;                         // orion
  if (has("GPT4 Correct ")) return other;                                           // openchat
  if (has("USER: ") && has("ASSISTANT: ")) return other;                            // vicuna
  if (has("### Instruction:") && has("<|EOT|>")) return other;                      // deepseek
  if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return other;        // command-r
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return K::llama3;
  if (has("[gMASK]sop")) return other;                                              // chatglm3
  if (has("<\u7528\u6237>")) return other;                                             // minicpm ("<用户>")
  if (has("'Assistant: ' + message['content'] + eos_token")) return other;          // deepseek2
  if (has("<\uff5cAssistant\uff5c>") && has("<\uff5cUser\uff5c>") &&
      has("<\uff5cend\u2581of\u2581sentence\uff5c>")) {
    return other;                                                                   // deepseek3
  }
  if (has("[|system|]") && has("[|assistant|]") && has("[|endofturn|]")) return other;  // exaone3, exaone4
  if (has("rwkv-world") || has("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}")) return other;  // rwkv
  if (has("<|start_of_role|>")) return other;                                       // granite
  if (has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]")) {
    return other;                                                                   // gigachat
  }
  if (has("<|role_start|>")) return other;                                          // megrez
  if (has(" \u0410\u0441\u0441\u0438\u0441\u0442\u0435\u043d\u0442:")) return other;  // yandex (" Ассистент:")
  if (has("<role>ASSISTANT</role>") && has("'HUMAN'")) return other;                // bailing
  if (has("<|header_start|>") && has("<|header_end|>")) return other;               // llama4
  if (has("<|endofuserprompt|>")) return other;                                     // dots1
  if (has("<|extra_0|>") && has("<|extra_4|>")) return other;                       // hunyuan-moe
  if (has("<|start|>") && has("<|channel|>")) return K::gpt_oss;
  return other;
}

RenderedChat render_chat_marked(ChatTemplateKind kind, std::span<const ChatMessage> messages) {
  if (messages.empty()) {
    throw std::invalid_argument(fmt::format("chat template {}: no messages to render", to_string(kind)));
  }
  for (std::size_t i = 0; i < messages.size(); ++i) role_of(kind, messages[i], i);
  if (kind == ChatTemplateKind::llama2 || kind == ChatTemplateKind::mistral || kind == ChatTemplateKind::gemma) {
    require_alternation(kind, messages);
  }
  Builder out;
  out.chat.text.reserve(content_bytes(messages) + kMarkupPerMessageBytes * (messages.size() + 1));
  switch (kind) {
    case ChatTemplateKind::llama2: render_llama2(messages, out); break;
    case ChatTemplateKind::llama3: render_llama3(messages, out); break;
    case ChatTemplateKind::chatml: render_chatml(messages, out); break;
    case ChatTemplateKind::mistral: render_mistral(messages, out); break;
    case ChatTemplateKind::gemma: render_gemma(messages, out); break;
    case ChatTemplateKind::gpt_oss: render_gpt_oss(messages, out); break;
  }
  return std::move(out.chat);
}

std::string render_chat(ChatTemplateKind kind, std::span<const ChatMessage> messages) {
  return render_chat_marked(kind, messages).text;
}

}  // namespace sluice
