// The one choice of chat template batch, chat, serve and run make (engine/chat_choice.hpp):
// --chat-template wins; else the model's own Jinja template (with the built-in kind recognised in
// it as the fallback); a template outside the Jinja subset falls back to that kind; none: refused.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "engine/chat_choice.hpp"

namespace sluice {
namespace {

// Qwen2.5's template, less its tools branch: a default system prompt when none is given.
const std::string kQwenLike =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const std::vector<ChatMessage> kHi = {{"user", "hi"}};

TEST(ChatChoice, ModelTemplateByDefaultWithDetectedFallback) {
  const ChatTemplateChoice c = choose_chat_template(std::nullopt, kQwenLike, "", "<|im_end|>", false);
  ASSERT_TRUE(c.own.has_value());
  ASSERT_TRUE(c.builtin.has_value());
  EXPECT_EQ(*c.builtin, ChatTemplateKind::chatml);
  EXPECT_TRUE(c.own->builtin_fallback);
  EXPECT_TRUE(c.usable());
  const PromptText text = render_chat_prompt(kHi, c);
  EXPECT_EQ(text.text,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  // The content is not markup; the markers are.
  const std::size_t at = text.text.find("hi<|im_end|>");
  for (const auto& [off, len] : text.markup) EXPECT_FALSE(off <= at && at < off + len) << off << "+" << len;
  EXPECT_NE(c.describe().find("own"), std::string::npos);
}

TEST(ChatChoice, FlagWinsOverTheModelsTemplate) {
  const ChatTemplateChoice c = choose_chat_template(ChatTemplateKind::llama3, kQwenLike, "", "", false);
  EXPECT_FALSE(c.own.has_value());
  ASSERT_TRUE(c.builtin.has_value());
  EXPECT_EQ(*c.builtin, ChatTemplateKind::llama3);
  EXPECT_EQ(render_chat_prompt(kHi, c).text, render_chat(ChatTemplateKind::llama3, kHi));
}

TEST(ChatChoice, UnparsableTemplateFallsBackToTheDetectedKind) {
  const std::string odd = "<|im_start|>{% frobnicate %}";
  const ChatTemplateChoice c = choose_chat_template(std::nullopt, odd, "", "", false);
  EXPECT_FALSE(c.own.has_value());
  EXPECT_FALSE(c.unparsed.empty());
  ASSERT_TRUE(c.builtin.has_value());
  EXPECT_EQ(render_chat_prompt(kHi, c).text, render_chat(ChatTemplateKind::chatml, kHi));
}

TEST(ChatChoice, OwnTemplateOfNoKnownKindHasNoFallback) {
  const std::string own = "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<<bot>>{% endif %}";
  const ChatTemplateChoice c = choose_chat_template(std::nullopt, own, "", "", false);
  ASSERT_TRUE(c.own.has_value());
  EXPECT_FALSE(c.builtin.has_value());
  EXPECT_FALSE(c.own->builtin_fallback);
  EXPECT_EQ(render_chat_prompt(kHi, c).text, "<<user>>hi<<bot>>");
}

TEST(ChatChoice, BosTheTokenizerAddsIsDropped) {
  const std::string own = "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}";
  EXPECT_EQ(render_chat_prompt(kHi, choose_chat_template(std::nullopt, own, "<s>", "</s>", true)).text, "[hi]");
  EXPECT_EQ(render_chat_prompt(kHi, choose_chat_template(std::nullopt, own, "<s>", "</s>", false)).text, "<s>[hi]");
}

TEST(ChatChoice, NoTemplateNoFlagIsRefused) {
  const ChatTemplateChoice c = choose_chat_template(std::nullopt, std::nullopt, "", "", false);
  EXPECT_FALSE(c.usable());
  EXPECT_THROW(render_chat_prompt(kHi, c), std::invalid_argument);
}

TEST(ChatChoice, FlagNames) {
  EXPECT_FALSE(parse_chat_template_flag("").has_value());
  EXPECT_FALSE(parse_chat_template_flag("model").has_value());
  EXPECT_FALSE(parse_chat_template_flag("auto").has_value());
  EXPECT_EQ(parse_chat_template_flag("chatml"), ChatTemplateKind::chatml);
  EXPECT_EQ(parse_chat_template_flag("gpt-oss"), ChatTemplateKind::gpt_oss);
  EXPECT_THROW(parse_chat_template_flag("vicuna"), std::invalid_argument);
}

}  // namespace
}  // namespace sluice
