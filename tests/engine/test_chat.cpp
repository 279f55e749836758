// A conversation (engine/chat.hpp) on a small synthetic model (built-in vocabulary: no ../shared):
//  - the second turn runs only its new tokens, and answers what a fresh run of the whole
//    conversation answers;
//  - when the context fills, the oldest turns are dropped whole (the system message stays) and
//    the conversation goes on; a message too long alone is refused, the conversation unchanged;
//  - a cancelled answer ends with what it has, and is kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/chat.hpp"
#include "engine/generate.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

struct Fixture {
  sluice::testing::TempDir dir;
  std::unique_ptr<Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::unique_ptr<InRamForward> forward;
  Fixture() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 2;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from.clear();
    const std::string path = dir.file("m.gguf");
    write_synthetic_gguf(path, synth);
    model = Model::open(path);
    tokenizer = std::make_unique<tok::Tokenizer>(vocab_from_metadata(model->metadata()));
    forward = std::make_unique<InRamForward>(*model);
  }
  std::unique_ptr<Transformer> transformer(std::int64_t n_ctx) const {
    return std::make_unique<Transformer>(model->config(), n_ctx, cpu::Threading{});
  }
};

ChatOptions options(std::int32_t n_predict) {
  ChatOptions o;
  o.render = [](std::span<const ChatMessage> m) { return render_chat_marked(ChatTemplateKind::chatml, m); };
  o.system = "Be brief.";
  o.generate.n_predict = n_predict;
  o.generate.stop_at_eog = false;  // random weights: every answer runs its full length
  o.generate.sampling.temperature = 0.0f;
  return o;
}

TEST(Chat, TheSecondTurnRunsOnlyItsNewTokensAndAnswersAsAFreshRun) {
  Fixture f;
  auto t = f.transformer(256);
  Engine engine(*f.forward, *t, *f.tokenizer, {1, 1, 512});
  Conversation chat(engine, *f.tokenizer, 256, options(8));
  const ChatTurn first = chat.ask("Hello there");
  EXPECT_EQ(first.reused_tokens, 0);
  std::string streamed;
  const ChatTurn second = chat.ask("And then?", [&](std::string_view p) { streamed += p; });
  EXPECT_EQ(streamed, second.result.text);
  // The prompt goes on from the first turn's tokens and its answer as generated (not its text
  // tokenized again), and all of that but the last generated token was in the cache.
  const std::int64_t first_len = first.prompt_tokens + std::int64_t(first.result.generated.size());
  ASSERT_GT(second.prompt_tokens, first_len);
  EXPECT_TRUE(std::equal(first.prompt.begin(), first.prompt.end(), second.prompt.begin()));
  EXPECT_TRUE(std::equal(first.result.generated.begin(), first.result.generated.end(), second.prompt.begin() + first.prompt_tokens));
  EXPECT_EQ(second.reused_tokens, first_len - 1);
  EXPECT_EQ(engine.last_run().prompt_tokens, second.prompt_tokens - second.reused_tokens);
  ASSERT_EQ(chat.messages().size(), 5u);  // system, user, assistant, user, assistant
  EXPECT_EQ(chat.messages()[2].content, first.result.text);
  // What follows the answer is the template's text for the end of that turn and the new message.
  const RenderedChat rendered = render_chat_marked(ChatTemplateKind::chatml,
                                                   std::span(chat.messages().data(), chat.messages().size() - 1));
  EXPECT_EQ(f.tokenizer->decode(std::span(second.prompt).subspan(std::size_t(first_len)), true),
            rendered.text.substr(rendered.text.rfind("<|im_end|>\n<|im_start|>user")));

  // The same tokens from scratch, in a fresh cache, give the same answer.
  auto fresh_t = f.transformer(256);
  SeqRequest fresh;
  fresh.prompt = second.prompt;
  fresh.options = options(8).generate;
  EXPECT_EQ(Engine(*f.forward, *fresh_t, *f.tokenizer, {1, 1, 512}).generate(fresh).generated, second.result.generated);
}

TEST(Chat, AFullContextDropsTheOldestTurnsWhole) {
  Fixture f;
  constexpr std::int64_t kCtx = 160;
  auto t = f.transformer(kCtx);
  Engine engine(*f.forward, *t, *f.tokenizer, {1, 1, 512});
  Conversation chat(engine, *f.tokenizer, kCtx, options(12));
  std::size_t dropped = 0;
  for (int i = 0; i < 8; ++i) {
    const ChatTurn turn = chat.ask("tell me more about turn " + std::to_string(i));
    dropped += turn.dropped_messages;
    EXPECT_LE(turn.prompt_tokens + 12, kCtx);
    const auto& m = chat.messages();
    ASSERT_GE(m.size(), 3u);
    EXPECT_EQ(m[0].role, "system");
    for (std::size_t k = 1; k < m.size(); ++k) EXPECT_EQ(m[k].role, k % 2 == 1 ? "user" : "assistant") << k;
    EXPECT_EQ(m[m.size() - 2].content, "tell me more about turn " + std::to_string(i));
  }
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(dropped % 2, 0u);  // whole turns: a question and its answer
  const std::vector<ChatMessage> before = chat.messages();
  EXPECT_THROW(chat.ask(std::string(400, 'x')), std::length_error);
  EXPECT_EQ(chat.messages().size(), before.size());
}

TEST(Chat, ACancelledAnswerEndsWithWhatItHasAndIsKept) {
  Fixture f;
  auto t = f.transformer(256);
  Engine engine(*f.forward, *t, *f.tokenizer, {1, 1, 512});
  Conversation chat(engine, *f.tokenizer, 256, options(50));
  int asked = 0;
  const ChatTurn turn = chat.ask("Hi", {}, [&] { return ++asked >= 4; });
  EXPECT_TRUE(turn.cancelled);
  EXPECT_EQ(turn.result.generated.size(), 4u);
  EXPECT_EQ(chat.messages().back().content, turn.result.text);
  const ChatTurn next = chat.ask("Go on");  // the conversation goes on
  EXPECT_FALSE(next.cancelled);
  EXPECT_EQ(next.result.generated.size(), 50u);
  chat.reset();
  EXPECT_EQ(chat.messages().size(), 1u);  // the system message stays
}

}  // namespace
}  // namespace sluice
