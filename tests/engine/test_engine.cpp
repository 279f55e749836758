// The one generation loop (engine/engine.hpp) on a small synthetic model (built-in vocabulary: no
// ../shared needed):
//  - Engine::generate gives the tokens of a plain one-token-per-pass loop written here over
//    evaluate() (greedy and seeded sampling), and streams exactly its text;
//  - verifying drafted tokens (several tokens and logit rows per sequence per pass, a prefix
//    accepted, the rest rolled back) gives the same tokens as plain decoding, whether every draft
//    is right, only a prefix is, or none is, with a resident or a spilled KV cache;
//  - stop strings cut the text before the stop and the streamed pieces add up to it;
//  - a pass that throws sluice::Exception fails only the requests in it, with the message; every
//    other request's output is the fault-free run's.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "engine/engine.hpp"
#include "engine/generate.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/failing_forward.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

struct SynthModel {
  sluice::testing::TempDir dir;
  std::unique_ptr<Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  SynthModel() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 2;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from.clear();  // the built-in vocabulary
    const std::string path = dir.file("m.gguf");
    write_synthetic_gguf(path, synth);
    model = Model::open(path);
    tokenizer = std::make_unique<tok::Tokenizer>(vocab_from_metadata(model->metadata()));
  }
};

const SynthModel& synth() {
  static const SynthModel m;
  return m;
}

constexpr std::int64_t kCtx = 96;

std::vector<std::int32_t> prompt_of(int i) {
  std::vector<std::int32_t> p = {1};
  for (int k = 0; k < 3 + 2 * i; ++k) p.push_back(std::int32_t(20 + (37 * (i + 1) + 11 * k) % 400));
  return p;
}

GenerateOptions options_of(int i, std::int32_t n_predict = 20) {
  GenerateOptions o;
  o.n_predict = n_predict;
  o.stop_at_eog = false;  // random weights: every request runs its full length
  o.sampling.temperature = i % 2 == 0 ? 0.0f : 0.9f;
  o.sampling.seed = 500 + std::uint64_t(i);
  return o;
}

// The reference: one forward pass for the prompt, then one per token, sampling each from the last
// row; no engine involved.
std::vector<std::int32_t> plain_decode(std::span<const std::int32_t> prompt, const GenerateOptions& o) {
  const SynthModel& m = synth();
  Transformer t(m.model->config(), kCtx, cpu::Threading{});
  Sampler sampler(o.sampling);
  std::vector<std::int32_t> history(prompt.begin(), prompt.end()), out;
  std::vector<float> logits;
  evaluate(t, *m.model, prompt, 0, false, logits);
  for (std::int32_t i = 0; i < o.n_predict; ++i) {
    const std::int32_t next = sampler.sample(logits, history);
    history.push_back(next);
    out.push_back(next);
    evaluate(t, *m.model, std::span(&next, 1), std::int64_t(history.size()) - 1, false, logits);
  }
  return out;
}

std::unique_ptr<Transformer> make_transformer(std::int32_t n_seq, const std::string& spill_dir = "") {
  const ModelConfig& c = synth().model->config();
  cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, kCtx, n_seq, cpu::KvType::f16};
  auto kv = spill_dir.empty() ? cache::make_resident_kv_cache(shape) : cache::make_spilled_kv_cache(shape, spill_dir);
  return std::make_unique<Transformer>(c, std::move(kv), cpu::Threading{});
}

TEST(Engine, GenerateIsThePlainLoopAndStreamsItsText) {
  const SynthModel& m = synth();
  InRamForward forward(*m.model);
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    auto t = make_transformer(1);
    SeqRequest r;
    r.prompt = prompt_of(i);
    r.options = options_of(i);
    std::string streamed;
    r.on_text = [&](std::string_view piece) { streamed += piece; };
    const SeqResult got = Engine(forward, *t, *m.tokenizer, {1, 1, 512}).generate(r);
    EXPECT_EQ(got.generated, plain_decode(r.prompt, r.options));
    EXPECT_EQ(got.finish, FinishReason::length);
    EXPECT_EQ(streamed, got.text);
    EXPECT_FALSE(got.text.empty());
  }
}

