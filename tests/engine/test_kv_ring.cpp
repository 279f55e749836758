// Sliding-window layers keep their KV cache as a ring (cache/kv_cache.hpp): the window plus a
// slack of rows per sequence instead of the whole context. A model whose prompts run far past
// the window and the ring gives the same logits, bit for bit, as with a full-length cache: in one
// long pass (stored and attended in pieces), token by token, with two sequences in one batch,
// with fp16 and q8_0 caches, resident and spilled; and a truncation keeps what the ring still
// holds and reports 0 where it does not.
#include <gtest/gtest.h>

#include <cstring>

#include "engine/engine.hpp"
#include "engine/forward.hpp"
#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "engine/transformer.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

constexpr std::int64_t kWindow = 8;
constexpr std::int64_t kSlack = 3;  // ring of 11 rows; pieces of 4 positions
constexpr std::int64_t kCtx = 96;

SynthOptions gemma_options() {
  SynthOptions o;
  o.arch = "gemma3";
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 6;  // pattern 6: layers 0-4 local, 5 global
  o.shape.n_head = 8;
  o.shape.n_head_kv = 2;
  o.head_dim = 64;
  o.sliding_window = kWindow;
  o.type = GgmlType::Q4_K;
  o.embedding_type = GgmlType::Q8_0;
  o.vocab_from.clear();
  return o;
}

std::vector<std::int32_t> prompt_of(std::int32_t n, std::int32_t salt) {
  std::vector<std::int32_t> ids = {1};
  for (std::int32_t i = 1; i < n; ++i) ids.push_back(3 + (i * 37 + salt * 101) % 500);
  return ids;
}

cache::KvShape ring_shape(const ModelConfig& c, std::int32_t n_seq, compute::KvType type, std::int64_t slack = kSlack) {
  cache::KvShape shape = kv_shape(c, kCtx, n_seq, type);
  shape.ring_slack = slack;
  return shape;
}

class KvRing : public ::testing::TestWithParam<compute::KvType> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new sluice::testing::TempDir;
    write_synthetic_gguf(dir_->file("m.gguf"), gemma_options());
    model_ = Model::open(dir_->file("m.gguf")).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static const ModelConfig& config() { return model_->config(); }
  static Transformer full(std::int32_t n_seq = 1) {
    return Transformer(config(), cache::make_resident_kv_cache(kv_shape(config(), kCtx, n_seq, GetParam(), false)),
                       compute::Threading{});
  }
  static Transformer ring(std::int32_t n_seq = 1) {
    return Transformer(config(), cache::make_resident_kv_cache(ring_shape(config(), n_seq, GetParam())), compute::Threading{});
  }
  // The prompt in one pass, or two split at `split` (every row's logits), then `steps` tokens
  // one by one.
  static std::vector<float> run(Transformer& t, std::span<const std::int32_t> prompt, std::int32_t steps,
                                std::size_t split = 0) {
    std::vector<float> all, step;
    if (split > 0) {
      evaluate(t, *model_, prompt.first(split), 0, true, all);
      evaluate(t, *model_, prompt.subspan(split), std::int64_t(split), true, step);
      all.insert(all.end(), step.begin(), step.end());
    } else {
      evaluate(t, *model_, prompt, 0, true, all);
    }
    for (std::int32_t i = 0; i < steps; ++i) {
      const std::int32_t token = 3 + (i * 53) % 400;
      evaluate(t, *model_, std::span(&token, 1), std::int64_t(prompt.size()) + i, false, step);
      all.insert(all.end(), step.begin(), step.end());
    }
    return all;
  }

  static inline sluice::testing::TempDir* dir_ = nullptr;
  static inline Model* model_ = nullptr;
};

TEST_P(KvRing, ShapeKeepsRingsForLocalLayersOnly) {
  const cache::KvShape shape = ring_shape(config(), 2, GetParam());
  EXPECT_EQ(shape.ring_rows(), kWindow + kSlack);
  EXPECT_EQ(shape.store_chunk(), kSlack + 1);
  for (std::int64_t il = 0; il < 6; ++il) EXPECT_EQ(shape.rows(il), il == 5 ? kCtx : kWindow + kSlack) << "layer " << il;
  const cache::KvShape plain = kv_shape(config(), kCtx, 2, GetParam(), false);
  EXPECT_EQ(plain.total_bytes(), 6 * plain.layer_bytes(0));
  EXPECT_EQ(shape.total_bytes(), 5 * shape.layer_bytes(0) + plain.layer_bytes(5));
  EXPECT_EQ(shape.largest_layer_bytes(), plain.layer_bytes(5));
  // A context the ring would not shorten keeps every layer whole.
  cache::KvShape short_ctx = kv_shape(config(), kWindow + kSlack, 1, GetParam());
  short_ctx.ring_slack = kSlack;
  EXPECT_FALSE(short_ctx.any_ring());
}

TEST_P(KvRing, LongPromptAndDecodeBitIdenticalToFullCache) {
  const auto prompt = prompt_of(41, 1);  // > 3 rings; pieces of 4 rows
  Transformer a = full(), b = ring();
  EXPECT_LT(b.kv_cache().memory_bytes(), a.kv_cache().memory_bytes());
  const std::vector<float> want = run(a, prompt, 12), got = run(b, prompt, 12);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
}

