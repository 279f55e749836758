// GGUF round trips (every value type, nested and string arrays, every tensor type sluice knows,
// alignments 32 and 64, hand-written v2 files), the typed getters, writer argument checks, the
// real stories260K model, and the sample file for the gguf-py cross-check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "tests/model/gguf_test_util.hpp"

namespace sluice::gguf {
namespace {

using testing::Bytes;
using testing::random_bytes;
using testing::TempDir;

std::uint32_t id(GgmlType t) { return static_cast<std::uint32_t>(t); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

TEST(GgufRoundTrip, EveryValueTypeAndNestedArrays) {
  TempDir dir;
  const Writer w = testing::sample_writer();
  w.write(dir.file("m.gguf"));
  const File f = File::open(dir.file("m.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.find(kAlignmentKey), nullptr);  // default alignment: not written

  const std::vector<std::string> keys = {"general.architecture", "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32",
                                         "t.f32", "t.bool", "t.string", "t.u64", "t.i64", "t.f64", "t.strings",
                                         "t.floats", "t.ints", "t.bools", "t.nested"};
  ASSERT_EQ(f.metadata().size(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(f.metadata()[i].first, keys[i]) << "file order";

  EXPECT_EQ(*f.find("t.u8"), Value::unsigned_int(ValueType::u8, 255));
  EXPECT_EQ(*f.find("t.i8"), Value::signed_int(ValueType::i8, -128));
  EXPECT_EQ(*f.find("t.u16"), Value::unsigned_int(ValueType::u16, 65535));
  EXPECT_EQ(*f.find("t.i16"), Value::signed_int(ValueType::i16, -32768));
  EXPECT_EQ(*f.find("t.u32"), Value::unsigned_int(ValueType::u32, 4294967295u));
  EXPECT_EQ(*f.find("t.i32"), Value::signed_int(ValueType::i32, std::numeric_limits<std::int32_t>::min()));
  EXPECT_EQ(*f.find("t.f32"), Value::f32(1.5f));
  EXPECT_EQ(*f.find("t.bool"), Value::boolean(true));
  EXPECT_EQ(*f.find("t.string"), Value::string("h\xc3\xa9llo"));
  EXPECT_EQ(*f.find("t.u64"), Value::unsigned_int(ValueType::u64, std::numeric_limits<std::uint64_t>::max()));
  EXPECT_EQ(*f.find("t.i64"), Value::signed_int(ValueType::i64, std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(*f.find("t.f64"), Value::f64(3.141592653589793));

  ASSERT_NE(f.get_string_array("t.strings"), nullptr);
  EXPECT_EQ(*f.get_string_array("t.strings"), (std::vector<std::string>{"<unk>", "", "a b"}));
  EXPECT_EQ(*f.get_float_array("t.floats"), (std::vector<float>{0.5f, -2.0f}));
  EXPECT_EQ(*f.get_int_array("t.ints"), (std::vector<std::int64_t>{1, -1, 7}));
  const Value& bools = *f.find("t.bools");
  EXPECT_EQ(bools.array_type, ValueType::boolean);
  EXPECT_EQ(bools, Value::bool_array({true, false, true}));

  const Value& nested = *f.find("t.nested");
  ASSERT_NE(nested.arrays(), nullptr);
  ASSERT_EQ(nested.arrays()->size(), 2u);
  EXPECT_EQ((*nested.arrays())[0].array_type, ValueType::u16);
  EXPECT_EQ(*(*nested.arrays())[0].uint_elements(), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(*(*nested.arrays())[1].strings(), (std::vector<std::string>{"x"}));
}

TEST(GgufRoundTrip, EveryNumericArrayTypeEmptyArraysAndDeepNesting) {
  TempDir dir;
  Writer w;
  const std::vector<std::uint8_t> u8 = {0, 255};
  const std::vector<std::int8_t> i8 = {-128, 127};
  const std::vector<std::uint16_t> u16 = {0, 65535};
  const std::vector<std::int16_t> i16 = {-32768, 32767};
  const std::vector<std::uint32_t> u32 = {0, 4294967295u};
  const std::vector<std::int32_t> i32 = {std::numeric_limits<std::int32_t>::min(), 5};
  const std::vector<float> f32 = {-0.0f, std::numeric_limits<float>::infinity()};
  const std::vector<std::uint64_t> u64 = {std::numeric_limits<std::uint64_t>::max()};
  const std::vector<std::int64_t> i64 = {std::numeric_limits<std::int64_t>::min()};
  const std::vector<double> f64 = {1e300, -1e-300};
  std::vector<std::pair<std::string, Value>> expected = {
      {"a.u8", Value::array(std::span<const std::uint8_t>(u8))},
      {"a.i8", Value::array(std::span<const std::int8_t>(i8))},
      {"a.u16", Value::array(std::span<const std::uint16_t>(u16))},
      {"a.i16", Value::array(std::span<const std::int16_t>(i16))},
      {"a.u32", Value::array(std::span<const std::uint32_t>(u32))},
      {"a.i32", Value::array(std::span<const std::int32_t>(i32))},
      {"a.f32", Value::array(std::span<const float>(f32))},
      {"a.u64", Value::array(std::span<const std::uint64_t>(u64))},
      {"a.i64", Value::array(std::span<const std::int64_t>(i64))},
      {"a.f64", Value::array(std::span<const double>(f64))},
      {"a.empty_u8", Value::array(std::span<const std::uint8_t>())},
      {"a.empty_strings", Value::string_array({})},
      {"a.empty_arrays", Value::array_of_arrays({})},
      {"a.empty_string", Value::string("")},
  };
  // kMaxArrayNesting levels: the deepest the reader accepts.
  Value deep = Value::string_array({"bottom"});
  for (std::uint32_t level = 1; level < kMaxArrayNesting; ++level) deep = Value::array_of_arrays({deep, deep});
  expected.emplace_back("a.deep", deep);
  for (const auto& [key, value] : expected) w.set(key, value);
  w.write(dir.file("m.gguf"));

  const File f = File::open(dir.file("m.gguf"));
  EXPECT_EQ(f.metadata(), expected);
  EXPECT_EQ(f.find("a.u64")->uint_elements(), u64);
  EXPECT_FALSE(f.find("a.u64")->int_elements().has_value()) << "u64 max does not fit in int64";
  EXPECT_TRUE(f.get_string_array("a.empty_u8")->empty()) << "an empty array reads as any kind";
}

// Every tensor type in ggml_types.hpp, at alignments 32 and 64.
class GgufTensorRoundTrip : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(GgufTensorRoundTrip, AllTypesLandAlignedWithTheirBytes) {
  const std::uint64_t alignment = GetParam();
  TempDir dir;
  Writer w;
  w.set_string("general.architecture", "test");
  struct Added {
    std::string name;
    std::uint32_t type;
    std::vector<std::uint64_t> dims;
    std::vector<std::byte> bytes;
  };
  std::vector<Added> added;
  for (std::uint32_t type = 0; type < 64; ++type) {
    const auto traits = ggml_type_traits(type);
    if (!traits) continue;
    // Two blocks per row and three rows: sizes that are not multiples of the alignment.
    const std::vector<std::uint64_t> dims = {2ull * traits->block_elements, 3};
    const std::uint64_t bytes = 3 * ggml_row_bytes(*traits, dims[0]);
    added.push_back({"t." + std::string(traits->name), type, dims, random_bytes(bytes, type)});
    w.add_tensor(added.back().name, type, dims, added.back().bytes);
  }
  ASSERT_EQ(added.size(), 16u) << "every type in ggml_types.hpp";
  w.write(dir.file("m.gguf"), alignment);

  const File f = File::open(dir.file("m.gguf"));
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  EXPECT_EQ(f.file_size() % alignment, 0u) << "the data section ends padded";
  if (alignment == kDefaultAlignment) {
    EXPECT_EQ(f.find(kAlignmentKey), nullptr);
  } else {
    EXPECT_EQ(*f.find(kAlignmentKey), Value::unsigned_int(ValueType::u32, alignment));
  }
  ASSERT_EQ(f.tensors().size(), added.size());
  std::uint64_t running = 0;  // llama.cpp's rule: each tensor at the running padded offset
  for (std::size_t i = 0; i < added.size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, added[i].name);
    EXPECT_EQ(t.type, added[i].type);
    EXPECT_EQ(t.dims, added[i].dims);
    EXPECT_EQ(t.bytes, added[i].bytes.size());
    EXPECT_EQ(t.elements, added[i].dims[0] * 3);
    EXPECT_EQ(t.offset, running);
    running += (t.bytes + alignment - 1) / alignment * alignment;
    const std::span<const std::byte> data = f.tensor_data(t);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), added[i].bytes.begin(), added[i].bytes.end()));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(data.data()) % alignment, 0u) << "mapped at an aligned address";
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  EXPECT_EQ(f.file_size(), f.data_offset() + running);
  EXPECT_EQ(f.find_tensor("missing"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Alignments, GgufTensorRoundTrip, ::testing::Values(32u, 64u));

TEST(GgufRoundTrip, ReadsAHandWrittenVersion2File) {
  TempDir dir;
  testing::Spec spec = testing::valid_spec();
  spec.version = 2;
  testing::write_file(dir.file("v2.gguf"), testing::encode(spec));
  const File f = File::open(dir.file("v2.gguf"));
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.block_count"), 2u);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].name, "b.weight");
  EXPECT_EQ(f.tensors()[1].bytes, 34u);
  EXPECT_EQ(f.tensor_data(f.tensors()[1]).size(), 34u);
}

TEST(GgufRoundTrip, AcceptsTensorsOutOfOrderWithGaps) {
  // The reading rule: aligned, inside the file, no overlap. Order and gaps are free.
  TempDir dir;
  testing::Spec spec = testing::valid_spec();
  spec.tensors[0].offset = 128;
  spec.tensors[1].offset = 32;
  spec.data_bytes = 128 + 64;
  testing::write_file(dir.file("m.gguf"), testing::encode(spec));
  const File f = File::open(dir.file("m.gguf"));
  EXPECT_EQ(f.tensors()[0].offset, 128u);
}

TEST(GgufRoundTrip, FileWithoutTensorsOrPadding) {
  TempDir dir;
  Bytes b;
  b.raw("GGUF").u32(3).u64(0).u64(1).str("k").u32(static_cast<std::uint32_t>(ValueType::u8)).put<std::uint8_t>(7);
  testing::write_file(dir.file("m.gguf"), b.out);  // 38 bytes, no padding to 32
  const File f = File::open(dir.file("m.gguf"));
  EXPECT_EQ(f.get_uint("k"), 7u);
  EXPECT_EQ(f.data_offset(), f.file_size());
}

TEST(GgufGetters, ConvertWhereSafeAndNameTheKeyOtherwise) {
  TempDir dir;
  Writer w;
  w.set_i32("neg", -5);
  w.set_u64("big", std::numeric_limits<std::uint64_t>::max());
  w.set_u32("small", 7);
  w.set_f32("eps", 1e-5f);
  w.set_string("name", "x");
  w.set_bool("flag", false);
  const std::vector<std::uint8_t> bytes = {1, 2};
  w.set("u8s", Value::array(std::span<const std::uint8_t>(bytes)));
  w.write(dir.file("m.gguf"));
  const File f = File::open(dir.file("m.gguf"));

  EXPECT_EQ(f.get_uint("small"), 7u);
  EXPECT_EQ(f.get_int("small"), 7);
  EXPECT_EQ(f.get_float("small"), 7.0);
  EXPECT_EQ(f.get_int("neg"), -5);
  EXPECT_FLOAT_EQ(static_cast<float>(*f.get_float("eps")), 1e-5f);
  EXPECT_EQ(f.get_bool("flag"), false);
  EXPECT_EQ(f.get_uint("big"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(*f.get_int_array("u8s"), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(*f.get_float_array("u8s"), (std::vector<float>{1, 2}));

  EXPECT_FALSE(f.get_uint("absent").has_value());
  EXPECT_FALSE(f.get_string("absent").has_value());
  EXPECT_EQ(f.get_string_array("absent"), nullptr);
  EXPECT_FALSE(f.get_float_array("absent").has_value());

  const auto expect_error = [&](const std::function<void()>& g, const std::string& key, const std::string& word) {
    const std::string what = error_of(g);
    EXPECT_NE(what.find("'" + key + "'"), std::string::npos) << what;
    EXPECT_NE(what.find(word), std::string::npos) << what;
    EXPECT_NE(what.find(dir.file("m.gguf")), std::string::npos) << what;
  };
  expect_error([&] { (void)f.get_uint("neg"); }, "neg", "non-negative");
  expect_error([&] { (void)f.get_int("big"); }, "big", "int64");
  expect_error([&] { (void)f.get_string("small"); }, "small", "string");
  expect_error([&] { (void)f.get_bool("small"); }, "small", "bool");
  expect_error([&] { (void)f.get_float("name"); }, "name", "number");
  expect_error([&] { (void)f.get_string_array("u8s"); }, "u8s", "array of u8");
  expect_error([&] { (void)f.get_float_array("name"); }, "name", "array of numbers");
  expect_error([&] { (void)f.get_int_array("small"); }, "small", "array of int64");
}

TEST(GgufWriter, RejectsBadArgumentsWithTheirNames) {
  Writer w;
  const auto f32 = id(GgmlType::F32);
  const std::vector<std::byte> sixteen(16);
  EXPECT_THROW(w.set("", Value::boolean(true)), std::invalid_argument);
  EXPECT_THROW(w.set(std::string(kMaxKeyBytes + 1, 'k'), Value::boolean(true)), std::invalid_argument);
  EXPECT_THROW(w.set(std::string(kAlignmentKey), Value::unsigned_int(ValueType::u32, 64)), std::invalid_argument);
  Value inconsistent = Value::unsigned_int(ValueType::u8, 1);
  inconsistent.data = std::uint64_t{256};
  EXPECT_NE(error_of([&] { w.set("k", inconsistent); }).find("does not fit in u8"), std::string::npos);
  inconsistent = Value::bool_array({true});
  std::get<Value::Bytes>(inconsistent.data)[0] = std::byte{2};
  EXPECT_THROW(w.set("k", inconsistent), std::invalid_argument);
  Value too_deep = Value::string_array({});
  for (std::uint32_t level = 0; level < kMaxArrayNesting; ++level) too_deep = Value::array_of_arrays({too_deep});
  EXPECT_NE(error_of([&] { w.set("k", too_deep); }).find("nested deeper"), std::string::npos);

  w.add_tensor("t", f32, {4}, sixteen);
  EXPECT_NE(error_of([&] { w.add_tensor("t", f32, {4}, sixteen); }).find("duplicate"), std::string::npos);
  EXPECT_THROW(w.add_tensor("", f32, {4}, sixteen), std::invalid_argument);
  EXPECT_NO_THROW(w.add_tensor(std::string(kMaxWriterTensorNameBytes, 'n'), f32, {4}, sixteen));
  EXPECT_THROW(w.add_tensor(std::string(kMaxWriterTensorNameBytes + 1, 'n'), f32, {4}, sixteen), std::invalid_argument);
  EXPECT_NE(error_of([&] { w.add_tensor("u", 16, {4}, sixteen); }).find("unknown ggml type 16"), std::string::npos);
  EXPECT_THROW(w.add_tensor("u", f32, {}, sixteen), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("u", f32, {1, 1, 1, 1, 16}, sixteen), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("u", f32, {4, 0}, sixteen), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("u", f32, {1ull << 62, 4}, sixteen), std::invalid_argument);
  EXPECT_NE(error_of([&] { w.add_tensor("u", f32, {5}, sixteen); }).find("need 20"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", id(GgmlType::Q8_0), {16}, sixteen); }).find("block size 32"),
            std::string::npos);

  TempDir dir;
  EXPECT_THROW(w.write(dir.file("a.gguf"), 48), std::invalid_argument);
  EXPECT_THROW(w.write(dir.file("a.gguf"), 0), std::invalid_argument);
  const std::string missing = dir.file("no/such/dir/m.gguf");
  const std::string what = error_of([&] { w.write(missing); });
  EXPECT_NE(what.find(missing), std::string::npos) << what;
}

TEST(GgufWriter, SetReplacesInPlaceAndRefTensorsWrite) {
  TempDir dir;
  Writer w;
  w.set_u32("a", 1);
  w.set_u32("b", 2);
  w.set_string("a", "replaced");
  const std::vector<std::byte> bytes = random_bytes(32, 9);
  w.add_tensor_ref("r", id(GgmlType::F16), {16}, bytes);
  w.write(dir.file("m.gguf"), 64);
  const File f = File::open(dir.file("m.gguf"));
  ASSERT_EQ(f.metadata().size(), 3u);
  EXPECT_EQ(f.metadata()[0].first, "a");
  EXPECT_EQ(f.get_string("a"), "replaced");
  EXPECT_EQ(f.metadata()[2].first, kAlignmentKey);
  const auto data = f.tensor_data(f.tensors()[0]);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), bytes.begin(), bytes.end()));
}

TEST(GgufFile, MovedFileKeepsItsMapping) {
  TempDir dir;
  testing::sample_writer().write(dir.file("m.gguf"));
  File a = File::open(dir.file("m.gguf"));
  const std::vector<std::byte> first(a.tensor_data(a.tensors()[0]).begin(), a.tensor_data(a.tensors()[0]).end());
  File b = std::move(a);
  File c = File::open(dir.file("m.gguf"));
  c = std::move(b);
  const auto data = c.tensor_data(c.tensors()[0]);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), first.begin(), first.end()));
  EXPECT_EQ(c.get_string("general.architecture"), "llama");
}

TEST(GgufFile, OpenErrorsNameTheFile) {
  TempDir dir;
  const std::string missing = dir.file("missing.gguf");
  EXPECT_NE(error_of([&] { (void)File::open(missing); }).find(missing), std::string::npos);
  EXPECT_NE(error_of([&] { (void)File::open(dir.path()); }).find("not a regular file"), std::string::npos);
}

TEST(GgufStories260K, OpensWithTheExpectedMetadataAndTensors) {
  const std::string path = testing::stories260k_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test model not found at " << path << " (see shared/models)";
  const File f = File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.block_count"), 5u);
  EXPECT_EQ(f.get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(f.get_uint("llama.feed_forward_length"), 172u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count"), 8u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(f.get_uint("llama.context_length"), 128u);
  EXPECT_NEAR(*f.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  const std::vector<std::string>* tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  ASSERT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type")->size(), 512u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 2u);

  ASSERT_EQ(f.tensors().size(), 3u + 9u * 5u);
  const TensorInfo* embd = f.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, id(GgmlType::F32));
  EXPECT_EQ(embd->dims, (std::vector<std::uint64_t>{64, 512}));
  EXPECT_EQ(embd->offset, 0u);
  const TensorInfo* down = f.find_tensor("blk.4.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims, (std::vector<std::uint64_t>{172, 64}));
  EXPECT_EQ(f.find_tensor("blk.2.attn_k.weight")->dims, (std::vector<std::uint64_t>{64, 32}));
  std::uint64_t total = 0;
  for (const TensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.type, id(GgmlType::F32)) << t.name;
    total += t.elements;
  }
  EXPECT_EQ(total, 292800u);  // embeddings + output (2 x 64 x 512) + norm + 5 blocks of 45440
  const std::span<const std::byte> norm = f.tensor_data(*f.find_tensor("output_norm.weight"));
  EXPECT_EQ(norm.size(), 256u);
  float first = 0;
  std::memcpy(&first, norm.data(), sizeof(first));
  EXPECT_TRUE(first > 0.0f && first < 100.0f) << "an RMS norm weight, got " << first;
}

// Writes the sample and what it should contain for tests/model/check_gguf_with_gguf_py.py when
// SLUICE_GGUF_PY_OUT is set (the harness that runs the Python check sets it); skips otherwise.
TEST(GgufPyInterop, WritesSampleAndExpectation) {
  const char* out = std::getenv("SLUICE_GGUF_PY_OUT");
  if (out == nullptr || *out == '\0') GTEST_SKIP() << "SLUICE_GGUF_PY_OUT not set";
  const std::string gguf_path = std::string(out) + "/sample.gguf";
  testing::sample_writer().write(gguf_path, 64);
  const File f = File::open(gguf_path);
  std::function<nlohmann::json(const Value&)> to_json = [&](const Value& v) -> nlohmann::json {
    nlohmann::json j = {{"type", std::string(value_type_name(v.type))}};
    if (v.is_array()) {
      j["element_type"] = std::string(value_type_name(v.array_type));
      nlohmann::json values = nlohmann::json::array();
      if (const auto* s = v.strings(); s != nullptr && v.array_type == ValueType::string) {
        for (const std::string& e : *s) values.push_back(e);
      } else if (v.array_type == ValueType::array) {
        for (const Value& e : *v.arrays()) values.push_back(to_json(e));
      } else if (v.array_type == ValueType::boolean) {
        for (std::byte b : *v.array_bytes()) values.push_back(b != std::byte{0});
      } else if (is_float_type(v.array_type)) {
        const std::vector<double> elements = *v.float_elements();  // named: a range-for over
        for (double d : elements) values.push_back(d);              // *temporary would dangle
      } else if (is_signed_type(v.array_type)) {
        const std::vector<std::int64_t> elements = *v.int_elements();
        for (std::int64_t i : elements) values.push_back(i);
      } else {
        const std::vector<std::uint64_t> elements = *v.uint_elements();
        for (std::uint64_t u : elements) values.push_back(u);
      }
      j["value"] = values;
    } else if (const std::string* s = v.as_string()) {
      j["value"] = *s;
    } else if (v.type == ValueType::boolean) {
      j["value"] = *v.as_bool();
    } else if (is_float_type(v.type)) {
      j["value"] = *v.as_float();
    } else if (is_signed_type(v.type)) {
      j["value"] = *v.as_int();
    } else {
      j["value"] = *v.as_uint();
    }
    return j;
  };
  nlohmann::json expected = {{"version", f.version()}, {"alignment", f.alignment()}};
  nlohmann::json metadata = nlohmann::json::array();
  for (const auto& [key, value] : f.metadata()) metadata.push_back({{"key", key}, {"value", to_json(value)}});
  expected["metadata"] = metadata;
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorInfo& t : f.tensors()) {
    const auto data = f.tensor_data(t);
    std::string hex;
    for (std::byte b : data) {
      static constexpr char kDigits[] = "0123456789abcdef";
      hex += kDigits[static_cast<unsigned>(b) >> 4];
      hex += kDigits[static_cast<unsigned>(b) & 15];
    }
    tensors.push_back({{"name", t.name}, {"type", t.type}, {"dims", t.dims}, {"offset", t.offset}, {"bytes_hex", hex}});
  }
  expected["tensors"] = tensors;
  std::ofstream(std::string(out) + "/sample.json") << expected.dump(1);
}

}  // namespace
}  // namespace sluice::gguf
