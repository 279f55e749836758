// Shared helpers for the prefetcher suites: small packs with known contents.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "io/fault_backend.hpp"
#include "prefetch/prefetcher.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice::prefetch::testing {

// Extent contents: half low-entropy (compresses), half random (does not), so auto-compressed
// packs mix raw and zstd frames within an extent.
inline std::vector<std::byte> extent_bytes(std::size_t size, std::uint64_t seed) {
  std::vector<std::byte> bytes(size);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < size; ++i) {
    bool noisy = (i / 50000) % 2 == 1;
    bytes[i] = std::byte(noisy ? rng() & 0xff : (i / 7 + seed) & 0x0f);
  }
  return bytes;
}

struct TestPack {
  std::string path;
  std::vector<std::vector<std::byte>> contents;  // raw bytes of each extent
};

// Writes `count` extents of uneven sizes (base + k*extra + odd tail) with 64 KiB frames.
inline TestPack write_test_pack(const std::string& path, std::size_t count, std::size_t base,
                                pack::WriterOptions::Compress compress, std::uint64_t seed = 1) {
  pack::WriterOptions options;
  options.frame_bytes = 64 * 1024;
  options.compress = compress;
  pack::PackWriter writer(path, options);
  TestPack result{path, {}};
  for (std::size_t i = 0; i < count; ++i) {
    writer.begin_extent("blk." + std::to_string(i));
    auto bytes = extent_bytes(base + i * 12345 + 333, seed * 1000 + i);
    writer.add_bytes(bytes);
    writer.end_extent();
    result.contents.push_back(std::move(bytes));
  }
  writer.finish();
  return result;
}

inline std::vector<std::uint32_t> sequential_plan(std::size_t count) {
  std::vector<std::uint32_t> plan(count);
  for (std::size_t i = 0; i < count; ++i) plan[i] = static_cast<std::uint32_t>(i);
  return plan;
}

inline bool same_bytes(std::span<const std::byte> a, const std::vector<std::byte>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sluice::prefetch::testing
