// `sluice batch` input lines: the three formats, every field, every kind of bad line (one
// LineError naming the line), and a fuzz smoke run of the parser's fuzz entry.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "engine/batch_input.hpp"
#include "tests/fuzz/batch_input_fuzz_entry.hpp"

namespace sluice {
namespace {

JobRequest ok(std::string_view text, InputFormat f, std::int64_t line = 3) {
  auto parsed = parse_input_line(text, line, f);
  EXPECT_TRUE(parsed.has_value());
  if (!parsed) return {};
  if (auto* e = std::get_if<LineError>(&*parsed)) {
    ADD_FAILURE() << e->message;
    return {};
  }
  return std::get<JobRequest>(*parsed);
}

std::string error(std::string_view text, InputFormat f, std::int64_t line = 3) {
  auto parsed = parse_input_line(text, line, f);
  EXPECT_TRUE(parsed.has_value());
  if (!parsed || std::holds_alternative<JobRequest>(*parsed)) {
    ADD_FAILURE() << "accepted: " << text;
    return "";
  }
  return std::get<LineError>(*parsed).message;
}

TEST(BatchInput, DetectsTheFormatFromTheFirstLine) {
  EXPECT_EQ(detect_input_format(R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}})"), InputFormat::openai);
  EXPECT_EQ(detect_input_format(R"({"id": "a", "prompt": "x"})"), InputFormat::jsonl);
  EXPECT_EQ(detect_input_format(R"(  {"prompt": "x"})"), InputFormat::jsonl);
  EXPECT_EQ(detect_input_format("{broken"), InputFormat::jsonl);
  EXPECT_EQ(detect_input_format("Once upon a time"), InputFormat::text);
}

TEST(BatchInput, OpenAiChatAndCompletionWithEveryField) {
  JobRequest chat = ok(R"({"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "x",
      "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi "},
      {"type": "text", "text": "there"}]}], "max_completion_tokens": 12, "temperature": 0.5, "top_p": 0.9, "seed": 7,
      "stop": ["\n", "END"]}})",
                       InputFormat::openai);
  EXPECT_EQ(chat.custom_id, "c1");
  EXPECT_TRUE(chat.chat);
  ASSERT_EQ(chat.messages.size(), 2u);
  EXPECT_EQ(chat.messages[1].role, "user");
  EXPECT_EQ(chat.messages[1].content, "hi there");
  EXPECT_EQ(chat.max_tokens, 12);
  EXPECT_FLOAT_EQ(*chat.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*chat.top_p, 0.9f);
  EXPECT_EQ(chat.seed, 7u);
  EXPECT_EQ(chat.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(chat.line, 3);
  JobRequest completion = ok(R"({"custom_id": "p", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Once",
      "max_tokens": 5, "stop": "."}})",
                             InputFormat::openai);
  EXPECT_FALSE(completion.chat);
  EXPECT_EQ(completion.prompt, "Once");
  EXPECT_EQ(completion.max_tokens, 5);
  EXPECT_EQ(completion.stop, std::vector<std::string>{"."});
  EXPECT_FALSE(completion.temperature.has_value());
}

TEST(BatchInput, PlainJsonlAndText) {
  JobRequest a = ok(R"({"id": "x1", "prompt": "hello", "max_tokens": 3})", InputFormat::jsonl);
  EXPECT_EQ(a.custom_id, "x1");
  EXPECT_EQ(ok(R"({"id": 17, "prompt": "hello"})", InputFormat::jsonl).custom_id, "17");
  EXPECT_EQ(ok(R"({"prompt": "hello"})", InputFormat::jsonl, 9).custom_id, "line-9");
  JobRequest m = ok(R"({"messages": [{"role": "user", "content": "hi"}]})", InputFormat::jsonl);
  EXPECT_TRUE(m.chat);
  JobRequest t = ok("Tell me a story\r", InputFormat::text, 5);
  EXPECT_EQ(t.prompt, "Tell me a story");
  EXPECT_EQ(t.custom_id, "line-5");
  EXPECT_FALSE(parse_input_line("   \r", 1, InputFormat::jsonl).has_value());
  EXPECT_FALSE(parse_input_line("", 1, InputFormat::text).has_value());
}

