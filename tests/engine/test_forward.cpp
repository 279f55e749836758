// End-to-end forward pass: on the tiny real model (stories260K, ../shared/models; skipped with a
// message without it) greedy text equals llama.cpp's (quoted in the models README); on its
// synthetic stand-in (tests/support/small_llama.hpp, any checkout) a pack gives bit-identical
// logits to the GGUF it was converted from and a context overflow is a clear error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "engine/generate.hpp"
#include "model/convert.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/small_llama.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice {
namespace {

const char* kStories = SLUICE_SHARED_MODELS "/stories260K.gguf";

#define REQUIRE_STORIES()                                                                                   \
  if (!std::filesystem::exists(kStories)) GTEST_SKIP() << "SKIPPED: " << kStories << " not found (../shared/models)"

TEST(Forward, StoriesGreedyMatchesLlamaCpp) {
  REQUIRE_STORIES();
  auto model = Model::open(kStories);
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  std::vector<std::int32_t> prompt = tokenizer.encode("Once upon a time", true, true);
  ASSERT_EQ(prompt, (std::vector<std::int32_t>{1, 403, 407, 261, 378}));
  Transformer transformer(model->config(), 128, cpu::Threading{});
  GenerateOptions options;
  options.n_predict = 48;
  options.sampling.temperature = 0.0f;
  std::string text;
  generate(transformer, *model, tokenizer, prompt, options, [&](const std::string& piece) { text += piece; });
  // llama.cpp's greedy continuation (../shared/models/README.md).
  EXPECT_EQ(text,
            ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red "
            "ball. She wanted to play with it,");
}

TEST(Forward, PackLogitsAreBitIdenticalToGguf) {
  sluice::testing::TempDir dir;
  const std::string gguf_path = sluice::testing::write_small_llama(dir.file("m.gguf"));
  std::string pack_path = dir.file("m.sluice");
  for (auto compress : {pack::WriterOptions::Compress::none, pack::WriterOptions::Compress::zstd}) {
    pack::WriterOptions options;
    options.compress = compress;
    options.frame_bytes = 64 * 1024;  // several frames per block
    convert_gguf_to_pack(gguf_path, pack_path, options);
    auto gguf = Model::open(gguf_path);
    auto packed = Model::open(pack_path);
    ASSERT_TRUE(packed->is_pack());
    std::vector<std::int32_t> tokens = {1, 403, 407, 261, 378, 11, 27};
    std::vector<float> a, b;
    Transformer ta(gguf->config(), 64, cpu::Threading{}), tb(packed->config(), 64, cpu::Threading{});
    evaluate(ta, *gguf, tokens, 0, true, a);
    evaluate(tb, *packed, tokens, 0, true, b);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
}

TEST(Forward, ContextOverflowIsAClearError) {
  sluice::testing::TempDir dir;
  auto model = Model::open(sluice::testing::write_small_llama(dir.file("m.gguf")));
  Transformer transformer(model->config(), 4, cpu::Threading{});
  std::vector<std::int32_t> tokens = {1, 403, 407, 261, 378};
  std::vector<float> logits;
  try {
    evaluate(transformer, *model, tokens, 0, false, logits);
    FAIL() << "expected a context error";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the context of 4"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sluice