// A chat's next turn: the tokens an earlier request left in the slot are not run again, and the
// answer is the one a fresh run of the whole conversation gives (greedy and seeded).
TEST(Engine, ACachedPrefixIsNotRunAgainAndChangesNothing) {
  const SynthModel& m = synth();
  InRamForward forward(*m.model);
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    auto t = make_transformer(1);
    Engine engine(forward, *t, *m.tokenizer, {1, 1, 512});
    SeqRequest first;
    first.prompt = prompt_of(i);
    first.options = options_of(i, 8);
    const SeqResult answer = engine.generate(first);
    // The conversation so far, then the next turn's tokens.
    std::vector<std::int32_t> conversation = first.prompt;
    conversation.insert(conversation.end(), answer.generated.begin(), answer.generated.end());
    const std::int64_t in_cache = std::int64_t(conversation.size()) - 1;  // the last sampled token was never fed
    for (std::int32_t token : {55, 66, 77}) conversation.push_back(token);
    SeqRequest next;
    next.prompt = conversation;
    next.options = options_of(i, 6);
    next.cached = in_cache;
    const SeqResult reused = engine.generate(next);
    EXPECT_EQ(engine.last_run().prompt_tokens, std::int64_t(conversation.size()) - in_cache);
    EXPECT_EQ(reused.generated, plain_decode(conversation, next.options));
  }
}

TEST(Engine, ACancelledRequestEndsWithWhatItHas) {
  const SynthModel& m = synth();
  InRamForward forward(*m.model);
  auto t = make_transformer(1);
  SeqRequest r;
  r.prompt = prompt_of(0);
  r.options = options_of(0, 20);
  int asked = 0;
  r.cancelled = [&] { return ++asked == 3; };
  const SeqResult got = Engine(forward, *t, *m.tokenizer, {1, 1, 512}).generate(r);
  EXPECT_EQ(got.finish, FinishReason::stop);
  ASSERT_EQ(got.generated.size(), 3u);
  const std::vector<std::int32_t> full = plain_decode(r.prompt, r.options);
  EXPECT_EQ(got.generated, std::vector<std::int32_t>(full.begin(), full.begin() + 3));
}

TEST(Engine, RefusedRequestThrowsSluiceException) {
  const SynthModel& m = synth();
  InRamForward forward(*m.model);
  auto t = make_transformer(1);
  SeqRequest r;
  r.prompt = prompt_of(0);
  r.options.n_predict = std::int32_t(kCtx);  // prompt + n_predict past the context
  try {
    Engine(forward, *t, *m.tokenizer, {1, 1, 512}).generate(r);
    FAIL() << "expected a refusal";
  } catch (const Exception& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid);
    EXPECT_NE(std::string(e.what()).find("exceed the context of 96"), std::string::npos) << e.what();
  }
}

// Drafts a known continuation of each request (the plain decode's tokens), spoiled from
// `wrong_from` on (a token id that plain decoding did not pick).
struct ContinuationDrafter {
  std::vector<std::vector<std::int32_t>> prompts, continuations;
  std::size_t wrong_from = 1u << 30;
  std::vector<std::int32_t> operator()(std::size_t index, std::span<const std::int32_t> tokens, std::int32_t max) const {
    const auto& prompt = prompts[index];
    const auto& cont = continuations[index];
    std::vector<std::int32_t> draft;
    // tokens = prompt + accepted: the draft continues from there.
    for (std::size_t at = tokens.size() - prompt.size(); at < cont.size() && std::int32_t(draft.size()) < max; ++at) {
      draft.push_back(at >= wrong_from ? std::int32_t((cont[at] + 1) % 400 + 5) : cont[at]);
    }
    return draft;
  }
  void operator()(std::span<DraftRequest> requests) const {
    for (DraftRequest& r : requests) r.draft = (*this)(r.index, r.tokens, r.max);
  }
};

