// The pack parser's fuzz entry, shared by the libFuzzer target (fuzz_pack_manifest.cpp, clang
// only) and the PackFuzzSmoke gtest that runs it over seeded mutations in every build.
//
// The first input byte picks what the rest of the input becomes:
//   0 (whole_file): the whole pack file, as is.
//   1 (manifest):   the manifest of a valid seed pack's header + extents; the header is rewritten
//                   with a correct size and checksums, so the fuzzer reaches the JSON checks.
//   2 (header):     32 bytes of header fields (version, flags, manifest offset, size, checksum)
//                   over the seed pack, with a correct header checksum.
// If Pack::open accepts the file, verify_all and read_extent run on it too.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/pack_format.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"

namespace sluice::pack::fuzz {

enum class Mode : std::uint8_t { whole_file = 0, manifest = 1, header = 2 };
inline constexpr std::uint8_t kModeCount = 3;
inline constexpr std::size_t kHeaderFieldBytes = 32;  // version .. manifest_checksum
// read_extent allocates the extent's raw size; a hostile manifest may claim GiBs, so the harness
// only reads extents up to this size (verify_all is bounded by design).
inline constexpr std::uint64_t kMaxReadExtentBytes = 16ull << 20;

// A small valid pack: header + extents (`body`, up to the manifest) and its manifest text.
struct SeedPack {
  std::vector<std::byte> body;
  std::string manifest;
  std::uint32_t version = kMinVersion;  // the seed's header version (2: it has an expert extent)
};

// Scratch file for one process; fuzzing runs one input at a time per process.
inline const std::string& scratch_path() {
  static const std::string path = [] {
    const char* base = std::getenv("TMPDIR");
    return std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sluice-pack-fuzz-" +
           std::to_string(::getpid()) + ".sluice";
  }();
  return path;
}

// Writes the seed pack: two extents, tensors, raw and zstd frames of 4 KiB, and an expert extent
// (version 2) of two experts, so mutations reach the expert-extent checks too.
inline void write_seed_pack(const std::string& path) {
  WriterOptions options;
  options.frame_bytes = 4096;
  PackWriter writer(path, options);
  writer.set_metadata({{"arch", "fuzz"}, {"n_layer", 2}});
  writer.begin_extent("blk.0");
  writer.add_tensor("a", 0, {25, 30}, testing::random_bytes(3000, 1));  // F32: 3000 bytes
  writer.add_tensor("b", 1, {2500}, testing::partly_zero_bytes(5000, 0.8, 2));  // F16
  writer.end_extent();
  writer.begin_extent("blk.1");
  writer.add_tensor("c", 1, {3000}, testing::partly_zero_bytes(6000, 0.5, 3));
  writer.end_extent();
  writer.begin_expert_extent("blk.1.exps", {{"d", 0, {8, 4, 2}, 256}, {"e", 0, {16, 2}, 128}});  // F32, 2 experts
  writer.add_bytes(testing::random_bytes(128 + 64, 4));  // expert 0's slice of d, then of e
  writer.add_bytes(testing::random_bytes(128 + 64, 5));  // expert 1's
  writer.end_extent();
  writer.finish();
}

inline const SeedPack& seed_pack() {
  static const SeedPack seed = [] {
    const std::string path = scratch_path() + ".seed";
    write_seed_pack(path);
    const testing::PackImage image = testing::PackImage::load(path);
    ::unlink(path.c_str());
    SeedPack s;
    s.body.assign(image.bytes.begin(), image.bytes.begin() + static_cast<std::ptrdiff_t>(image.header.manifest_offset));
    s.manifest.assign(reinterpret_cast<const char*>(image.bytes.data() + image.header.manifest_offset),
                      image.header.manifest_bytes);
    s.version = image.header.version;
    return s;
  }();
  return seed;
}

// Builds the file bytes for one input (see the file comment).
inline std::vector<std::byte> build_file(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return {};
  const auto mode = static_cast<Mode>(data[0] % kModeCount);
  const auto* rest = reinterpret_cast<const std::byte*>(data + 1);
  const std::size_t rest_size = size - 1;
  if (mode == Mode::whole_file) return {rest, rest + rest_size};

  const SeedPack& seed = seed_pack();
  std::vector<std::byte> file = seed.body;
  Header header;
  header.version = seed.version;
  header.manifest_offset = seed.body.size();
  if (mode == Mode::manifest) {
    file.insert(file.end(), rest, rest + rest_size);
    header.manifest_bytes = rest_size;
    header.manifest_checksum = manifest_checksum({rest, rest_size});
  } else {
    const auto* m = reinterpret_cast<const std::byte*>(seed.manifest.data());
    file.insert(file.end(), m, m + seed.manifest.size());
    header.manifest_bytes = seed.manifest.size();
    header.manifest_checksum = manifest_checksum({m, seed.manifest.size()});
    // Fields the input supplies; missing bytes keep the seed's values.
    std::vector<std::byte> fields = encode_header(header);
    std::memcpy(fields.data() + kHeaderVersionOffset, rest, std::min(rest_size, kHeaderFieldBytes));
    header.version = static_cast<std::uint32_t>(testing::load_u64(fields, kHeaderVersionOffset) & 0xffffffffu);
    header.flags = static_cast<std::uint32_t>(testing::load_u64(fields, kHeaderFlagsOffset) & 0xffffffffu);
    header.manifest_offset = testing::load_u64(fields, kHeaderManifestOffsetOffset);
    header.manifest_bytes = testing::load_u64(fields, kHeaderManifestBytesOffset);
    header.manifest_checksum = testing::load_u64(fields, kHeaderManifestChecksumOffset);
  }
  const std::vector<std::byte> encoded = encode_header(header);
  std::memcpy(file.data(), encoded.data(), encoded.size());
  return file;
}

// Runs one input end to end. Returns 1 if the pack opened, 0 if it was rejected. Any other
// outcome (crash, sanitizer report, an exception other than PackError) is a bug.
inline int run_pack_input(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::byte> file = build_file(data, size);
  testing::write_file(scratch_path(), file);
  try {
    const Pack pack = Pack::open(scratch_path());
    (void)pack.verify_all();
    for (std::size_t e = 0; e < pack.extents().size(); ++e) {
      if (pack.extents()[e].raw_bytes <= kMaxReadExtentBytes) (void)pack.read_extent(e);
    }
    for (const TensorInfo& tensor : pack.tensors()) {
      if (pack.find_tensor(tensor.name) == nullptr) std::abort();  // every listed tensor must be findable
      // What an accepted pack promises its readers: a known type whose shape is the tensor's
      // byte count, inside its extent.
      const auto traits = ggml_type_traits(tensor.type);
      if (!traits || tensor.shape.empty() || tensor.extent >= pack.extents().size()) std::abort();
      std::uint64_t rows = 1;
      for (std::size_t d = 1; d < tensor.shape.size(); ++d) rows *= tensor.shape[d];
      if (ggml_row_bytes(*traits, tensor.shape[0]) * rows != tensor.bytes) std::abort();
      const auto& extent = pack.extents()[tensor.extent];
      if (tensor.offset > extent.raw_bytes || tensor.bytes > extent.raw_bytes - tensor.offset) std::abort();
    }
    return 1;
  } catch (const PackError&) {
    return 0;
  }
}

}  // namespace sluice::pack::fuzz
