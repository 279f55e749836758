// io::File: exact positional reads and writes under the io/ policy. Short reads and writes are
// advanced, transient errnos retried, and a persistent failure names the file, the offset and
// the errno; faults come from the same FaultPlan as the streaming reader's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "io/file.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice::io {
namespace {

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::byte{sluice::testing::pattern_byte(i, seed)};
  return out;
}

std::string write_file(const sluice::testing::TempDir& dir, const std::string& name, const std::vector<std::byte>& bytes) {
  const std::string path = dir.file(name);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

std::vector<std::byte> read_back(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(raw.size());
  std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}

FileOptions quick(const FaultPlan* plan = nullptr, bool writable = false) {
  FileOptions o;
  o.writable = writable;
  o.fault = plan;
  o.retry.eagain_backoff = std::chrono::microseconds(1);
  return o;
}

TEST(File, ReadsExactBytesThroughInjectedShortReads) {
  sluice::testing::TempDir dir;
  const auto data = pattern(300'000, 7);
  const std::string path = write_file(dir, "f", data);
  FaultPlan plan;
  plan.seed = 11;
  plan.short_read_probability = 0.7;
  auto file = File::open(path, quick(&plan));
  EXPECT_EQ(file->size(), data.size());
  std::vector<std::byte> got(100'001);
  ASSERT_TRUE(file->read_at(got, 12'345).ok());
  EXPECT_EQ(std::memcmp(got.data(), data.data() + 12'345, got.size()), 0);
  EXPECT_GT(file->reader_stats().short_reads, 0u) << "seed " << plan.seed;
}

TEST(File, TransientErrnosAreRetriedForReadsAndWrites) {
  for (int err : {EINTR, EAGAIN, ECANCELED}) {
    SCOPED_TRACE(std::strerror(err));
    sluice::testing::TempDir dir;
    const auto data = pattern(64 * 1024, 3);
    const std::string path = write_file(dir, "f", data);
    FaultPlan plan;
    plan.fail_op = 1;  // the read's first try
    plan.fail_errno = err;
    auto file = File::open(path, quick(&plan, true));
    std::vector<std::byte> got(4096);
    Status st = file->read_at(got, 8192);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_EQ(std::memcmp(got.data(), data.data() + 8192, got.size()), 0);
    EXPECT_EQ(file->reader_stats().retries, 1u);

    FaultPlan write_plan;
    write_plan.fail_op = 1;  // the write's first try
    write_plan.fail_errno = err;
    auto writer = File::open(path, quick(&write_plan, true));
    const auto update = pattern(5000, 99);
    st = writer->write_at(update, 1000);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_EQ(writer->stats().write_retries, 1u);
    const auto on_disk = read_back(path);
    EXPECT_EQ(std::memcmp(on_disk.data() + 1000, update.data(), update.size()), 0);
    EXPECT_EQ(std::memcmp(on_disk.data(), data.data(), 1000), 0);
  }
}

TEST(File, ShortWritesAreAdvancedUntilEveryByteIsWritten) {
  sluice::testing::TempDir dir;
  const std::string path = write_file(dir, "f", std::vector<std::byte>(200'000));
  FaultPlan plan;
  plan.seed = 5;
  plan.short_read_probability = 0.7;  // applies to writes too
  auto file = File::open(path, quick(&plan, true));
  const auto data = pattern(150'000, 21);
  ASSERT_TRUE(file->write_at(data, 777).ok());
  EXPECT_GT(file->stats().short_writes, 0u) << "seed " << plan.seed;
  const auto on_disk = read_back(path);
  EXPECT_EQ(std::memcmp(on_disk.data() + 777, data.data(), data.size()), 0);
}

TEST(File, PersistentFailureNamesFileOffsetAndErrno) {
  sluice::testing::TempDir dir;
  const std::string path = write_file(dir, "named-file", pattern(64 * 1024, 1));
  for (int err : {EIO, EINTR}) {  // EINTR forever: the retries run out
    SCOPED_TRACE(std::strerror(err));
    FaultPlan plan;
    plan.fail_op = 1;
    plan.persistent = true;
    plan.fail_errno = err;
    auto file = File::open(path, quick(&plan, true));
    std::vector<std::byte> buf(4096);
    Status st = file->read_at(buf, 40960);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().kind, ErrorKind::io);
    EXPECT_EQ(st.error().sys_errno, err);
    EXPECT_NE(st.error().message.find(path), std::string::npos) << st.error().message;
    EXPECT_NE(st.error().message.find("offset 40960"), std::string::npos) << st.error().message;
    EXPECT_NE(st.error().message.find(std::strerror(err)), std::string::npos) << st.error().message;

    st = file->write_at(buf, 8192);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().sys_errno, err);
    EXPECT_NE(st.error().message.find("write of " + path + " at offset 8192"), std::string::npos) << st.error().message;
    if (err == EINTR) {
      EXPECT_NE(st.error().message.find("after 8 retries"), std::string::npos) << st.error().message;
    }
  }
}

TEST(File, RangesPastTheEndAreErrorsNotCrashes) {
  sluice::testing::TempDir dir;
  const std::string path = write_file(dir, "f", pattern(10'000, 2));
  auto file = File::open(path, quick(nullptr, true));
  std::vector<std::byte> buf(100);
  for (std::uint64_t offset : {std::uint64_t{9'950}, std::uint64_t{10'001}, UINT64_MAX - 10}) {
    Status st = file->read_at(buf, offset);
    ASSERT_FALSE(st.ok()) << offset;
    EXPECT_NE(st.error().message.find(path), std::string::npos) << st.error().message;
    EXPECT_NE(st.error().message.find(fmt::format("offset {}", offset)), std::string::npos) << st.error().message;
    EXPECT_FALSE(file->write_at(buf, offset).ok()) << offset;
  }
  EXPECT_TRUE(file->read_at(std::span<std::byte>(buf.data(), 0), 10'000).ok());
  EXPECT_EQ(read_back(path).size(), 10'000u);  // nothing written past the end
}

TEST(File, SharedCounterNumbersOperationsAcrossFiles) {
  sluice::testing::TempDir dir;
  const std::string a = write_file(dir, "a", pattern(8192, 1)), b = write_file(dir, "b", pattern(8192, 2));
  std::atomic<std::uint64_t> operations{0};
  FaultPlan plan;
  plan.fail_op = 3;
  plan.shared_operations = &operations;
  auto fa = File::open(a, quick(&plan, true)), fb = File::open(b, quick(&plan, true));
  std::vector<std::byte> buf(100);
  EXPECT_TRUE(fa->read_at(buf, 0).ok());    // operation 1
  EXPECT_TRUE(fb->write_at(buf, 0).ok());   // operation 2
  Status st = fa->read_at(buf, 200);        // operation 3: fails
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find(a), std::string::npos) << st.error().message;
  EXPECT_TRUE(fb->read_at(buf, 0).ok());    // operation 4
  EXPECT_EQ(operations.load(), 4u);
}

TEST(File, DirectFilesReadAndWriteAlignedBlocks) {
  sluice::testing::TempDir dir;
  const std::string path = write_file(dir, "f", pattern(64 * 1024, 4));
  FileOptions o = quick(nullptr, true);
  o.direct = true;  // buffered where the filesystem refuses O_DIRECT (tmpfs)
  auto file = File::open(path, o);
  void* p = nullptr;
  ASSERT_EQ(::posix_memalign(&p, 4096, 8192), 0);
  std::span<std::byte> block(static_cast<std::byte*>(p), 8192);
  const auto data = pattern(8192, 8);
  std::memcpy(block.data(), data.data(), block.size());
  EXPECT_TRUE(file->write_at(block, 16384).ok());
  std::memset(block.data(), 0, block.size());
  EXPECT_TRUE(file->read_at(block, 16384).ok());
  EXPECT_EQ(std::memcmp(block.data(), data.data(), block.size()), 0);
  std::free(p);
}

}  // namespace
}  // namespace sluice::io
