// The loaders (Model::open for a memory-mapped GGUF and for a pack read into RAM, StreamedModel
// for a streamed pack) refuse a model whose metadata or tensors disagree, naming the key or
// tensor, before sizing any buffer from them: the table of tests/model/tiny_model.hpp, which
// before these checks crashed (SIGSEGV, SIGFPE, heap corruption) or ran on garbage. Tiny models
// that agree load and run a forward pass on every path.
#include <gtest/gtest.h>

#include <cmath>

#include "compute/cpu/quants.hpp"
#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "engine/streamed_model.hpp"
#include "engine/transformer.hpp"
#include "model/tensor_check.hpp"
#include "tests/model/pack_test_util.hpp"
#include "tests/model/tiny_model.hpp"
#include "tests/support/error_of.hpp"

namespace sluice {
namespace {

using pack::testing::TempDir;
using testing::BadModelCase;

using sluice::testing::error_of;

void expect_named(const std::string& message, const std::string& path, const BadModelCase& c) {
  EXPECT_NE(message.find(path), std::string::npos) << message;
  for (const auto& word : c.words) EXPECT_NE(message.find(word), std::string::npos) << "missing '" << word << "' in: " << message;
}

class BadModelLoad : public ::testing::TestWithParam<BadModelCase> {};

TEST_P(BadModelLoad, GgufIsRefusedNamingTheCause) {
  TempDir dir;
  testing::TinyModel m = testing::tiny_model(GetParam().arch);
  GetParam().mutate(m);
  const std::string path = dir.file("model.gguf");
  testing::write_gguf(m, path);
  expect_named(error_of([&] { Model::open(path); }), path, GetParam());
}

TEST_P(BadModelLoad, PackIsRefusedInRamAndStreamedNamingTheCause) {
  TempDir dir;
  testing::TinyModel m = testing::tiny_model(GetParam().arch);
  GetParam().mutate(m);
  const std::string path = dir.file("model.sluice");
  testing::write_pack(m, path);
  expect_named(error_of([&] { Model::open(path); }), path, GetParam());
  expect_named(error_of([&] { StreamedModel model(path); }), path, GetParam());
  StreamOptions resident;
  resident.resident_blocks = {0, 1};
  expect_named(error_of([&] { StreamedModel model(path, resident); }), path, GetParam());
}

std::string case_name(const ::testing::TestParamInfo<BadModelCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Metadata, BadModelLoad, ::testing::ValuesIn(testing::bad_metadata_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Tensors, BadModelLoad, ::testing::ValuesIn(testing::bad_tensor_cases()), case_name);

// The control: each architecture's tiny model loads on all three paths and gives the same
// finite logits on each.
TEST(ModelLoad, TinyModelsRunOnEveryPath) {
  TempDir dir;
  for (std::string arch : {"llama", "qwen2", "gemma3", "qwen3moe", "mixtral"}) {
    SCOPED_TRACE(arch);
    const std::string gguf_path = dir.file(arch + ".gguf"), pack_path = dir.file(arch + ".sluice");
    testing::write_gguf(testing::tiny_model(arch), gguf_path);
    testing::write_pack(testing::tiny_model(arch), pack_path);
    const std::vector<std::int32_t> tokens = {1, 270, 261, 287};
    std::vector<std::vector<float>> logits(3);
    for (int path = 0; path < 2; ++path) {
      auto model = Model::open(path == 0 ? gguf_path : pack_path);
      ASSERT_EQ(model->config().n_vocab, testing::kTinyVocab);
      Transformer transformer(model->config(), 16, cpu::Threading{});
      evaluate(transformer, *model, tokens, 0, false, logits[std::size_t(path)]);
    }
    StreamedModel streamed(pack_path);
    Transformer transformer(streamed.config(), 16, cpu::Threading{});
    streamed.evaluate(transformer, tokens, 0, false, logits[2]);
    ASSERT_EQ(logits[0].size(), std::size_t(testing::kTinyVocab));
    for (float v : logits[0]) ASSERT_TRUE(std::isfinite(v));
    EXPECT_EQ(logits[0], logits[1]);
    EXPECT_EQ(logits[0], logits[2]);
  }
}

// The model check's list of matrix types is the CPU backend's list of weight types.
TEST(ModelLoad, MatrixTypesAreTheCpuWeightTypes) {
  for (std::uint32_t id = 0; id < 64; ++id) {
    if (!ggml_type_traits(id)) continue;
    const auto type = static_cast<GgmlType>(id);
    EXPECT_EQ(is_matrix_weight_type(type), cpu::is_weight_type(type)) << ggml_type_traits(id)->name;
  }
}

}  // namespace
}  // namespace sluice
