// Layer-major batching and the KV cache kinds, end to end on a stories260K-shaped synthetic model
// with the built-in vocabulary (tests/support/small_llama.hpp: no ../shared), in RAM and streamed:
//  - every request's tokens from BatchGenerator equal the single-sequence generate()'s, whatever
//    the parallelism, sequences per pass, or prompt chunking (greedy and seeded sampling);
//  - a spilled KV cache (scratch file, two layers in RAM) gives identical tokens to a resident one;
//  - the streamed model with a resident block set, a streamed head and embedding rows on demand
//    gives bit-identical logits to the in-RAM pass for a multi-sequence batch;
//  - a q8_0 KV cache stays close to fp16 and refuses nothing it can hold.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <filesystem>
#include <map>
#include <vector>

#include "engine/generate.hpp"
#include "engine/streamed_model.hpp"
#include "model/convert.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/small_llama.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice {
namespace {

// The model every test here runs, written once per process.
const std::string& model_path() {
  static const sluice::testing::TempDir dir;
  static const std::string path = sluice::testing::write_small_llama(dir.file("small-llama.gguf"));
  return path;
}

const char* kPrompts[] = {"Once upon a time", "The cat sat", "Lily and Tom went to the park to play with a ball",
                          "One day", "A big red dog", "She was happy because", "Tim had a toy car"};

std::vector<SeqRequest> make_requests(const tok::Tokenizer& tokenizer) {
  std::vector<SeqRequest> requests;
  int i = 0;
  for (const char* p : kPrompts) {
    SeqRequest r;
    r.prompt = tokenizer.encode(p, true, true);
    r.options.n_predict = 12 + 3 * i;
    // Alternate greedy and seeded sampling: both must be batch-independent.
    r.options.sampling.temperature = i % 2 == 0 ? 0.0f : 0.9f;
    r.options.sampling.seed = 1000 + std::uint64_t(i);
    requests.push_back(r);
    ++i;
  }
  return requests;
}

std::unique_ptr<Transformer> make_transformer(const ModelConfig& c, std::int32_t n_seq, std::int64_t n_ctx, cpu::KvType type,
                                              const std::string& spill_dir) {
  cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, n_ctx, n_seq, type};
  auto kv = spill_dir.empty() ? cache::make_resident_kv_cache(shape) : cache::make_spilled_kv_cache(shape, spill_dir);
  return std::make_unique<Transformer>(c, std::move(kv), cpu::Threading{});
}

std::vector<SeqResult> run_batch(Forward& model, Transformer& t, const tok::Tokenizer& tokenizer,
                                 const std::vector<SeqRequest>& requests, BatchOptions options, BatchRunStats* stats = nullptr) {
  std::size_t next = 0;
  std::vector<SeqResult> results(requests.size());
  BatchRunStats s = BatchGenerator(model, t, tokenizer, options)
                        .run([&]() -> std::optional<SeqRequest> {
                               if (next == requests.size()) return std::nullopt;
                               return requests[next++];
                             },
                             [&](SeqResult&& r) { results[r.index] = std::move(r); });
  if (stats) *stats = s;
  return results;
}

TEST(Batch, EveryRequestMatchesItsSingleSequenceRun) {
  auto model = Model::open(model_path());
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  const auto requests = make_requests(tokenizer);
  std::vector<std::vector<std::int32_t>> alone;
  for (const auto& r : requests) {
    Transformer t(model->config(), 128, cpu::Threading{});
    std::vector<std::int32_t> generated;
    generate(t, *model, tokenizer, r.prompt, r.options, {}, &generated);
    alone.push_back(generated);
  }
  InRamForward forward(*model);
  struct Setting {
    std::int32_t n_parallel, batch;
    std::int64_t max_pass_tokens;
  };
  for (Setting s : {Setting{1, 1, 512}, Setting{3, 3, 512}, Setting{4, 2, 512}, Setting{7, 7, 5}, Setting{16, 16, 512}}) {
    SCOPED_TRACE(::testing::Message() << "n_parallel " << s.n_parallel << " batch " << s.batch << " max_pass_tokens "
                                    << s.max_pass_tokens);
    auto t = make_transformer(model->config(), s.n_parallel, 128, cpu::KvType::f16, "");
    BatchRunStats stats;
    auto results = run_batch(forward, *t, tokenizer, requests, {s.n_parallel, s.batch, s.max_pass_tokens}, &stats);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(results[i].generated, alone[i]) << "request " << i;
      EXPECT_EQ(results[i].index, i);
      EXPECT_NE(results[i].finish, FinishReason::error);
    }
    EXPECT_EQ(stats.requests, requests.size());
    if (s.n_parallel > 1) {
      EXPECT_GT(double(stats.sequence_steps) / double(stats.passes), 1.5) << "passes were not shared";
    }
  }
}