TEST(BatchInput, EveryBadLineIsAnErrorNamingItsLine) {
  const InputFormat oa = InputFormat::openai;
  const std::pair<const char*, const char*> cases[] = {
      {"{not json", "invalid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}})", "custom_id"},
      {R"({"custom_id": "", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}})", "custom_id"},
      {R"({"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {"prompt": "x"}})", "POST"},
      {R"({"custom_id": "a", "method": "POST", "body": {"prompt": "x"}})", "url"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}})", "unknown url"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions"})", "body"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": []})", "not a JSON object"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}})", "prompt"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": 3}})", "prompt"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"prompt": "x"}})", "messages"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}})", "messages"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"content": "x"}]}})", "role"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user"}]}})", "content"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}})", "text"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "max_tokens": -1}})", "max_tokens"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "max_tokens": 1.5}})", "max_tokens"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "temperature": "hot"}})", "temperature"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "temperature": 3}})", "temperature"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "top_p": 1.5}})", "top_p"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "seed": "s"}})", "seed"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "stop": [1]}})", "stop"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "stop": ["a","b","c","d","e"]}})", "stop"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "stop": ""}})", "stop"},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "n": 2}})", "\"n\""},
      {R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "stream": true}})", "stream"},
  };
  for (const auto& [text, says] : cases) {
    const std::string msg = error(text, oa, 11);
    EXPECT_EQ(msg.rfind("line 11: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(says), std::string::npos) << text << " -> " << msg;
  }
  EXPECT_NE(error(R"({"id": "a", "prompt": "x", "messages": []})", InputFormat::jsonl).find("not both"), std::string::npos);
  EXPECT_NE(error(R"({"id": "a"})", InputFormat::jsonl).find("prompt"), std::string::npos);
  EXPECT_NE(error(R"({"id": [1], "prompt": "x"})", InputFormat::jsonl).find("id"), std::string::npos);
  // The custom_id is kept when it was readable, so the error line can name it.
  auto parsed = parse_input_line(R"({"custom_id": "keep", "method": "GET", "url": "/v1/completions", "body": {}})", 2, oa);
  EXPECT_EQ(std::get<LineError>(*parsed).custom_id, "keep");
}

TEST(BatchInputFuzzSmoke, MutatedLinesNeverBreakTheInvariants) {
  const std::string seeds[] = {
      R"({"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stop": ["x"]}})",
      R"({"id": 5, "prompt": "hello", "temperature": 0.2, "seed": 9})",
      "plain text prompt",
  };
  std::mt19937_64 rng(99);
  std::uint64_t runs = 0;
  for (const std::string& seed : seeds) {
    for (int round = 0; round < 3000; ++round) {
      std::string s = seed;
      const int edits = 1 + int(rng() % 6);
      for (int e = 0; e < edits && !s.empty(); ++e) {
        const std::size_t at = rng() % s.size();
        switch (rng() % 4) {
          case 0: s[at] = static_cast<char>(rng() % 256); break;
          case 1: s.erase(at, 1 + rng() % 4); break;
          case 2: s.insert(at, 1, "{}[]\",:0-e\\"[rng() % 12]); break;
          default: s.insert(at, s.substr(rng() % s.size(), rng() % 8)); break;
        }
      }
      for (std::uint8_t f = 0; f < 3; ++f) {
        std::string input(1, static_cast<char>(f));
        input += s;
        fuzz::run_batch_input(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
        ++runs;
      }
    }
  }
  EXPECT_EQ(runs, 3u * 3000 * 3);
}

}  // namespace
}  // namespace sluice
