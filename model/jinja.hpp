// model/jinja.hpp: a Jinja2 subset for the chat templates models carry (tokenizer.chat_template),
// rendered as Hugging Face's apply_chat_template does (jinja2 with trim_blocks and lstrip_blocks,
// the loopcontrols extension, raise_exception and strftime_now globals, tojson as HF defines it).
//
// The subset: {{ }}, {% %}, {# #} with "-" / "+" whitespace control; if/elif/else, for (loop.*,
// `for x in y if c`, else, break/continue, `for k, v in d.items()`), set (names, ns.attr,
// namespace()), macro; literals, lists, dicts, attribute / subscript / slice access, arithmetic,
// ~, comparisons, and/or/not, in, `is` tests, ternaries, the filters and methods real templates
// use (model/jinja_builtins.cpp lists them). Anything else is a JinjaError naming line and column.
//
// Provenance: every string value carries which of its bytes the template wrote itself (its text
// and its string literals: "markup") and which came from data (message contents and roles). The
// rendered text reports the markup byte ranges, so a caller can tokenize special tokens only where
// the template put them (model/chat_template.hpp's RenderedChat).
//
// Limits: a template of at most 1 MiB, expressions nested at most 200 deep, macro calls at most 64
// deep, 1,000,000 evaluation steps and 16 MiB of output per render: a template can fail, never hang
// or exhaust memory.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "model/chat_template.hpp"

namespace sluice::jinja {

// A template that cannot be parsed or rendered. `raised` is true when the template itself called
// raise_exception(msg) (the messages are ones the model's template refuses); what() then holds msg.
class JinjaError : public std::runtime_error {
 public:
  JinjaError(const std::string& what, bool raised = false) : std::runtime_error(what), raised_(raised) {}
  bool raised() const { return raised_; }

 private:
  bool raised_;
};

struct Program;  // the parsed template (model/jinja_ast.hpp)

// A parsed template; immutable, so one may be rendered from several threads at once.
class Template {
 public:
  // Parses `source`; throws JinjaError ("line L, column C: why") for text outside the subset.
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders a chat: the variables messages (list of {role, content}), add_generation_prompt,
  // bos_token and eos_token (these two count as markup: they are the model's own special tokens),
  // tools = none... as apply_chat_template passes them. Throws JinjaError.
  RenderedChat render_chat(std::span<const ChatMessage> messages, bool add_generation_prompt, const std::string& bos_token,
                           const std::string& eos_token) const;

 private:
  std::unique_ptr<Program> program_;
};

}  // namespace sluice::jinja

namespace sluice {

// The model's own template rendered for `messages`, or nullopt when the Jinja subset cannot parse
// or render it (why in *reason when given), so the caller falls back to a built-in kind. A template
// that raises (raise_exception: e.g. roles that do not alternate) throws std::invalid_argument with
// its message instead: the messages are wrong, not the template. Thread-safe.
std::optional<RenderedChat> render_model_template(std::string_view jinja, std::span<const ChatMessage> messages,
                                                  bool add_generation_prompt, const std::string& bos_token,
                                                  const std::string& eos_token, std::string* reason = nullptr);

}  // namespace sluice