TEST(Batch, SpilledKvCacheGivesTheSameTokensAsResident) {
  auto model = Model::open(model_path());
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  const auto requests = make_requests(tokenizer);
  InRamForward forward(*model);
  sluice::testing::TempDir dir;
  for (auto type : {cpu::KvType::f16, cpu::KvType::q8_0}) {
    SCOPED_TRACE(cpu::to_string(type));
    auto resident = make_transformer(model->config(), 3, 128, type, "");
    auto spilled = make_transformer(model->config(), 3, 128, type, dir.path());
    ASSERT_TRUE(spilled->kv_cache().spilled());
    EXPECT_LT(spilled->kv_cache_bytes(), resident->kv_cache_bytes());
    auto a = run_batch(forward, *resident, tokenizer, requests, {3, 3, 6});
    auto b = run_batch(forward, *spilled, tokenizer, requests, {3, 3, 6});
    for (std::size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(a[i].generated, b[i].generated) << "request " << i;
    const cache::KvStats ks = spilled->kv_cache().stats();
    EXPECT_GT(ks.bytes_written, 0u);
    EXPECT_GT(ks.bytes_read, 0u);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "the spill file is unlinked at creation";
}

TEST(Batch, Q8KvCacheStaysCloseToFp16) {
  auto model = Model::open(model_path());
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  auto prompt = tokenizer.encode(kPrompts[2], true, true);
  auto f16 = make_transformer(model->config(), 1, 64, cpu::KvType::f16, "");
  auto q8 = make_transformer(model->config(), 1, 64, cpu::KvType::q8_0, "");
  EXPECT_EQ(q8->kv_cache_bytes() * 32, f16->kv_cache_bytes() * 17);  // 34 bytes per 32 values vs 64
  std::vector<float> a, b;
  evaluate(*f16, *model, prompt, 0, true, a);
  evaluate(*q8, *model, prompt, 0, true, b);
  double max_diff = 0, max_abs = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(a[i] - b[i])));
    max_abs = std::max(max_abs, double(std::fabs(a[i])));
  }
  const std::size_t n_vocab = std::size_t(model->config().n_vocab);
  std::size_t agree = 0;
  for (std::size_t p = 0; p < prompt.size(); ++p) {
    agree += argmax(std::span(a).subspan(p * n_vocab, n_vocab)) == argmax(std::span(b).subspan(p * n_vocab, n_vocab));
  }
  std::cout << "q8_0 vs f16 KV: max |diff| " << max_diff << " of max |logit| " << max_abs << ", top-1 agrees at " << agree
            << " of " << prompt.size() << " positions\n";
  EXPECT_GT(max_diff, 0.0) << "q8_0 storage should change something";
  EXPECT_LT(max_diff, 0.1 * max_abs);
  EXPECT_GE(agree * 10, prompt.size() * 9);
}

