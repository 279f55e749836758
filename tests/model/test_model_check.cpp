// Model files whose hyper-parameters and tensors disagree are refused, naming the key or tensor,
// by the converter (`sluice convert`) and by checked_config for GGUFs and packs; Pack::open
// refuses a tensor whose type x shape is not its byte count and a "blk." extent name that does
// not parse. The loaders in engine/ are tested with the same table in tests/engine.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/convert.hpp"
#include "model/pack_reader.hpp"
#include "model/tensor_check.hpp"
#include "tests/model/pack_test_util.hpp"
#include "tests/model/tiny_model.hpp"
#include "tests/support/error_of.hpp"

namespace sluice {
namespace {

using pack::testing::PackImage;
using pack::testing::TempDir;
using testing::BadModelCase;
using testing::tiny_model;

using sluice::testing::error_of;

void expect_words(const std::string& message, const BadModelCase& c) {
  for (const auto& word : c.words) EXPECT_NE(message.find(word), std::string::npos) << "missing '" << word << "' in: " << message;
}

TEST(ModelCheck, TinyModelsOfEveryArchitecturePass) {
  TempDir dir;
  for (std::string arch : {"llama", "qwen2", "gemma3", "qwen3moe", "mixtral", "gpt-oss"}) {
    SCOPED_TRACE(arch);
    const std::string gguf_path = dir.file(arch + ".gguf"), pack_path = dir.file(arch + ".sluice");
    testing::write_gguf(tiny_model(arch), gguf_path);
    const ModelConfig config = checked_config(gguf::File::open(gguf_path));
    EXPECT_EQ(config.n_vocab, testing::kTinyVocab);
    EXPECT_EQ(config.n_vocab_key, "tokenizer.ggml.tokens");
    convert_gguf_to_pack(gguf_path, pack_path, {});
    EXPECT_EQ(checked_config(pack::Pack::open(pack_path)).n_layer, testing::kTinyLayers);
  }
}

TEST(ModelCheck, VocabularySizeComesFromTheEmbeddingWhenNoKeyGivesIt) {
  TempDir dir;
  testing::TinyModel m = tiny_model();
  std::erase_if(m.metadata, [](const auto& kv) { return kv.first.rfind("tokenizer.", 0) == 0; });
  testing::write_gguf(m, dir.file("m.gguf"));
  const ModelConfig config = checked_config(gguf::File::open(dir.file("m.gguf")));
  EXPECT_EQ(config.n_vocab, testing::kTinyVocab);
  EXPECT_TRUE(config.n_vocab_key.empty());
}

class BadModel : public ::testing::TestWithParam<BadModelCase> {};

// The converter refuses the model before writing anything, naming the key or tensor.
TEST_P(BadModel, ConvertRefusesItNamingTheCause) {
  TempDir dir;
  const BadModelCase& c = GetParam();
  testing::TinyModel m = tiny_model(c.arch);
  c.mutate(m);
  testing::write_gguf(m, dir.file("model.gguf"));
  const std::string message = error_of([&] { convert_gguf_to_pack(dir.file("model.gguf"), dir.file("out.sluice"), {}); });
  EXPECT_NE(message.find(dir.file("model.gguf")), std::string::npos) << message;
  expect_words(message, c);
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.sluice")));
}

// A pack made of the same model without those checks is refused when opened as a model.
TEST_P(BadModel, PackOfItIsRefusedNamingTheCause) {
  TempDir dir;
  const BadModelCase& c = GetParam();
  testing::TinyModel m = tiny_model(c.arch);
  c.mutate(m);
  testing::write_pack(m, dir.file("model.sluice"));
  const std::string message = error_of([&] { checked_config(pack::Pack::open(dir.file("model.sluice"))); });
  EXPECT_NE(message.find(dir.file("model.sluice")), std::string::npos) << message;
  expect_words(message, c);
}

std::string case_name(const ::testing::TestParamInfo<BadModelCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Metadata, BadModel, ::testing::ValuesIn(testing::bad_metadata_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Tensors, BadModel, ::testing::ValuesIn(testing::bad_tensor_cases()), case_name);

TEST(ModelCheck, BlockIndexParsing) {
  EXPECT_EQ(block_index_of("blk.0"), 0);
  EXPECT_EQ(block_index_of("blk.17.attn_q.weight"), 17);
  EXPECT_EQ(block_index_of("blk.123456789"), 123456789);
  EXPECT_FALSE(block_index_of("blk.1234567890"));  // more digits than any block count
  EXPECT_FALSE(block_index_of("blk."));
  EXPECT_FALSE(block_index_of("blk.-1"));
  EXPECT_FALSE(block_index_of("blk.+1"));
  EXPECT_FALSE(block_index_of("blk.x.attn_q"));
  EXPECT_FALSE(block_index_of("output.weight"));
  EXPECT_EQ(block_extent_index("blk.3"), 3);
  EXPECT_FALSE(block_extent_index("blk.3.attn_q.weight"));
  EXPECT_FALSE(block_extent_index("token_embd"));
  EXPECT_TRUE(is_block_name("blk.x"));
  EXPECT_FALSE(is_block_name("token_embd.weight"));
}

TEST(ModelCheck, TensorBytes) {
  const std::vector<std::uint64_t> q8{64, 3};
  EXPECT_FALSE(tensor_bytes_error(std::uint32_t(GgmlType::Q8_0), q8, 3 * 2 * 34));
  EXPECT_NE(tensor_bytes_error(std::uint32_t(GgmlType::Q8_0), q8, 3 * 2 * 34 - 1)->find("takes 204 bytes, but the file gives it 203"),
            std::string::npos);
  EXPECT_NE(tensor_bytes_error(99, q8, 1)->find("unknown ggml type 99"), std::string::npos);
  EXPECT_NE(tensor_bytes_error(std::uint32_t(GgmlType::Q4_K), q8, 1)->find("row length 64 is not a multiple of the block size 256"),
            std::string::npos);
  // MXFP4 (gpt-oss experts): 17 bytes per 32 weights; a 2880-wide row is 90 blocks.
  const std::vector<std::uint64_t> mxfp4{2880, 4};
  EXPECT_FALSE(tensor_bytes_error(std::uint32_t(GgmlType::MXFP4), mxfp4, 4 * 90 * 17));
  EXPECT_NE(tensor_bytes_error(std::uint32_t(GgmlType::MXFP4), mxfp4, 4 * 90 * 18)->find("takes 6120 bytes, but the file gives it 6480"),
            std::string::npos);
  EXPECT_NE(tensor_bytes_error(std::uint32_t(GgmlType::MXFP4), std::vector<std::uint64_t>{48, 2}, 51)
                ->find("row length 48 is not a multiple of the block size 32"),
            std::string::npos);
  EXPECT_TRUE(tensor_bytes_error(0, std::vector<std::uint64_t>{}, 0));
  EXPECT_TRUE(tensor_bytes_error(0, std::vector<std::uint64_t>{4, 0}, 0));
  EXPECT_NE(tensor_bytes_error(0, std::vector<std::uint64_t>{1ull << 40, 1ull << 40}, 0)->find("64 bits"), std::string::npos);
  EXPECT_NE(tensor_bytes_error(0, std::vector<std::uint64_t>{1ull << 62}, 0)->find("overflows"), std::string::npos);
}

// Pack::open: manifest edits (with valid checksums) that make a tensor's bytes disagree with its
// type and shape, or a block extent's name unparseable.
struct ManifestCase {
  std::string name;
  std::function<void(nlohmann::json&)> edit;
  std::vector<std::string> words;
};

nlohmann::json& tensor_entry(nlohmann::json& manifest, const std::string& name) {
  for (auto& t : manifest["tensors"]) {
    if (t["name"] == name) return t;
  }
  throw std::logic_error("no tensor " + name);
}

class PackManifest : public ::testing::TestWithParam<ManifestCase> {};

TEST_P(PackManifest, OpenRefusesItNamingTheTensorOrExtent) {
  TempDir dir;
  testing::write_pack(tiny_model(), dir.file("good.sluice"));
  PackImage image = PackImage::load(dir.file("good.sluice"));
  GetParam().edit(image.manifest);
  image.commit_manifest();
  image.save(dir.file("bad.sluice"));
  const std::string message = error_of([&] { pack::Pack::open(dir.file("bad.sluice")); });
  for (const auto& word : GetParam().words) EXPECT_NE(message.find(word), std::string::npos) << "missing '" << word << "' in: " << message;
}

const std::string kQ = "blk.1.attn_q.weight";  // Q8_0 [64, 64]: 4352 bytes

INSTANTIATE_TEST_SUITE_P(
    Cases, PackManifest,
    ::testing::Values(
        ManifestCase{"bytes_short", [](auto& m) { tensor_entry(m, kQ)["bytes"] = 4352 - 34; },
                     {kQ, "takes 4352 bytes, but the file gives it 4318"}},
        ManifestCase{"rows_doubled", [](auto& m) { tensor_entry(m, kQ)["shape"] = {64, 128}; }, {kQ, "takes 8704 bytes"}},
        ManifestCase{"cols_halved", [](auto& m) { tensor_entry(m, kQ)["shape"] = {32, 64}; }, {kQ, "takes 2176 bytes"}},
        ManifestCase{"type_q8_1", [](auto& m) { tensor_entry(m, kQ)["type"] = int(GgmlType::Q8_1); }, {kQ, "Q8_1", "4608 bytes"}},
        ManifestCase{"type_q4_k", [](auto& m) { tensor_entry(m, kQ)["type"] = int(GgmlType::Q4_K); }, {kQ, "block size 256"}},
        ManifestCase{"type_unknown", [](auto& m) { tensor_entry(m, kQ)["type"] = 99; }, {kQ, "unknown ggml type 99"}},
        ManifestCase{"no_dims", [](auto& m) { tensor_entry(m, kQ)["shape"] = nlohmann::json::array(); }, {kQ, "no dimensions"}},
        ManifestCase{"zero_dim", [](auto& m) { tensor_entry(m, kQ)["shape"] = {64, 0}; }, {kQ, "zero dimension"}},
        ManifestCase{"extent_blk_x", [](auto& m) { m["extents"][1]["name"] = "blk.x"; }, {"extents[1].name", "blk.x"}},
        ManifestCase{"extent_blk_negative", [](auto& m) { m["extents"][1]["name"] = "blk.-1"; }, {"extents[1].name", "blk.-1"}},
        ManifestCase{"extent_blk_huge", [](auto& m) { m["extents"][1]["name"] = "blk.99999999999999999999"; },
                     {"extents[1].name", "blk.99999999999999999999"}},
        ManifestCase{"extent_blk_dotted", [](auto& m) { m["extents"][1]["name"] = "blk.1.2"; }, {"extents[1].name", "blk.1.2"}}),
    [](const auto& info) { return info.param.name; });

// A manifest whose shapes are self-consistent but not the model's passes Pack::open and is
// refused by the model check, naming the tensor and both shapes.
TEST(ModelCheck, ConsistentButWrongManifestShapeIsNamed) {
  TempDir dir;
  testing::write_pack(tiny_model(), dir.file("good.sluice"));
  PackImage image = PackImage::load(dir.file("good.sluice"));
  tensor_entry(image.manifest, kQ)["shape"] = {32, 128};  // same 4352 bytes
  image.commit_manifest();
  image.save(dir.file("bad.sluice"));
  const pack::Pack pack = pack::Pack::open(dir.file("bad.sluice"));
  const std::string message = error_of([&] { checked_config(pack); });
  EXPECT_NE(message.find("tensor blk.1.attn_q.weight has shape [32, 128], expected [64, 64] (n_embd x n_head*head_dim)"),
            std::string::npos)
      << message;
}

// A block's tensors must lie in its own extent: streaming binds a block from that extent alone.
TEST(ModelCheck, BlockTensorOutsideItsExtentIsNamed) {
  TempDir dir;
  testing::write_pack(tiny_model(), dir.file("good.sluice"));
  PackImage image = PackImage::load(dir.file("good.sluice"));
  const auto blk0 = tensor_entry(image.manifest, "blk.0.attn_q.weight")["extent"];
  tensor_entry(image.manifest, kQ)["extent"] = blk0;  // same offset and size fit blk.0's extent too
  image.commit_manifest();
  image.save(dir.file("bad.sluice"));
  const std::string message = error_of([&] { checked_config(pack::Pack::open(dir.file("bad.sluice"))); });
  EXPECT_NE(message.find("tensor blk.1.attn_q.weight does not lie in extent 'blk.1'"), std::string::npos) << message;
}

}  // namespace
}  // namespace sluice
