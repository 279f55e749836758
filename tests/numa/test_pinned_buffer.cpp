// PinnedBuffer tests: alignment, rounding, residency on the chosen node, locking, move
// semantics, the synthetic-topology stand-in, and CUDA registration when a GPU is present.
#include "numa/pinned_buffer.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "common/units.hpp"
#include "numa/cuda_support.hpp"

namespace sluice::numa {
namespace {

constexpr const char* kTwoNodes = "numa:2 core:2 pu:1";
// One MiB plus one byte: not a page multiple, so rounding is exercised, and small enough to stay
// under the default 8 MiB RLIMIT_MEMLOCK so even non-root runs can lock it.
constexpr std::size_t kOddBytes = MiB + 1;

std::size_t page_bytes() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Whether mlock of `bytes` should succeed: root (CAP_IPC_LOCK) or within RLIMIT_MEMLOCK.
bool expect_lockable(std::size_t bytes) {
  if (geteuid() == 0) return true;
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return false;
  return limit.rlim_cur == RLIM_INFINITY || bytes <= limit.rlim_cur;
}

TEST(PinnedBuffer, NodeZeroIsAlignedRoundedWritableLockedAndLocal) {
  auto topo = Topology::load_this_system();
  PinnedBuffer buffer = PinnedBuffer::allocate(topo, 0, kOddBytes);
  ASSERT_NE(buffer.data(), nullptr);
  const std::size_t page = page_bytes();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % page, 0u);
  EXPECT_EQ(buffer.size(), align_up(kOddBytes, page));
  EXPECT_EQ(buffer.span().size(), buffer.size());
  EXPECT_EQ(buffer.node(), 0u);

  // Every byte, including the rounding tail, is ours to write and reads back.
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer.data()[i] = std::byte(i * 31 % 251);
  for (std::size_t i = 0; i < buffer.size(); i += 4093) {
    ASSERT_EQ(buffer.data()[i], std::byte(i * 31 % 251)) << "offset " << i;
  }
  if (expect_lockable(buffer.size())) {
    EXPECT_TRUE(buffer.locked());
  }

  if (!buffer.bound()) GTEST_SKIP() << "memory binding unsupported here (mbind refused)";
  const int node = node_of_address(buffer.data());
  if (node < 0) GTEST_SKIP() << "get_mempolicy unavailable: cannot check the backing node";
  EXPECT_EQ(node, static_cast<int>(topo->node(0).os_index));
  EXPECT_EQ(node_of_address(buffer.data() + buffer.size() - 1), node);
}

TEST(PinnedBuffer, UnlockedWhenNotAsked) {
  auto topo = Topology::load_this_system();
  const PinnedOptions options{.lock = false, .cuda_register = false};
  PinnedBuffer buffer = PinnedBuffer::allocate(topo, 0, page_bytes(), options);
  EXPECT_FALSE(buffer.locked());
  EXPECT_FALSE(buffer.cuda_registered());
  EXPECT_EQ(buffer.size(), page_bytes());
}

TEST(PinnedBuffer, ZeroBytesIsEmpty) {
  auto topo = Topology::load_this_system();
  PinnedBuffer buffer = PinnedBuffer::allocate(topo, 0, 0);
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_EQ(buffer.size(), 0u);
}

TEST(PinnedBuffer, MoveTransfersOwnership) {
  auto topo = Topology::load_this_system();
  PinnedBuffer a = PinnedBuffer::allocate(topo, 0, kOddBytes);
  std::byte* data = a.data();
  const std::size_t size = a.size();
  const bool locked = a.locked();
  std::memset(data, 0x5a, size);

  PinnedBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from must be empty
  EXPECT_EQ(a.size(), 0u);
  EXPECT_FALSE(a.locked());
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.size(), size);
  EXPECT_EQ(b.locked(), locked);

  // Assigning over a live buffer frees the old one (ASan reports a leak or double free if not).
  PinnedBuffer c = PinnedBuffer::allocate(topo, 0, page_bytes());
  c = std::move(b);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(c.data()[size - 1], std::byte{0x5a});

  PinnedBuffer& self = c;
  c = std::move(self);  // self-move keeps the buffer
  EXPECT_EQ(c.data(), data);

  PinnedBuffer empty;
  empty = std::move(c);
  EXPECT_EQ(empty.data(), data);
}

TEST(PinnedBuffer, SyntheticRecordsNodeAndBindsNothing) {
  auto topo = Topology::load_synthetic(kTwoNodes);
  PinnedBuffer buffer = PinnedBuffer::allocate(topo, 1, kOddBytes);
  ASSERT_NE(buffer.data(), nullptr);
  EXPECT_EQ(buffer.node(), 1u);
  EXPECT_EQ(buffer.size(), align_up(kOddBytes, page_bytes()));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % page_bytes(), 0u);
  EXPECT_FALSE(buffer.bound());
  EXPECT_FALSE(buffer.locked());
  EXPECT_FALSE(buffer.cuda_registered());
  std::memset(buffer.data(), 1, buffer.size());
}

TEST(PinnedBuffer, BadNodeThrows) {
  auto topo = Topology::load_synthetic(kTwoNodes);
  EXPECT_THROW(PinnedBuffer::allocate(topo, 2, page_bytes()), std::out_of_range);
}

TEST(PinnedBuffer, ImpossibleSizeThrowsWithSizeAndNode) {
  auto topo = Topology::load_this_system();
  // SIZE_MAX overflows when rounded up to a page (refused before allocating); 1 EiB is a page
  // multiple beyond any x86-64 or arm64 user address space, so mmap itself fails.
  constexpr std::size_t kOneEiB = std::size_t{1} << 60;
  for (std::size_t bytes : {SIZE_MAX, kOneEiB}) {
    try {
      (void)PinnedBuffer::allocate(topo, 0, bytes);
      ADD_FAILURE() << "expected std::runtime_error for " << bytes << " bytes";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(std::to_string(bytes)), std::string::npos) << what;
      EXPECT_NE(what.find("node 0"), std::string::npos) << what;
    }
  }
}

TEST(PinnedBufferGpu, RegisteredWithCudaNearTheDevice) {
  std::string reason;
  if (cuda_device_count(reason) == 0) GTEST_SKIP() << "no CUDA device: " << reason;
  auto topo = Topology::load_this_system();
  const unsigned node = topo->node_near_cuda_device(0);
  PinnedBuffer buffer = PinnedBuffer::allocate(topo, node, kOddBytes);
  EXPECT_EQ(buffer.node(), node);
  EXPECT_TRUE(buffer.cuda_registered());
}

}  // namespace
}  // namespace sluice::numa
