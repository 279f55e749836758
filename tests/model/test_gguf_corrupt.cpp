// The GGUF corrupt-file table: one hand-built file per rejection rule in gguf_reader.cpp, each
// checked for a GgufError whose message names the file and says what is wrong. Modelled on
// llama.cpp's tests/test-gguf.cpp handcrafted files.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "tests/model/gguf_test_util.hpp"

namespace sluice::gguf {
namespace {

using testing::Bytes;
using testing::Spec;
using testing::SpecKv;

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kTypeU32 = static_cast<std::uint32_t>(ValueType::u32);
constexpr std::uint32_t kTypeArray = static_cast<std::uint32_t>(ValueType::array);
constexpr std::uint32_t kTypeBool = static_cast<std::uint32_t>(ValueType::boolean);
constexpr std::uint32_t kTypeString = static_cast<std::uint32_t>(ValueType::string);

struct CorruptCase {
  std::string name;
  std::function<std::vector<std::byte>()> make;  // the file's bytes
  std::vector<std::string> words;                 // each must appear in the message
};

// The valid spec after `edit`.
std::function<std::vector<std::byte>()> edited(std::function<void(Spec&)> edit) {
  return [edit] {
    Spec s = testing::valid_spec();
    edit(s);
    return testing::encode(s);
  };
}

// The valid file cut to `bytes` bytes.
std::function<std::vector<std::byte>()> truncated(std::size_t bytes) {
  return [bytes] {
    std::vector<std::byte> b = testing::encode(testing::valid_spec());
    b.resize(bytes);
    return b;
  };
}

// The valid spec with one more key-value pair.
std::function<std::vector<std::byte>()> with_kv(SpecKv kv) {
  return edited([kv](Spec& s) { s.kvs.push_back(kv); });
}

std::vector<CorruptCase> cases() {
  const std::size_t header_end = 24;
  return {
      // Header.
      {"EmptyFile", truncated(0), {"truncated", "magic"}},
      {"BadMagic", edited([](Spec& s) { s.magic = "FUGG"; }), {"bad magic", "'FUGG'", "byte offset 0"}},
      {"Version1", edited([](Spec& s) { s.version = 1; }), {"version 1", "unsupported"}},
      {"Version0", edited([](Spec& s) { s.version = 0; }), {"unsupported GGUF version 0"}},
      {"FutureVersion", edited([](Spec& s) { s.version = 4; }), {"unsupported GGUF version 4"}},
      {"BigEndianVersion", edited([](Spec& s) { s.version = 0x03000000; }), {"big-endian"}},
      {"TruncatedHeader", truncated(12), {"truncated", "tensor count"}},
      {"AbsurdTensorCount", edited([](Spec& s) { s.n_tensors = kU64Max; }),
       {"tensor count 18446744073709551615", "more than the file could hold"}},
      {"AbsurdKvCount", edited([](Spec& s) { s.n_kv = 1ull << 40; }), {"key-value count", "more than the file could hold"}},
      {"CountsTogetherTooLarge", edited([](Spec& s) {
         const std::uint64_t rest = testing::encode(s).size() - header_end;
         s.n_kv = rest / 14 / 2 + 1;
         s.n_tensors = rest / 33 / 2 + 1;
       }),
       {"tensor count", "and key-value count", "more than the file could hold"}},
      // Keys and values.
      {"EmptyKey", with_kv(testing::kv_u32("", 1)), {"key-value pair #2 has an empty key"}},
      {"OversizedKey", with_kv(testing::kv_u32(std::string(kMaxKeyBytes + 1, 'k'), 1)),
       {"key of key-value pair #2", "65536 bytes", "limit of 65535"}},
      {"KeyLongerThanFile", [] { return Bytes{}.raw("GGUF").u32(3).u64(0).u64(1).u64(1000).raw("only sixteen b.").out; },
       {"key of key-value pair #0", "string of 1000 bytes", "longer than the remaining file"}},
      {"StringLongerThanFile",
       with_kv(SpecKv{"general.name", kTypeString, Bytes{}.u64(1ull << 40).raw("abc").out}),
       {"value of key 'general.name'", "string of 1099511627776 bytes", "longer than the remaining file"}},
      {"DuplicateKey", with_kv(testing::kv_string("general.architecture", "gpt2")),
       {"duplicate key 'general.architecture'", "#0 and #2"}},
      {"UnknownValueType", with_kv(SpecKv{"k", 13, Bytes{}.u32(0).out}), {"key 'k'", "unknown value type 13"}},
      {"UnknownArrayElementType", with_kv(SpecKv{"k", kTypeArray, Bytes{}.u32(99).u64(0).out}),
       {"key 'k'", "unknown array element type 99"}},
      {"ArrayLongerThanFile", with_kv(SpecKv{"k", kTypeArray, Bytes{}.u32(kTypeU32).u64(1ull << 61).out}),
       {"key 'k'", "array of 2305843009213693952 u32 elements", "longer than the remaining file"}},
      {"StringArrayLongerThanFile", with_kv(SpecKv{"k", kTypeArray, Bytes{}.u32(kTypeString).u64(kU64Max).out}),
       {"key 'k'", "string elements", "longer than the remaining file"}},
      {"ArrayElementStringTooLong",
       with_kv(SpecKv{"k", kTypeArray, Bytes{}.u32(kTypeString).u64(1).u64(1ull << 50).out}),
       {"element of key 'k'", "longer than the remaining file"}},
      {"ArraysNestedTooDeep", with_kv([] {
         Bytes b;
         for (std::uint32_t i = 0; i < kMaxArrayNesting; ++i) b.u32(kTypeArray).u64(1);
         b.u32(kTypeU32).u64(0);
         return SpecKv{"k", kTypeArray, b.out};
       }()),
       {"key 'k'", "nested deeper than 8"}},
      {"BadBool", with_kv(SpecKv{"k", kTypeBool, Bytes{}.put<std::uint8_t>(2).out}), {"key 'k'", "bool value 2"}},
      {"BadBoolArrayElement",
       with_kv(SpecKv{"k", kTypeArray, Bytes{}.u32(kTypeBool).u64(3).put<std::uint8_t>(1).put<std::uint8_t>(0).put<std::uint8_t>(7).out}),
       {"key 'k'", "bool element 2 is 7"}},
      {"TruncatedValue", [] { return Bytes{}.raw("GGUF").u32(3).u64(0).u64(1).str("k").u32(kTypeU32).raw("xy").out; },
       {"truncated", "value of key 'k' needs 4 bytes, 2 left"}},
      // Alignment.
      {"AlignmentWrongType",
       with_kv(SpecKv{std::string(kAlignmentKey), static_cast<std::uint32_t>(ValueType::i32), Bytes{}.u32(32).out}),
       {"general.alignment", "type i32", "expected u32"}},
      {"AlignmentZero", with_kv(testing::kv_u32(std::string(kAlignmentKey), 0)), {"general.alignment", "power of two"}},
      {"AlignmentNotPowerOfTwo", with_kv(testing::kv_u32(std::string(kAlignmentKey), 13)),
       {"general.alignment' is 13", "power of two"}},
      // Tensor infos.
      {"EmptyTensorName", edited([](Spec& s) { s.tensors[1].name = ""; }), {"tensor #1 has an empty name"}},
      {"OversizedTensorName", edited([](Spec& s) { s.tensors[1].name = std::string(kMaxTensorNameBytes + 1, 'n'); }),
       {"name of tensor #1", "65 bytes", "limit of 64"}},
      {"TensorNameLongerThanFile", [] { return Bytes{}.raw("GGUF").u32(3).u64(1).u64(0).u64(60).raw(std::string(40, 'n')).out; },
       {"name of tensor #0", "string of 60 bytes", "longer than the remaining file"}},
      {"DuplicateTensorName", edited([](Spec& s) { s.tensors[1].name = "a.weight"; }),
       {"duplicate tensor name 'a.weight'", "#0 and #1"}},
      {"TooManyDims", edited([](Spec& s) { s.tensors[1].dims = {32, 1, 1, 1, 1}; }),
       {"tensor 'b.weight' has 5 dimensions", "1 to 4"}},
      {"NoDims", edited([](Spec& s) { s.tensors[1].dims = {}; }), {"tensor 'b.weight' has 0 dimensions"}},
      {"HugeDimCount", edited([](Spec& s) { s.tensors[1].n_dims = 0xffffffffu; }), {"4294967295 dimensions"}},
      {"ZeroDim", edited([](Spec& s) { s.tensors[0].dims = {8, 0}; }), {"tensor 'a.weight'", "dimension 1 is zero"}},
      {"NegativeDim", edited([](Spec& s) { s.tensors[0].dims = {8, 1ull << 63}; }),
       {"tensor 'a.weight'", "dimension 1 is 9223372036854775808", "negative"}},
      {"ElementCountOverflow", edited([](Spec& s) { s.tensors[0].dims = {1ull << 32, 1ull << 31}; }),
       {"tensor 'a.weight'", "element count", "overflows int64"}},
      {"ByteCountOverflow", edited([](Spec& s) { s.tensors[0].dims = {1ull << 62, 1}; }),
       {"tensor 'a.weight' of type F32", "byte count", "overflows"}},
      {"UnknownTensorType", edited([](Spec& s) { s.tensors[1].type = 16; }),
       {"tensor 'b.weight'", "unknown ggml type 16"}},
      {"RowNotWholeBlocks", edited([](Spec& s) { s.tensors[1].dims = {33}; }),
       {"tensor 'b.weight' of type Q8_0", "row length 33", "block size 32"}},
      {"TruncatedTensorInfo", [] {
         Spec s = testing::valid_spec();
         s.tensors.pop_back();
         s.n_tensors = 2;
         s.alignment = 1;
         s.data_bytes = 0;
         std::vector<std::byte> b = testing::encode(s);
         b.resize(b.size() + 4, std::byte{0});  // half of the second tensor's name length
         return b;
       },
       {"truncated", "name of tensor #1 needs 8 bytes, 4 left"}},
      // Tensor data.
      {"DataSectionPastEnd", [] {
         Spec s = testing::valid_spec();
         s.alignment = 1;  // no padding after the infos
         s.data_bytes = 0;
         return testing::encode(s);
       },
       {"data section would start", "past the end of the file"}},
      {"OffsetNotAligned", edited([](Spec& s) { s.tensors[1].offset = 68; }),
       {"tensor 'b.weight'", "data offset 68", "not a multiple of the alignment 32"}},
      {"OffsetOutsideFile", edited([](Spec& s) { s.tensors[1].offset = 1ull << 40; }),
       {"tensor 'b.weight'", "outside the file"}},
      {"OffsetPlusBytesWraps", edited([](Spec& s) { s.tensors[1].offset = kU64Max - 31; }),
       {"tensor 'b.weight'", "outside the file"}},
      {"DataTruncated", edited([](Spec& s) { s.data_bytes -= 1; }), {"tensor 'b.weight'", "outside the file"}},
      {"TensorsOverlap", edited([](Spec& s) { s.tensors[1].offset = 32; }),
       {"tensors 'a.weight' and 'b.weight' overlap"}},
  };
}

class GgufCorrupt : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(GgufCorrupt, IsRejectedWithAMessageThatSaysWhy) {
  const CorruptCase& c = GetParam();
  testing::TempDir dir;
  const std::string path = dir.file(c.name + ".gguf");
  testing::write_file(path, c.make());
  try {
    const File f = File::open(path);
    FAIL() << "opened, expected a GgufError containing '" << c.words.front() << "'";
  } catch (const GgufError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << "names the file: " << what;
    for (const std::string& word : c.words) EXPECT_NE(what.find(word), std::string::npos) << "'" << word << "' in: " << what;
  }
}

// The header-only open (pread, no mapping) runs the same parser and must refuse the same way.
TEST_P(GgufCorrupt, HeaderOnlyOpenRejectsToo) {
  const CorruptCase& c = GetParam();
  testing::TempDir dir;
  const std::string path = dir.file(c.name + ".gguf");
  testing::write_file(path, c.make());
  try {
    const File f = File::open_header(path);
    FAIL() << "opened, expected a GgufError containing '" << c.words.front() << "'";
  } catch (const GgufError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << "names the file: " << what;
    for (const std::string& word : c.words) EXPECT_NE(what.find(word), std::string::npos) << "'" << word << "' in: " << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, GgufCorrupt, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<CorruptCase>& info) { return info.param.name; });

// The table's base file is valid, so each case fails for its own reason.
TEST(GgufCorruptBase, ValidSpecOpens) {
  testing::TempDir dir;
  testing::write_file(dir.file("ok.gguf"), testing::encode(testing::valid_spec()));
  const File f = File::open(dir.file("ok.gguf"));
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.metadata().size(), 2u);
}

}  // namespace
}  // namespace sluice::gguf
