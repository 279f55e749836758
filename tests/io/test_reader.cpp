// The shared io suite: every backend (io_uring, pread) x (O_DIRECT, buffered) passes these.
#include <unistd.h>

#include "tests/io/io_fixture.hpp"

namespace sluice::io::testing {
namespace {

using sluice::testing::TempDir;
using sluice::testing::write_pattern_file;

class ReaderSuite : public ::testing::TestWithParam<BackendParam> {
 protected:
  TempDir dir;
};

TEST_P(ReaderSuite, OpensRequestedBackend) {
  std::string path = dir.file("a.bin");
  write_pattern_file(path, 8192, 1);
  auto reader = open_reader(path, GetParam());
  EXPECT_STREQ(reader->backend_name(), GetParam().kind == BackendKind::uring ? "io_uring" : "pread");
  EXPECT_EQ(reader->direct(), GetParam().direct);
  EXPECT_EQ(reader->file_size(), 8192u);
}

TEST_P(ReaderSuite, WholeFileManyReadsInFlightWithUnalignedTail) {
  // 5 MiB + 1234 bytes: not a multiple of 4096, so the last request reads a partial tail.
  std::string path = dir.file("b.bin");
  std::uint64_t size = 5 * MiB + 1234;
  write_pattern_file(path, size, 7);
  auto reader = open_reader(path, GetParam(), 16);
  PassResult pass = read_pass(*reader, 64 * 1024);
  ASSERT_TRUE(pass.errors.empty()) << pass.errors[0].message;
  EXPECT_TRUE(matches_pattern(pass.data, 7));
  EXPECT_EQ(reader->stats().bytes_read, size);
  EXPECT_EQ(reader->in_flight(), 0u);
}

TEST_P(ReaderSuite, TinyFileSmallerThanOneBlock) {
  std::string path = dir.file("tiny.bin");
  write_pattern_file(path, 100, 3);
  auto reader = open_reader(path, GetParam());
  AlignedBuffer buf(4096);
  std::uint64_t bytes = 0;
  Status st = reader->read_sync(buf.data, 0, 4096, &bytes);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(bytes, 100u);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(std::uint8_t(buf.data[i]), sluice::testing::pattern_byte(i, 3));
}

TEST_P(ReaderSuite, CompletionsMatchedByUserData) {
  std::string path = dir.file("c.bin");
  write_pattern_file(path, 64 * 4096, 11);
  auto reader = open_reader(path, GetParam(), 8);
  AlignedBuffer buf(64 * 4096);
  // Submit 8 reads in reverse order with user_data = block index * 1000 + 5.
  for (int i = 7; i >= 0; --i) reader->submit(ReadRequest{buf.data + i * 8 * 4096, std::uint64_t(i) * 8 * 4096, 8 * 4096, -1, std::uint64_t(i) * 1000 + 5});
  std::vector<ReadCompletion> out(8);
  std::vector<bool> seen(8, false);
  std::size_t total = 0;
  while (total < 8) {
    auto n = reader->wait(out, 1);
    ASSERT_TRUE(n);
    for (std::size_t k = 0; k < n.value(); ++k) {
      ASSERT_TRUE(out[k].status);
      std::uint64_t idx = (out[k].user_data - 5) / 1000;
      ASSERT_LT(idx, 8u);
      EXPECT_FALSE(seen[idx]);
      seen[idx] = true;
      EXPECT_EQ(out[k].bytes, 8u * 4096);
    }
    total += n.value();
  }
  for (std::uint64_t i = 0; i < 64 * 4096; ++i) ASSERT_EQ(std::uint8_t(buf.data[i]), sluice::testing::pattern_byte(i, 11));
}

TEST_P(ReaderSuite, RegisteredBuffers) {
  std::string path = dir.file("d.bin");
  write_pattern_file(path, 1 * MiB, 5);
  auto reader = open_reader(path, GetParam());
  AlignedBuffer buf(1 * MiB);
  iovec region{buf.data, buf.size};
  ASSERT_TRUE(reader->register_buffers(std::span(&region, 1)));
  EXPECT_EQ(reader->backend().buffers_registered(), GetParam().kind == BackendKind::uring);
  for (int i = 0; i < 4; ++i) reader->submit(ReadRequest{buf.data + i * 256 * 1024, std::uint64_t(i) * 256 * 1024, 256 * 1024, 0, std::uint64_t(i)});
  std::vector<ReadCompletion> out(4);
  std::size_t total = 0;
  while (total < 4) {
    auto n = reader->wait(out, 1);
    ASSERT_TRUE(n);
    for (std::size_t k = 0; k < n.value(); ++k) ASSERT_TRUE(out[k].status) << out[k].status.error().message;
    total += n.value();
  }
  for (std::uint64_t i = 0; i < 1 * MiB; ++i) ASSERT_EQ(std::uint8_t(buf.data[i]), sluice::testing::pattern_byte(i, 5));
}

TEST_P(ReaderSuite, ReadBeyondEndOfFileIsAnErrorNamingThePath) {
  std::string path = dir.file("e.bin");
  write_pattern_file(path, 4096, 1);
  auto reader = open_reader(path, GetParam());
  AlignedBuffer buf(4096);
  Status st = reader->read_sync(buf.data, 8192, 4096);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find(path), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("beyond end of file"), std::string::npos);
}

TEST_P(ReaderSuite, FileTruncatedAfterOpenSaysWhereTheFileEnds) {
  std::string path = dir.file("f.bin");
  write_pattern_file(path, 64 * 1024, 1);
  auto reader = open_reader(path, GetParam());
  ASSERT_EQ(::truncate(path.c_str(), 8192), 0);
  AlignedBuffer buf(64 * 1024);
  Status st = reader->read_sync(buf.data, 16384, 16384);
  ASSERT_FALSE(st);
  const std::string& m = st.error().message;
  EXPECT_EQ(st.error().kind, ErrorKind::io);
  EXPECT_NE(m.find(path + ": file ends at byte 8192, but the read needs bytes 16384..32767"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated or replaced while reading"), std::string::npos) << m;
}

// The file is cut inside a read, at a byte that is not 4096-aligned: the first read comes back
// short at the new end. With O_DIRECT, asking again from the aligned boundary below returned the
// same few bytes each time, and the reader used to give up with "N short reads in a row, stuck at
// offset X"; now it checks the file's size and says the file ends there, on the first short read.
TEST_P(ReaderSuite, FileCutInsideAReadAtAnUnalignedByteSaysWhereTheFileEnds) {
  std::string path = dir.file("cut.bin");
  write_pattern_file(path, 64 * 1024, 5);
  auto reader = open_reader(path, GetParam());
  ASSERT_EQ(::truncate(path.c_str(), 8192 + 100), 0);
  AlignedBuffer buf(64 * 1024);
  std::uint64_t bytes = 0;
  Status st = reader->read_sync(buf.data, 0, 64 * 1024, &bytes);
  ASSERT_FALSE(st);
  const std::string& m = st.error().message;
  EXPECT_NE(m.find(path + ": file ends at byte 8292, but the read needs bytes 0..65535"), std::string::npos) << m;
  EXPECT_EQ(m.find("short reads in a row"), std::string::npos) << m;
  EXPECT_LE(reader->stats().short_reads, 1u) << "a file that ended was asked again and again";
  // What did arrive is reported and intact.
  EXPECT_EQ(bytes, 8292u);
  for (std::uint64_t i = 0; i < bytes; ++i) ASSERT_EQ(std::uint8_t(buf.data[i]), sluice::testing::pattern_byte(i, 5)) << i;
  EXPECT_EQ(reader->in_flight(), 0u);
}

TEST_P(ReaderSuite, MissingFileThrowsNamingThePath) {
  try {
    open_reader(dir.file("does-not-exist.bin"), GetParam());
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist.bin"), std::string::npos);
  }
}

TEST_P(ReaderSuite, BusyTimeIsMeasured) {
  std::string path = dir.file("g.bin");
  write_pattern_file(path, 2 * MiB, 2);
  auto reader = open_reader(path, GetParam());
  PassResult pass = read_pass(*reader, 128 * 1024);
  ASSERT_TRUE(pass.errors.empty());
  EXPECT_GT(reader->stats().busy.count(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, ReaderSuite, ::testing::ValuesIn(kAllBackends), param_name);

}  // namespace
}  // namespace sluice::io::testing
