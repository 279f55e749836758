// `sluice batch` without -c: the context each sequence gets is what the requests still to answer
// need (BatchJob::context_needed), not 4096; and an answer's "model" is the model's own name when
// none is given. Synthetic model with the built-in vocabulary: no ../shared needed.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/batch_job.hpp"
#include "engine/session.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

struct Fixture {
  sluice::testing::TempDir dir;
  std::string model = dir.file("m.gguf"), input = dir.file("in.jsonl"), output = dir.file("out.jsonl");
  Fixture() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 1;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from.clear();
    write_synthetic_gguf(model, synth);
  }
  JobOptions job() const {
    JobOptions o;
    o.input = input;
    o.output = output;
    o.model_path = model;
    o.default_max_tokens = 6;
    o.fsync_seconds = 0;
    o.batch = {2, 2, 512};
    return o;
  }
};

TEST(BatchContext, TheLongestPromptPlusItsMaxTokensBoundsTheNeed) {
  Fixture f;
  std::ofstream(f.input) << R"({"id":"a","prompt":"hello world"})" "\n"
                         << R"({"id":"b","prompt":"x","max_tokens":40})" "\n"
                         << R"({"id":"c","prompt":"a longer prompt than the others"})" "\n";
  std::ostringstream log;
  // b: 1 byte + 2 + 40 beats c: 31 + 2 + 6.
  EXPECT_EQ(BatchJob(f.job(), log).context_needed(), 43);
  JobOptions more = f.job();
  more.default_max_tokens = 20;  // c: 31 + 2 + 20 = 53
  EXPECT_EQ(BatchJob(more, log).context_needed(), 53);
}

TEST(BatchContext, ChatMessagesCountTheWidestTemplateUnlessOneIsGiven) {
  Fixture f;
  std::ofstream(f.input) << R"({"id":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there"}]})"
                         << "\n";
  std::ostringstream log;
  JobRequest r;
  r.chat = true;
  r.messages = {{"system", "Be brief."}, {"user", "Hi there"}};
  std::size_t widest = 0;
  for (ChatTemplateKind kind : {ChatTemplateKind::llama2, ChatTemplateKind::llama3, ChatTemplateKind::chatml,
                                ChatTemplateKind::mistral, ChatTemplateKind::gemma, ChatTemplateKind::gpt_oss}) {
    try {
      widest = std::max(widest, prompt_text(r, kind).text.size());
    } catch (const std::invalid_argument&) {
    }
  }
  ASSERT_GT(widest, 17u);  // the template's markup is counted, not only the contents
  EXPECT_EQ(BatchJob(f.job(), log).context_needed(), std::int64_t(widest) + 256 + 2 + 6);  // + the model template's allowance
  JobOptions given = f.job();
  given.chat_template = ChatTemplateKind::chatml;
  EXPECT_EQ(BatchJob(given, log).context_needed(), std::int64_t(prompt_text(r, ChatTemplateKind::chatml).text.size()) + 2 + 6);
}

TEST(BatchContext, RefusedAndAnsweredLinesNeedNothing) {
  Fixture f;
  std::ofstream(f.input) << R"({"id":"a","prompt":"hi"})" "\n"
                         << "not json at all, and quite a long line that would need a big context\n"
                         << R"({"id":"b","prompt":"hello"})" "\n";
  std::ostringstream log;
  EXPECT_EQ(BatchJob(f.job(), log).context_needed(), 5 + 2 + 6);
  {
    SessionOptions so;
    so.model = f.model;
    so.n_seq = 2;
    so.ctx_needed = BatchJob(f.job(), log).context_needed();
    Session session(so);
    EXPECT_EQ(session.n_ctx(), 256);  // the need, rounded up, not the model's 4096 cap
    const JobSummary s = BatchJob(f.job(), log).run(session);
    ASSERT_EQ(s.ok, 2u);
  }
  // Everything answered: a rerun needs no context beyond the least.
  EXPECT_EQ(BatchJob(f.job(), log).context_needed(), 1);
}

TEST(BatchContext, AnAnswerNamesTheModelWhenNoNameIsGiven) {
  Fixture f;
  std::ofstream(f.input) << R"({"id":"a","prompt":"hi"})" "\n";
  std::ostringstream log;
  SessionOptions so;
  so.model = f.model;
  so.n_ctx = 64;
  so.n_seq = 2;
  Session session(so);
  ASSERT_EQ(BatchJob(f.job(), log).run(session).ok, 1u);
  std::ifstream in(f.output);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const auto answer = nlohmann::json::parse(line);
  EXPECT_EQ(answer["response"]["body"]["model"], session.metadata().get_string("general.name").value()) << line;
}

// The ETA counts tokens, not answers: requests in flight count by what they have been through.
TEST(BatchEta, FromTokenThroughput) {
  EXPECT_EQ(job_eta(10, 0, 0, 500, 100.0), -1.0);  // nothing answered yet: unknown
  EXPECT_EQ(job_eta(10, 2, 0, 0, 0.0), -1.0);
  // 2 answered at 100 tokens each, 10 left, 300 tokens into the ones in flight, 100 tok/s:
  // (10 x 100 - (500 - 200)) / 100 = 7 s.
  EXPECT_DOUBLE_EQ(job_eta(10, 2, 200, 500, 100.0), 7.0);
  EXPECT_DOUBLE_EQ(job_eta(1, 2, 200, 900, 100.0), 0.0);  // in flight past the average: never negative
}

}  // namespace
}  // namespace sluice