std::vector<SeqResult> run_all(Engine& engine, const std::vector<SeqRequest>& requests, BatchRunStats* stats = nullptr) {
  std::size_t next = 0;
  std::vector<SeqResult> results(requests.size());
  const BatchRunStats s = engine.run(
      [&]() -> std::optional<SeqRequest> {
        if (next == requests.size()) return std::nullopt;
        return requests[next++];
      },
      [&](SeqResult&& r) { results[r.index] = std::move(r); });
  if (stats) *stats = s;
  return results;
}

TEST(Engine, VerifyingDraftsGivesThePlainDecodeTokens) {
  const SynthModel& m = synth();
  InRamForward forward(*m.model);
  sluice::testing::TempDir spill_dir;
  std::vector<SeqRequest> requests;
  ContinuationDrafter base;
  for (int i = 0; i < 4; ++i) {
    SeqRequest r;
    r.prompt = prompt_of(i);
    r.options = options_of(i, 16 + i);
    base.prompts.push_back(r.prompt);
    base.continuations.push_back(plain_decode(r.prompt, r.options));
    requests.push_back(r);
  }
  BatchRunStats plain_stats;
  {
    auto t = make_transformer(2);
    Engine plain(forward, *t, *m.tokenizer, {2, 2, 512});
    run_all(plain, requests, &plain_stats);
  }
  struct Case {
    const char* name;
    std::size_t wrong_from;  // drafts are right before this many generated tokens, wrong after
    bool spill;
  };
  for (Case c : {Case{"every draft right", 1u << 30, false}, Case{"a prefix right", 7, false}, Case{"none right", 0, false},
                 Case{"a prefix right, spilled KV", 7, true}}) {
    SCOPED_TRACE(c.name);
    ContinuationDrafter drafter = base;
    drafter.wrong_from = c.wrong_from;
    auto t = make_transformer(2, c.spill ? spill_dir.path() : "");
    BatchOptions o{2, 2, 512};
    o.drafter = drafter;
    o.max_draft = 4;
    Engine engine(forward, *t, *m.tokenizer, o);
    BatchRunStats stats;
    const auto results = run_all(engine, requests, &stats);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(results[i].generated, base.continuations[i]) << "request " << i;
      EXPECT_GT(results[i].drafted, 0) << "request " << i;
    }
    EXPECT_GT(stats.drafted_tokens, 0);
    if (c.wrong_from == 0) {
      EXPECT_EQ(stats.accepted_tokens, 0);
      EXPECT_EQ(stats.passes, plain_stats.passes);
    } else {
      // Up to 5 tokens per sequence per pass while the drafts are right: fewer passes.
      EXPECT_GT(stats.accepted_tokens, 0);
      EXPECT_LT(stats.passes, plain_stats.passes);
      if (c.wrong_from > 100) {
        EXPECT_EQ(stats.accepted_tokens, stats.drafted_tokens);
        EXPECT_LT(stats.passes * 2, plain_stats.passes) << stats.passes << " passes, plain " << plain_stats.passes;
      } else {
        EXPECT_LT(stats.accepted_tokens, stats.drafted_tokens);
      }
    }
  }
}

TEST(Engine, StopStringsCutTheTextAndTheStreamAgrees) {
  const SynthModel& m = synth();
  InRamForward forward(*m.model);
  SeqRequest r;
  r.prompt = prompt_of(2);
  r.options = options_of(0, 24);
  auto t = make_transformer(1);
  const SeqResult full = Engine(forward, *t, *m.tokenizer, {1, 1, 512}).generate(r);
  ASSERT_GT(full.text.size(), 12u);
  // A stop string from the middle of the text (likely spanning tokens): the text ends before its
  // first occurrence, and nothing of it reaches the stream.
  const std::string stop = full.text.substr(full.text.size() / 2, 5);
  const std::size_t cut = full.text.find(stop);
  r.stop = {"never in this text \x01", stop};
  std::string streamed;
  r.on_text = [&](std::string_view piece) { streamed += piece; };
  const SeqResult got = Engine(forward, *t, *m.tokenizer, {1, 1, 512}).generate(r);
  EXPECT_EQ(got.finish, FinishReason::stop);
  EXPECT_EQ(got.text, full.text.substr(0, cut));
  EXPECT_EQ(streamed, got.text);
  EXPECT_LT(got.generated.size(), full.generated.size());
}

