// model/chat_template.hpp: chat messages (role, content) formatted as a prompt, for the five
// template families sluice knows. The text equals what llama.cpp's built-in renderers produce
// (llm_chat_apply_template in src/llama-chat.cpp, reached through llama_chat_apply_template with
// add_ass = true); each kind is one of llama.cpp's renderers:
//
//   kind      llama.cpp name     shape (S system, U user, A assistant; "|" marks a message boundary)
//   llama2    llama2-sys-strip   [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]|A</s>|[INST] U [/INST]
//   llama3    llama3             <|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|> ... +
//                                <|start_header_id|>assistant<|end_header_id|>\n\n
//   chatml    chatml             <|im_start|>ROLE\nTEXT<|im_end|>\n ... + <|im_start|>assistant\n
//   mistral   mistral-v7         [SYSTEM_PROMPT] S[/SYSTEM_PROMPT]|[INST] U[/INST]| A</s>
//   gemma     gemma              <start_of_turn>user\nS\n\nU<end_of_turn>\n|<start_of_turn>model\nA<end_of_turn>\n
//                                ... + <start_of_turn>model\n
//   gpt-oss   gpt-oss            <|start|>ROLE<|message|>TEXT<|end|> (an assistant's: <|return|>) ... +
//                                <|start|>assistant  (OpenAI's harmony format; the model writes its
//                                channel, <|channel|>final<|message|>..., itself)
//
// Whitespace: llama2, llama3 and gemma trim each content (space, \t, \n, \v, \f, \r at both ends,
// as the real templates' strip()/trim do); chatml, mistral and gpt-oss keep it. llama2 and mistral add
// nothing after the last user turn (their "[/INST]" already opens the assistant's reply).
//
// Llama 2 is llama.cpp's "llama2-sys-strip": the renderer llama.cpp picks for Meta's
// Llama-2-chat template (it contains content.strip()); plain "llama2" has no <<SYS>> block.
// Mistral is llama.cpp's "mistral-v7": the renderer llama.cpp picks for every Mistral template
// with a [SYSTEM_PROMPT] (Mistral Small 3 / 3.1 / 3.2, Large 2411, Magistral, Devstral), i.e. all
// current Mistral Instruct releases. Older ones map elsewhere in llama.cpp (7B v0.1/v0.2: plain
// llama2; Nemo: mistral-v3-tekken; Large 2407 / 7B v0.3 tool template: mistral-v3) and are not
// detected here.
//
// BOS: none of these renderers writes BOS. Tokenize the text with add_special = true (the
// tokenizer adds BOS when tokenizer.ggml.add_bos_token says so: Llama, Mistral, Gemma yes, Qwen
// no) and parse_special = true, so markers like "<|im_start|>" or "[INST]" become their control
// tokens; this is how llama.cpp's server tokenizes a rendered chat. As there, marker text inside a
// message's content is parsed as the marker too, so a message can open a turn of its own: where
// the messages come from someone else (`sluice batch`), render with render_chat_marked and
// tokenize with special tokens allowed only inside its markup ranges (Tokenizer::encode's
// special_ranges overload).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

enum class ChatTemplateKind { llama2, llama3, chatml, mistral, gemma, gpt_oss };

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" (exactly, lower case)
  std::string content;
};

// "llama2", "llama3", "chatml", "mistral", "gemma", "gpt-oss".
const char* to_string(ChatTemplateKind kind);

// The kind for a name: to_string's names, "qwen" (chatml), and llama.cpp's names for the same
// renderers ("llama2-sys-strip", "mistral-v7"). Exact, lower case; nullopt for any other name.
std::optional<ChatTemplateKind> chat_template_from_name(std::string_view name);

// Recognises a GGUF's tokenizer.chat_template (Jinja text) by the markers llama.cpp's
// llm_chat_detect_template looks for, checked in llama.cpp's order. Returns a kind only when
// llama.cpp would render this template with that kind's renderer; nullopt for a template llama.cpp
// renders some other way (Phi, DeepSeek, Mistral v3, plain llama2, ...) or does not know. Accepts
// any bytes; thread-safe.
std::optional<ChatTemplateKind> detect_chat_template(std::string_view jinja);

// Renders `messages` as llama.cpp's renderer for `kind` does with add_generation_prompt: the text
// ends where the assistant's reply begins. Throws std::invalid_argument, saying which message and
// why, for what the template cannot express (the real template would raise):
//   - an empty list, or a role other than system / user / assistant;
//   - llama2, mistral, gemma: anything but an optional system message first and then user,
//     assistant, user, ..., ending with a user message (the reply is the assistant's turn);
//     gemma has no system role, so the system message is merged into the first user turn.
// chatml, llama3 and gpt-oss take the three roles in any order. Contents may hold any bytes. Thread-safe.
std::string render_chat(ChatTemplateKind kind, std::span<const ChatMessage> messages);

// render_chat's text, and the (offset, length) byte ranges of it that the template wrote itself
// (markers, separators), in order; everything outside them came from a message (its content or
// its validated role). Same errors as render_chat. Thread-safe.
struct RenderedChat {
  std::string text;
  std::vector<std::pair<std::size_t, std::size_t>> markup;
};
RenderedChat render_chat_marked(ChatTemplateKind kind, std::span<const ChatMessage> messages);

}  // namespace sluice
