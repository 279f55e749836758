// GgufFuzzSmoke: runs the GGUF fuzz entry (tests/fuzz/gguf_fuzz_entry.hpp) over a few thousand
// seeded mutations of a valid file in every build, so the ASan/UBSan CI run covers the reader
// even where libFuzzer (clang) is not available. Passing means: nothing crashed, nothing but
// GgufError escaped. The seed is printed; rerun with SLUICE_FUZZ_SEED=N to reproduce one.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "tests/fuzz/gguf_fuzz_entry.hpp"

namespace sluice::gguf::fuzz {
namespace {

constexpr std::uint64_t kDefaultSeed = 20240923;
constexpr int kMutations = 5000;
constexpr int kMaxEditsPerInput = 4;

std::uint64_t smoke_seed() {
  const char* env = std::getenv("SLUICE_FUZZ_SEED");
  return env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : kDefaultSeed;
}

std::uint64_t load_u64(const std::vector<std::uint8_t>& b, std::size_t at) {
  std::uint64_t v = 0;
  std::memcpy(&v, b.data() + at, sizeof(v));
  return v;
}

// Where the seed holds something that looks like a count, length, dim or offset: a u64 between 1
// and the file size. Field corruption aims there, so most of it hits a real header field.
std::vector<std::size_t> field_positions(const std::vector<std::uint8_t>& seed) {
  std::vector<std::size_t> out;
  for (std::size_t at = 0; at + 8 <= seed.size(); ++at) {
    const std::uint64_t v = load_u64(seed, at);
    if (v >= 1 && v <= seed.size()) out.push_back(at);
  }
  return out;
}

// Values on the reader's edges: zero, small counts, alignments, 32/64-bit limits, the file size.
std::vector<std::uint64_t> interesting_values(std::uint64_t file_size) {
  return {0,
          1,
          2,
          4,
          5,
          13,
          31,
          32,
          33,
          64,
          65535,
          65536,
          0x7fffffffull,
          0xffffffffull,
          0x100000000ull,
          1ull << 62,
          0x7fffffffffffffffull,
          0x8000000000000000ull,
          0xffffffffffffffffull,
          file_size - 1,
          file_size,
          file_size + 1};
}

void mutate(std::vector<std::uint8_t>& input, std::mt19937_64& rng, const std::vector<std::size_t>& fields,
            const std::vector<std::uint64_t>& values) {
  if (input.empty()) {
    input.push_back(static_cast<std::uint8_t>(rng()));
    return;
  }
  const std::size_t pos = rng() % input.size();
  switch (rng() % 7) {
    case 0:  // bit flip
      input[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      break;
    case 1:  // truncation
      input.resize(pos);
      break;
    case 2:  // byte insertion
      input.insert(input.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<std::uint8_t>(rng()));
      break;
    case 3:  // byte deletion
      input.erase(input.begin() + static_cast<std::ptrdiff_t>(pos));
      break;
    case 4:  // random byte
      input[pos] = static_cast<std::uint8_t>(rng());
      break;
    case 5: {  // u32 field (version, value/element/tensor types, n_dims) anywhere in the header
      const std::size_t at = rng() % std::min<std::size_t>(input.size(), 512);
      const auto v = static_cast<std::uint32_t>(values[rng() % values.size()]);
      if (at + 4 <= input.size()) std::memcpy(input.data() + at, &v, 4);
      break;
    }
    default: {  // u64 count/size/dim/offset field: an edge value or the old one nudged
      if (fields.empty()) break;
      const std::size_t at = fields[rng() % fields.size()];
      if (at + 8 > input.size()) break;
      std::uint64_t v = values[rng() % values.size()];
      if (rng() % 3 == 0) v = load_u64(input, at) + (rng() % 2 == 0 ? 1 : -1);
      std::memcpy(input.data() + at, &v, 8);
      break;
    }
  }
}

std::vector<std::uint8_t> seed_input() {
  std::vector<std::uint8_t> input;
  for (std::byte b : seed_file()) input.push_back(static_cast<std::uint8_t>(b));
  return input;
}

TEST(GgufFuzzSmoke, SeedOpensAndEmptyInputIsRejected) {
  const std::vector<std::uint8_t> input = seed_input();
  EXPECT_EQ(run_gguf_input(input.data(), input.size()), 1);
  EXPECT_EQ(run_gguf_input(nullptr, 0), 0);
  ::unlink(scratch_path().c_str());
}

TEST(GgufFuzzSmoke, MutationsNeverCrash) {
  const std::uint64_t seed = smoke_seed();
  std::printf("GgufFuzzSmoke seed %llu (set SLUICE_FUZZ_SEED to change)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const std::vector<std::uint8_t> original = seed_input();
  const std::vector<std::size_t> fields = field_positions(original);
  const std::vector<std::uint64_t> values = interesting_values(original.size());
  int accepted = 0;
  for (int i = 0; i < kMutations; ++i) {
    std::vector<std::uint8_t> input = original;
    const int edits = 1 + static_cast<int>(rng() % kMaxEditsPerInput);
    for (int k = 0; k < edits; ++k) mutate(input, rng, fields, values);
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " mutation " << i);
    accepted += run_gguf_input(input.data(), input.size());
  }
  std::printf("%d of %d mutations opened (%zu field positions)\n", accepted, kMutations, fields.size());
  // Most edits must be caught; a handful (a flipped bit in tensor data or a string) stay valid.
  EXPECT_LT(accepted, kMutations);
  ::unlink(scratch_path().c_str());
}

}  // namespace
}  // namespace sluice::gguf::fuzz
