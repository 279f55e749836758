// Every read of a pack goes through io::File (io/file.hpp), so PackOptions::fault reaches them
// all: header, manifest, verify_all's batches, read_extent and read_frame. A sweep fails the N-th
// read for every N: one EINTR is retried (identical bytes); EIO from then on is an error naming
// the pack, the offset and the errno (PackError from open, an Error from the read calls).
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "io/fault_backend.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"
#include "tests/support/fault_sweep.hpp"

namespace sluice::pack {
namespace {

// What the run below reads, or the first error's message.
struct Seen {
  std::vector<std::vector<std::byte>> extents, frames;
  std::size_t verify_errors = 0;
  std::string error;
};

Seen read_everything(const std::string& path, const io::FaultPlan* plan) {
  Seen seen;
  try {
    Pack pack = Pack::open(path, PackOptions{plan});
    for (const Error& e : pack.verify_all()) {
      ++seen.verify_errors;
      if (seen.error.empty()) seen.error = e.message;
    }
    for (std::size_t i = 0; i < pack.extents().size(); ++i) {
      auto extent = pack.read_extent(i);
      if (!extent) {
        if (seen.error.empty()) seen.error = extent.error().message;
        return seen;
      }
      seen.extents.push_back(std::move(extent).value());
      auto frame = pack.read_frame(i, pack.extents()[i].frames.size() - 1);
      if (!frame) {
        if (seen.error.empty()) seen.error = frame.error().message;
        return seen;
      }
      seen.frames.push_back(std::move(frame).value());
    }
  } catch (const PackError& e) {
    seen.error = e.what();
  }
  return seen;
}

TEST(PackFaults, EveryReadRetriesTransientErrnosAndNamesFileAndOffsetOnFailure) {
  testing::TempDir dir;
  const std::string path = dir.file("f.sluice");
  {
    WriterOptions options;
    options.frame_bytes = 4096;  // several frames per extent: raw and zstd
    PackWriter writer(path, options);
    for (int e = 0; e < 2; ++e) {
      writer.begin_extent("blk." + std::to_string(e));
      writer.add_tensor("blk." + std::to_string(e) + ".a", 0, {4000}, testing::partly_zero_bytes(16000, 0.5, e));
      writer.end_extent();
    }
    writer.finish();
  }
  std::atomic<std::uint64_t> operations{0};
  io::FaultPlan clean;
  clean.shared_operations = &operations;
  const Seen expected = read_everything(path, &clean);
  ASSERT_TRUE(expected.error.empty()) << expected.error;
  const std::uint64_t total = operations.load();
  ASSERT_GE(total, 2u + 2u + 2u * 2u);  // header, manifest, verify batches, extents and frames

  sluice::testing::sweep_nth_fault(total, operations, [&](io::FaultPlan& plan, bool persistent) {
    const Seen seen = read_everything(path, &plan);
    if (!persistent) {
      EXPECT_TRUE(seen.error.empty()) << seen.error;
      EXPECT_EQ(seen.extents, expected.extents);
      EXPECT_EQ(seen.frames, expected.frames);
      return;
    }
    ASSERT_FALSE(seen.error.empty()) << "a persistent fault went unnoticed";
    EXPECT_NE(seen.error.find(path), std::string::npos) << seen.error;
    EXPECT_NE(seen.error.find("offset"), std::string::npos) << seen.error;
    EXPECT_NE(seen.error.find(std::strerror(EIO)), std::string::npos) << seen.error;
  });
}

}  // namespace
}  // namespace sluice::pack