TEST_P(KvRing, TwoSequencesInOneBatchBitIdenticalToFullCache) {
  const auto p0 = prompt_of(30, 2), p1 = prompt_of(23, 3);
  auto both = [&](Transformer& t) {
    InRamForward forward(*model_);
    std::vector<float> out, more;
    Batch first;
    first.add(1, 0, std::span(p1).first(9), false);
    forward.forward(t, first, more);
    Batch batch;
    batch.add(0, 0, p0, false);
    batch.add(1, 9, std::span(p1).subspan(9), false);
    batch.want_all();
    forward.forward(t, batch, out);
    return out;
  };
  Transformer a = full(2), b = ring(2);
  const std::vector<float> want = both(a), got = both(b);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
}

// The spill file's writes are 4 KiB pages: a ring of 48 rows spans 2-3 of them, so the second
// pass (positions 30..69, rows 30..47 and 0..21) writes back two runs of pages.
TEST_P(KvRing, SpilledRingBitIdenticalToFullCache) {
  sluice::testing::TempDir spill;
  const auto prompt = prompt_of(70, 4);
  Transformer a = full();
  const cache::KvShape shape = ring_shape(config(), 1, GetParam(), 40);
  ASSERT_GT(shape.plane_bytes(0), 4096u);
  Transformer b(config(), cache::make_spilled_kv_cache(shape, spill.path()), compute::Threading{});
  const std::vector<float> want = run(a, prompt, 14, 30), got = run(b, prompt, 14, 30);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
}

// A verification pass's rejected drafts (a few positions) are forgotten and written again; a
// truncation past the ring's slack keeps nothing, and evaluating again from 0 is exact.
TEST_P(KvRing, TruncateKeepsWhatTheRingHolds) {
  const auto tokens = prompt_of(40, 5);
  Transformer a = full();
  std::vector<float> want;
  evaluate(a, *model_, tokens, 0, true, want);
  const std::size_t v = std::size_t(config().n_vocab);

  Transformer b = ring();
  std::vector<float> got;
  evaluate(b, *model_, std::span(tokens).first(30), 0, false, got);
  const auto drafted = prompt_of(3, 9);  // three wrong drafts at 30..32
  evaluate(b, *model_, drafted, 30, false, got);
  ASSERT_EQ(b.kv_cache().truncate(0, 30), 30);  // within the slack: the window of 30 is whole
  evaluate(b, *model_, std::span(tokens).subspan(30), 30, true, got);
  ASSERT_EQ(got.size(), 10 * v);
  EXPECT_EQ(std::memcmp(got.data(), want.data() + 30 * v, got.size() * sizeof(float)), 0);

  // Positions 29..39 are in the ring; position 20 attends to 13..19, long overwritten.
  EXPECT_EQ(b.kv_cache().truncate(0, 20), 0);
  evaluate(b, *model_, std::span(tokens).first(25), 0, true, got);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  // Within the window's reach after the re-evaluation: 25 - 21 = 4 <= slack + 1.
  EXPECT_EQ(b.kv_cache().truncate(0, 21), 21);
  // More than is written: nothing to forget.
  EXPECT_EQ(b.kv_cache().truncate(0, 50), 50);
}

// The engine: a chat's next turn reuses a prefix the ring no longer holds the window of (the
// first turn ran far past it), so the cache keeps nothing and the whole conversation runs again:
// the answer is a fresh run's. A prefix the ring still holds is reused.
TEST_P(KvRing, EngineRunsAgainWhatTheRingLost) {
  const tok::Tokenizer tokenizer(vocab_from_metadata(model_->metadata()));
  InRamForward forward(*model_);
  GenerateOptions options;
  options.n_predict = 6;
  options.stop_at_eog = false;
  options.sampling.temperature = 0.0f;
  auto fresh = [&](const std::vector<std::int32_t>& prompt) {
    Transformer t = full();
    return Engine(forward, t, tokenizer, {1, 1, 512}).generate(SeqRequest{prompt, options}).generated;
  };
  Transformer t = ring();
  Engine engine(forward, t, tokenizer, {1, 1, 512});
  const auto first = prompt_of(50, 6);
  const SeqResult answer = engine.generate(SeqRequest{first, options});
  EXPECT_EQ(answer.generated, fresh(first));
  // Keep 20 positions: position 20's window (13..19) was overwritten long ago.
  std::vector<std::int32_t> next(first.begin(), first.begin() + 20);
  for (std::int32_t token : {55, 66, 77}) next.push_back(token);
  SeqRequest lost{next, options};
  lost.cached = 20;
  EXPECT_EQ(engine.generate(std::move(lost)).generated, fresh(next));
  EXPECT_EQ(engine.last_run().prompt_tokens, std::int64_t(next.size()));  // all of it again
  // The conversation so far, continued: every position but the last sampled token is in the cache.
  std::vector<std::int32_t> more = next;
  const std::vector<std::int32_t> said = fresh(next);
  more.insert(more.end(), said.begin(), said.end());
  const std::int64_t in_cache = std::int64_t(more.size()) - 1;
  for (std::int32_t token : {88, 99}) more.push_back(token);
  SeqRequest kept{more, options};
  kept.cached = in_cache;
  EXPECT_EQ(engine.generate(std::move(kept)).generated, fresh(more));
  EXPECT_EQ(engine.last_run().prompt_tokens, std::int64_t(more.size()) - in_cache);
}

INSTANTIATE_TEST_SUITE_P(KvTypes, KvRing, ::testing::Values(compute::KvType::f16, compute::KvType::q8_0),
                         [](const auto& info) { return std::string(compute::to_string(info.param)); });

}  // namespace
}  // namespace sluice