TEST(Batch, RefusedRequestsAreAnsweredAndTheRestRun) {
  auto model = Model::open(model_path());
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  auto requests = make_requests(tokenizer);
  requests[1].prompt.clear();
  requests[3].options.n_predict = 1000;  // past the context of 64
  InRamForward forward(*model);
  auto t = make_transformer(model->config(), 2, 64, cpu::KvType::f16, "");
  BatchRunStats stats;
  auto results = run_batch(forward, *t, tokenizer, requests, {2, 2, 512}, &stats);
  EXPECT_EQ(results[1].finish, FinishReason::error);
  EXPECT_NE(results[1].error.find("empty"), std::string::npos);
  EXPECT_EQ(results[3].finish, FinishReason::error);
  EXPECT_NE(results[3].error.find("exceed the context of 64"), std::string::npos) << results[3].error;
  EXPECT_EQ(stats.failed, 2u);
  for (std::size_t i : {0u, 2u, 4u, 5u, 6u}) EXPECT_FALSE(results[i].generated.empty()) << "request " << i;
}

TEST(Batch, StreamedWithResidentSetHeadAndEmbeddingOnDemandIsBitIdentical) {
  sluice::testing::TempDir dir;
  const std::string pack_path = dir.file("s.sluice");
  pack::WriterOptions writer;
  writer.frame_bytes = 16 * 1024;  // embedding rows straddle frames
  writer.compress = pack::WriterOptions::Compress::zstd;
  convert_gguf_to_pack(model_path(), pack_path, writer);
  auto model = Model::open(model_path());
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  Batch batch;
  batch.add(0, 0, tokenizer.encode(kPrompts[0], true, true), true);
  batch.add(1, 0, tokenizer.encode(kPrompts[2], true, true), true);
  batch.add(2, 0, tokenizer.encode(kPrompts[4], true, true), true);
  struct Setting {
    std::vector<std::int64_t> resident;
    bool stream_head, on_demand;
  };
  for (const Setting& s : {Setting{{}, false, false}, Setting{{1, 3}, true, true}, Setting{{0, 1, 2, 3, 4}, true, false},
                           Setting{{2}, false, true}, Setting{{0, 1, 2, 3, 4}, false, false}}) {
    SCOPED_TRACE(::testing::Message() << s.resident.size() << " resident blocks, stream_head " << s.stream_head
                                    << ", embedding on demand " << s.on_demand);
    StreamOptions options;
    options.prefetch.slots = 2;
    options.resident_blocks = s.resident;
    options.stream_head = s.stream_head;
    options.embed_on_demand = s.on_demand;
    StreamedModel streamed(pack_path, options);
    EXPECT_EQ(streamed.resident_block_count(), std::int64_t(s.resident.size()));
    auto ta = make_transformer(model->config(), 3, 64, cpu::KvType::f16, "");
    auto tb = make_transformer(streamed.config(), 3, 64, cpu::KvType::f16, "");
    InRamForward in_ram(*model);
    std::vector<float> a, b;
    for (int pass = 0; pass < 3; ++pass) {
      in_ram.forward(*ta, batch, a);
      streamed.forward(*tb, batch, b);
      ASSERT_EQ(a.size(), b.size());
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "pass " << pass;
      // Next pass: one more token per sequence.
      Batch next;
      for (std::size_t i = 0; i < batch.spans.size(); ++i) {
        const std::int32_t token = argmax(std::span(a).subspan(i * std::size_t(model->config().n_vocab), std::size_t(model->config().n_vocab)));
        next.add(batch.spans[i].seq, batch.spans[i].pos0 + batch.spans[i].n, std::span(&token, 1), true);
      }
      batch = next;
    }
    const StreamStats st = streamed.stats();
    EXPECT_EQ(st.passes, 3u);
    // Embedding rows are read per pass only on demand; the prefetcher reads something every pass
    // unless every block and the head are resident (the last setting: nothing streams at all).
    EXPECT_EQ(st.embedding_bytes > 0, s.on_demand);
    const bool nothing_streams = s.resident.size() == 5 && !s.stream_head;
    EXPECT_EQ(st.bytes_streamed == 0, nothing_streams) << st.bytes_streamed << " bytes streamed";
  }
}

}  // namespace
}  // namespace sluice
