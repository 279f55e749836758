// The built-in vocabulary of synthetic models: every text tokenizes (byte fallback) and decodes
// back to itself, common words are single pieces, sizes up to a Llama 3 vocabulary are unique and
// exact, and a model written with it opens and runs.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"
#include "tools/synth_vocab.hpp"

namespace sluice {
namespace {

TEST(SynthVocab, SizesAreExactAndTokensUnique) {
  for (std::int64_t n : {kMinBuiltinVocab, std::int64_t(512), std::int64_t(32000), std::int64_t(128256)}) {
    const auto md = builtin_vocab_metadata(n);
    const gguf::Value* tokens = nullptr;
    for (const auto& [key, value] : md) {
      if (key == "tokenizer.ggml.tokens") tokens = &value;
    }
    ASSERT_NE(tokens, nullptr);
    const auto& strings = std::get<gguf::Value::Strings>(tokens->data);
    ASSERT_EQ(std::int64_t(strings.size()), n);
    EXPECT_EQ(std::set<std::string>(strings.begin(), strings.end()).size(), strings.size());
  }
  EXPECT_THROW(builtin_vocab_metadata(10), std::invalid_argument);
}

TEST(SynthVocab, ModelWithItTokenizesRoundTripAndRuns) {
  sluice::testing::TempDir dir;
  SynthOptions o;
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 2;
  o.vocab_from.clear();
  o.vocab_size = 1000;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, o);
  auto model = Model::open(path);
  EXPECT_EQ(model->config().n_vocab, 1000);
  tok::Tokenizer tokenizer(vocab_from_metadata(model->metadata()));
  const auto ids = tokenizer.encode("Once upon a time", true, true);
  ASSERT_EQ(ids.size(), 5u) << "BOS + four word pieces";
  for (const std::string text : {"Once upon a time", "zq\xc3\xa9\xe2\x82\xac\x01 ~~ 42", "  two  spaces"}) {
    const auto t = tokenizer.encode(text, false, false);
    EXPECT_EQ(tokenizer.decode(t), text);
  }
  GenerateOptions g;
  g.n_predict = 4;
  g.sampling.temperature = 0;
  g.stop_at_eog = false;
  Transformer transformer(model->config(), 64, cpu::Threading{1});
  std::vector<std::int32_t> generated;
  generate(transformer, *model, tokenizer, ids, g, {}, &generated);
  EXPECT_EQ(generated.size(), 4u);
}

}  // namespace
}  // namespace sluice
