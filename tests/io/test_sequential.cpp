// read_file_sequential (io/sequential.hpp), the raw O_DIRECT yardstick: every byte of the file
// (or of its first `limit`) counted once, through the reader's few buffers or a larger pool
// cycled in order, on each backend.
#include <gtest/gtest.h>

#include "io/sequential.hpp"
#include "tests/io/io_fixture.hpp"

namespace sluice::io::testing {
namespace {

using sluice::testing::TempDir;
using sluice::testing::write_pattern_file;

class SequentialReadSuite : public ::testing::TestWithParam<BackendParam> {
 protected:
  TempDir dir;
};

TEST_P(SequentialReadSuite, CountsEveryByteWithTheDefaultBuffersAndWithAPool) {
  const std::string path = dir.file("seq.bin");
  const std::uint64_t size = 9 * MiB + 4096 * 3 + 100;  // a partial last request and a partial tail
  write_pattern_file(path, size, 3);
  const BackendOptions options{GetParam().kind, GetParam().direct, 4};
  for (std::uint64_t pool : {std::uint64_t{0}, std::uint64_t{2} * MiB, std::uint64_t{7} * MiB + 5}) {
    auto whole = read_file_sequential(path, options, 1u << 20, 0, pool);
    ASSERT_TRUE(whole) << whole.error().message;
    EXPECT_EQ(whole.value().bytes, size) << "pool " << pool;
    EXPECT_GT(whole.value().wall.count(), 0);
    auto head = read_file_sequential(path, options, 1u << 20, 3 * MiB, pool);
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head.value().bytes, 3 * MiB) << "pool " << pool;
  }
}

// The pool is the destination even below queue_depth requests (a small ring's few MiB): before,
// a 2 MiB pool read into queue_depth buffers and `bench --raw-read` quoted it as 2 MiB.
TEST_P(SequentialReadSuite, ReadsIntoThePoolItIsGivenEvenBelowTheQueueDepth) {
  const std::string path = dir.file("seq.bin");
  const std::uint64_t size = 6 * MiB + 4096;
  write_pattern_file(path, size, 5);
  const BackendOptions options{GetParam().kind, GetParam().direct, 8};
  const std::pair<std::uint64_t, std::uint64_t> cases[] = {
      {0, 8 * MiB}, {2 * MiB, 2 * MiB}, {3 * MiB + 5, 3 * MiB}, {100, 1 * MiB}, {16 * MiB, 16 * MiB}};
  for (const auto& [pool, expected] : cases) {
    auto read = read_file_sequential(path, options, 1u << 20, 0, pool);
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read.value().bytes, size) << "pool " << pool;
    EXPECT_EQ(read.value().buffer_bytes, expected) << "pool " << pool;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, SequentialReadSuite, ::testing::ValuesIn(kAllBackends), param_name);

}  // namespace
}  // namespace sluice::io::testing
