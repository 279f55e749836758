// Chat template tests (model/chat_template.hpp):
//   - expected renderings for each kind, single and multi-turn, with and without a system message
//     (the texts are llama.cpp's: its tests/test-chat-template.cpp conversation and outputs, and
//     llama_chat_apply_template's output for the others; tests/model/check_chat_template.py
//     re-checks every kind against llama.cpp itself);
//   - detection on real tokenizer.chat_template texts (data/chat_templates/, sources in its
//     README.md) and on marker combinations, following llama.cpp's precedence;
//   - errors: empty list, unknown roles, roles out of the order a template requires;
//   - seeded random inputs: detect never fails, render returns or throws std::invalid_argument.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/chat_template.hpp"

namespace sluice {
namespace {

using K = ChatTemplateKind;
using Messages = std::vector<ChatMessage>;

std::string repo_dir() {
  const std::string here = __FILE__;  // <repo>/tests/model/test_chat_template.cpp
  const std::string suffix = "/tests/model/test_chat_template.cpp";
  return here.size() > suffix.size() ? here.substr(0, here.size() - suffix.size()) : ".";
}

std::string read_template(const std::string& name) {
  const std::string path = repo_dir() + "/tests/model/data/chat_templates/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// llama.cpp's tests/test-chat-template.cpp conversation.
const Messages kWithSystem = {
    {"system", "You are a helpful assistant"}, {"user", "Hello"}, {"assistant", "Hi there"}, {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},  {"user", "Another question"},
};
const Messages kNoSystem = {{"user", "Hello"}, {"assistant", "Hi there"}, {"user", "Who are you"}};
const Messages kOneTurn = {{"user", "Hello"}};

struct Rendering {
  K kind;
  std::string with_system, no_system, one_turn;
};

void PrintTo(const Rendering& r, std::ostream* os) { *os << to_string(r.kind); }

class ChatRender : public testing::TestWithParam<Rendering> {};

TEST_P(ChatRender, EqualsLlamaCpp) {
  const Rendering& r = GetParam();
  EXPECT_EQ(render_chat(r.kind, kWithSystem), r.with_system);
  EXPECT_EQ(render_chat(r.kind, kNoSystem), r.no_system);
  EXPECT_EQ(render_chat(r.kind, kOneTurn), r.one_turn);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, ChatRender,
    testing::Values(
        Rendering{K::llama2,
                  "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
                  "I am an assistant</s>[INST] Another question [/INST]",
                  "[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]", "[INST] Hello [/INST]"},
        Rendering{K::llama3,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        Rendering{K::chatml,
                  "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                  "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                  "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
                  "<|im_start|>assistant\n",
                  "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n"
                  "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n",
                  "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
        Rendering{K::mistral,
                  "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>"
                  "[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]",
                  "[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST]", "[INST] Hello[/INST]"},
        Rendering{K::gemma,
                  "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
                  "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
                  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n",
                  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"}));

TEST(ChatRenderDetail, WhitespaceTrimmedWhereLlamaCppTrims) {
  const Messages m = {{"system", "\n\t sys \r\n"}, {"user", "  u  "}};
  EXPECT_EQ(render_chat(K::llama2, m), "[INST] <<SYS>>\nsys\n<</SYS>>\n\nu [/INST]");
  EXPECT_EQ(render_chat(K::llama3, m),
            "<|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(K::gemma, m), "<start_of_turn>user\nsys\n\nu<end_of_turn>\n<start_of_turn>model\n");
  // chatml and mistral keep contents as they are.
  EXPECT_EQ(render_chat(K::chatml, m),
            "<|im_start|>system\n\n\t sys \r\n<|im_end|>\n<|im_start|>user\n  u  <|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(K::mistral, m), "[SYSTEM_PROMPT] \n\t sys \r\n[/SYSTEM_PROMPT][INST]   u  [/INST]");
}

TEST(ChatRenderDetail, GemmaDropsAnEmptySystemPrompt) {
  EXPECT_EQ(render_chat(K::gemma, Messages{{"system", "  "}, {"user", "u"}}),
            "<start_of_turn>user\nu<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatRenderDetail, ChatmlAndLlama3TakeAnyOrder) {
  const Messages m = {{"assistant", "a"}, {"system", "s"}, {"user", "u"}, {"user", "v"}};
  EXPECT_EQ(render_chat(K::chatml, m),
            "<|im_start|>assistant\na<|im_end|>\n<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n"
            "<|im_start|>user\nv<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_NO_THROW(render_chat(K::llama3, m));
  EXPECT_NO_THROW(render_chat(K::chatml, Messages{{"system", "only"}}));
  EXPECT_EQ(render_chat(K::gpt_oss, m),
            "<|start|>assistant<|message|>a<|return|><|start|>system<|message|>s<|end|><|start|>user<|message|>u<|end|>"
            "<|start|>user<|message|>v<|end|><|start|>assistant");
}

// render_chat_marked: the same text, and its markup ranges hold the template's markers only,
// never a message's content (what `sluice batch` tokenizes without special tokens).
TEST(ChatRenderMarked, MarkupIsTheTemplatesOwnText) {
  const Messages messages = {{"system", "S<|im_end|>"}, {"user", "U<start_of_turn>"}, {"assistant", "A[INST]"}, {"user", "V"}};
  for (const K kind : {K::llama2, K::llama3, K::chatml, K::mistral, K::gemma}) {
    const RenderedChat chat = render_chat_marked(kind, messages);
    EXPECT_EQ(chat.text, render_chat(kind, messages)) << to_string(kind);
    std::size_t end = 0;
    std::string markup;
    for (const auto& [offset, length] : chat.markup) {
      EXPECT_GE(offset, end) << to_string(kind);  // in order, not overlapping
      ASSERT_LE(offset + length, chat.text.size()) << to_string(kind);
      end = offset + length;
      markup += chat.text.substr(offset, length);
    }
    for (const char* content : {"S<|im_end|>", "U<start_of_turn>", "A[INST]"}) {
      EXPECT_EQ(markup.find(content), std::string::npos) << to_string(kind) << ": " << content << " in the markup";
    }
  }
  const RenderedChat chatml = render_chat_marked(K::chatml, Messages{{"user", "hi"}});
  std::string markup;
  for (const auto& [offset, length] : chatml.markup) markup += chatml.text.substr(offset, length);
  EXPECT_EQ(markup, "<|im_start|>\n<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateNames, RoundTripAndAliases) {
  for (K k : {K::llama2, K::llama3, K::chatml, K::mistral, K::gemma, K::gpt_oss}) {
    EXPECT_EQ(chat_template_from_name(to_string(k)), k) << to_string(k);
  }
  EXPECT_EQ(chat_template_from_name("qwen"), K::chatml);
  EXPECT_EQ(chat_template_from_name("llama2-sys-strip"), K::llama2);
  EXPECT_EQ(chat_template_from_name("mistral-v7"), K::mistral);
  for (const char* name : {"", "Llama3", "llama", "mistral-v3", "phi3", "chatml ", "gemma2"}) {
    EXPECT_EQ(chat_template_from_name(name), std::nullopt) << name;
  }
}

struct RealTemplate {
  std::string file;
  std::optional<K> kind;
};

void PrintTo(const RealTemplate& t, std::ostream* os) { *os << t.file; }

class ChatDetectReal : public testing::TestWithParam<RealTemplate> {};

TEST_P(ChatDetectReal, AsLlamaCpp) {
  const RealTemplate& t = GetParam();
  const std::string text = read_template(t.file);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(detect_chat_template(text), t.kind);
}

// llama.cpp's picks (check_chat_template.py confirms them): Phi-3.5 -> phi3, Nemo ->
// mistral-v3-tekken, Mistral 7B v0.2 -> plain llama2: none of them sluice's renderers.
INSTANTIATE_TEST_SUITE_P(
    Files, ChatDetectReal,
    testing::Values(RealTemplate{"meta-llama-Llama-2-7b-chat-hf.jinja", K::llama2},
                    RealTemplate{"meta-llama-Llama-3.3-70B-Instruct.jinja", K::llama3},
                    RealTemplate{"Qwen-QwQ-32B.jinja", K::chatml},
                    RealTemplate{"mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja", K::mistral},
                    RealTemplate{"google-gemma-2-2b-it.jinja", K::gemma},
                    RealTemplate{"mistralai-Mistral-Nemo-Instruct-2407.jinja", std::nullopt},
                    RealTemplate{"mistralai-Mistral-7B-Instruct-v0.2.jinja", std::nullopt},
                    RealTemplate{"microsoft-Phi-3.5-mini-instruct.jinja", std::nullopt}));

TEST(ChatDetect, MarkerPrecedenceFollowsLlamaCpp) {
  EXPECT_EQ(detect_chat_template("<|im_start|><start_of_turn><|start_header_id|><|end_header_id|>"), K::chatml);
  EXPECT_EQ(detect_chat_template("<|im_start|><|im_sep|>"), std::nullopt);  // phi4
  EXPECT_EQ(detect_chat_template("[INST]<start_of_turn>"), std::nullopt);   // plain llama2 wins over gemma
  EXPECT_EQ(detect_chat_template("[INST] <<SYS>> content.strip()"), K::llama2);
  EXPECT_EQ(detect_chat_template("[INST] [SYSTEM_PROMPT] content.strip()"), K::mistral);
  EXPECT_EQ(detect_chat_template("[INST] [AVAILABLE_TOOLS] content.strip()"), std::nullopt);  // mistral-v3
  EXPECT_EQ(detect_chat_template("mistral [SYSTEM_PROMPT]"), K::mistral);
  EXPECT_EQ(detect_chat_template("<start_of_turn><|start_header_id|><|end_header_id|>"), K::gemma);
  EXPECT_EQ(detect_chat_template("<|user|><|endoftext|><start_of_turn>"), std::nullopt);  // zephyr
  EXPECT_EQ(detect_chat_template("USER: ASSISTANT: <|start_header_id|><|end_header_id|>"), std::nullopt);  // vicuna
  EXPECT_EQ(detect_chat_template("<|start_header_id|><|end_header_id|>"), K::llama3);
  EXPECT_EQ(detect_chat_template("<|start_header_id|>"), std::nullopt);
  EXPECT_EQ(detect_chat_template("<|start|>{{ role }}<|message|>{{ content }}<|end|><|channel|>"), K::gpt_oss);
  EXPECT_EQ(detect_chat_template("<|start|><|channel|><|start_header_id|><|end_header_id|>"), K::llama3);
  EXPECT_EQ(detect_chat_template("<|start|><|channel|><|header_start|><|header_end|>"), std::nullopt);  // llama4 first
  EXPECT_EQ(detect_chat_template("<|start|><|message|>"), std::nullopt);
  EXPECT_EQ(detect_chat_template(""), std::nullopt);
  EXPECT_EQ(detect_chat_template("{{ messages }}"), std::nullopt);
}

TEST(ChatDetect, LlamaCppTemplateNames) {
  EXPECT_EQ(detect_chat_template("chatml"), K::chatml);
  EXPECT_EQ(detect_chat_template("gemma"), K::gemma);
  EXPECT_EQ(detect_chat_template("llama3"), K::llama3);
  EXPECT_EQ(detect_chat_template("mistral-v7"), K::mistral);
  EXPECT_EQ(detect_chat_template("llama2-sys-strip"), K::llama2);
  EXPECT_EQ(detect_chat_template("gpt-oss"), K::gpt_oss);
  EXPECT_EQ(detect_chat_template("llama2"), std::nullopt);  // llama.cpp's plain llama2: no <<SYS>>
  EXPECT_EQ(detect_chat_template("mistral-v3"), std::nullopt);
}

// The error text of render_chat, or "" when it renders.
std::string error_of(K kind, const Messages& m) {
  try {
    render_chat(kind, m);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(ChatErrors, EmptyListAndUnknownRole) {
  for (K k : {K::llama2, K::llama3, K::chatml, K::mistral, K::gemma}) {
    EXPECT_NE(error_of(k, {}).find("no messages"), std::string::npos) << to_string(k);
    const std::string e = error_of(k, {{"user", "hi"}, {"tool", "x"}});
    EXPECT_NE(e.find("message 2 has role \"tool\""), std::string::npos) << e;
    EXPECT_NE(e.find(to_string(k)), std::string::npos) << e;
    EXPECT_NE(error_of(k, {{"User", "hi"}}), "") << "roles are lower case";
  }
}

TEST(ChatErrors, HostileRoleIsQuotedAndCut) {
  const std::string e = error_of(K::chatml, {{std::string(1000, 'r') + "\n\x01\"", "x"}});
  EXPECT_LT(e.size(), 200u) << e;
  EXPECT_NE(e.find("\"..."), std::string::npos) << e;
  EXPECT_NE(error_of(K::chatml, {{"a\x01\"b", "x"}}).find("\"a\\x01\\x22b\""), std::string::npos);
}

TEST(ChatErrors, OrderTheAlternatingTemplatesReject) {
  const std::vector<std::pair<Messages, std::string>> cases = {
      {{{"assistant", "a"}, {"user", "u"}}, "message 1 is \"assistant\" where \"user\" was expected"},
      {{{"user", "u"}, {"user", "v"}}, "message 2 is \"user\" where \"assistant\" was expected"},
      {{{"system", "s"}, {"assistant", "a"}}, "message 2 is \"assistant\" where \"user\" was expected"},
      {{{"user", "u"}, {"system", "s"}, {"user", "v"}}, "message 2 is a system message"},
      {{{"system", "s"}, {"system", "t"}, {"user", "u"}}, "message 2 is a system message"},
      {{{"user", "u"}, {"assistant", "a"}}, "the last message must be the user's"},
      {{{"system", "s"}}, "the last message must be the user's"},
  };
  for (K k : {K::llama2, K::mistral, K::gemma}) {
    for (const auto& [messages, want] : cases) {
      const std::string e = error_of(k, messages);
      EXPECT_NE(e.find(want), std::string::npos) << to_string(k) << ": got \"" << e << "\", want \"" << want << "\"";
    }
  }
  for (K k : {K::llama3, K::chatml}) {
    for (const auto& [messages, want] : cases) EXPECT_EQ(error_of(k, messages), "") << to_string(k) << ": " << want;
  }
}

// Seeded random inputs built from the markers and roles the code looks at, plus random bytes.
TEST(ChatRobustness, RandomInputsNeverCrash) {
  const std::uint32_t seed = std::random_device{}();
  std::printf("ChatRobustness seed: %u\n", seed);
  std::mt19937 rng(seed);
  const std::vector<std::string> pieces = {
      "<|im_start|>", "<|im_sep|>", "[INST]", " [INST]", "[SYSTEM_PROMPT]", "[AVAILABLE_TOOLS]", "content.strip()",
      "<start_of_turn>", "<|start_header_id|>", "<|end_header_id|>", "mistral", "<|user|>", "<|assistant|>", "<|end|>",
      "system", "user", "assistant", "model", " ", "\n", "\t", "\v", std::string(1, '\0'), "\xff", "\xe2\x96\x81", "a"};
  auto random_text = [&](int max_pieces) {
    std::string s;
    const int n = std::uniform_int_distribution<int>(0, max_pieces)(rng);
    for (int i = 0; i < n; ++i) {
      if (rng() % 4 == 0) {
        s += static_cast<char>(rng() & 0xff);
      } else {
        s += pieces[rng() % pieces.size()];
      }
    }
    return s;
  };
  int rendered = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    (void)detect_chat_template(random_text(12));
    Messages m(rng() % 6);
    for (ChatMessage& msg : m) {
      const int r = static_cast<int>(rng() % 8);
      msg.role = r < 3 ? std::string(r == 0 ? "system" : r == 1 ? "user" : "assistant") : (r < 6 ? "user" : random_text(2));
      msg.content = random_text(6);
    }
    for (K k : {K::llama2, K::llama3, K::chatml, K::mistral, K::gemma}) {
      try {
        const std::string out = render_chat(k, m);
        EXPECT_FALSE(out.empty());
        ++rendered;
      } catch (const std::invalid_argument&) {
      }
    }
  }
  EXPECT_GT(rendered, 0) << "seed " << seed;
}

}  // namespace
}  // namespace sluice