using sluice::testing::FailingForward;

TEST(Engine, AFailedPassFailsOnlyItsRequests) {
  const SynthModel& m = synth();
  std::vector<SeqRequest> requests;
  for (int i = 0; i < 6; ++i) {
    SeqRequest r;
    r.prompt = prompt_of(i);
    r.options = options_of(i, 6 + 2 * i);
    requests.push_back(r);
  }
  const BatchOptions options{3, 2, 512};  // 3 in flight, 2 per pass: some sequences sit a pass out
  std::vector<SeqResult> expected;
  {
    InRamForward in_ram(*m.model);
    FailingForward forward(in_ram, 0);
    auto t = make_transformer(3);
    Engine engine(forward, *t, *m.tokenizer, options);
    expected = run_all(engine, requests);
  }
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(expected[i].generated, plain_decode(requests[i].prompt, requests[i].options)) << "fault-free request " << i;
  }
  for (std::uint64_t fail_at : {1u, 2u, 5u, 9u}) {
    SCOPED_TRACE(::testing::Message() << "pass " << fail_at << " fails");
    InRamForward in_ram(*m.model);
    FailingForward forward(in_ram, fail_at);
    auto t = make_transformer(3);
    Engine engine(forward, *t, *m.tokenizer, options);
    std::vector<std::int32_t> failed_in_pass;
    std::size_t next = 0;
    std::vector<SeqResult> results(requests.size());
    const BatchRunStats stats = engine.run(
        [&]() -> std::optional<SeqRequest> {
          if (next == requests.size()) return std::nullopt;
          return requests[next++];
        },
        [&](SeqResult&& r) { results[r.index] = std::move(r); },
        [&](const PassInfo& p) {
          if (p.failed) failed_in_pass.push_back(p.failed);
        });
    ASSERT_EQ(failed_in_pass.size(), 1u);
    EXPECT_EQ(stats.failed_passes, 1u);
    std::size_t failed = 0;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (results[i].finish == FinishReason::error) {
        ++failed;
        EXPECT_EQ(results[i].error, sluice::testing::kFailedPassMessage);
        ASSERT_TRUE(results[i].exception);
        try {
          std::rethrow_exception(results[i].exception);
        } catch (const Exception& e) {
          EXPECT_EQ(e.context().offset, 4096);
          EXPECT_EQ(e.kind(), ErrorKind::io);
        }
      } else {
        EXPECT_EQ(results[i].generated, expected[i].generated) << "request " << i;
        EXPECT_EQ(results[i].text, expected[i].text) << "request " << i;
        EXPECT_EQ(results[i].finish, expected[i].finish) << "request " << i;
      }
    }
    // Both sequences of the failed pass, and only they.
    EXPECT_EQ(failed, 2u);
    EXPECT_EQ(std::size_t(failed_in_pass[0]), failed);
    EXPECT_EQ(stats.failed, failed);
  }
}

TEST(Engine, AFailedSingleGenerationRethrowsTheTypedError) {
  const SynthModel& m = synth();
  InRamForward in_ram(*m.model);
  FailingForward forward(in_ram, 3);
  auto t = make_transformer(1);
  SeqRequest r;
  r.prompt = prompt_of(1);
  r.options = options_of(0, 8);
  try {
    Engine(forward, *t, *m.tokenizer, {1, 1, 512}).generate(r);
    FAIL() << "expected the pass's error";
  } catch (const Exception& e) {
    EXPECT_EQ(e.context().file, "model.sluice");
    EXPECT_EQ(e.context().extent, "blk.1");
  }
}

}  // namespace
}  // namespace sluice
