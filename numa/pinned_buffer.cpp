// PinnedBuffer: page-aligned host memory bound to a NUMA node with hwloc, touched so the pages
// really live there, mlocked so they are never swapped out under the prefetcher, and registered
// with CUDA so device copies from it can be asynchronous DMA.
#include "numa/pinned_buffer.hpp"

#include <hwloc.h>
#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "common/assert.hpp"
#include "common/units.hpp"
#include "numa/cuda_support.hpp"
#include "numa/hwloc_util.hpp"

namespace sluice::numa {
namespace {

// Used only if sysconf cannot tell the page size: 4 KiB is the base page on x86-64 and the
// smallest on arm64, so rounding to it is never smaller than a real page boundary there.
constexpr std::size_t kFallbackPageBytes = 4096;

std::size_t page_bytes() {
  const long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? static_cast<std::size_t>(page) : kFallbackPageBytes;
}

// One write per page faults every page in now, under the buffer's memory policy, so the node
// is decided here and not by whichever thread happens to touch the page first.
// Transparent huge page size on x86-64.
constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

void touch_pages(std::byte* data, std::size_t size, std::size_t page) {
  volatile std::byte* pages = data;
  for (std::size_t offset = 0; offset < size; offset += page) pages[offset] = std::byte{0};
}

std::runtime_error allocation_error(std::size_t bytes, unsigned node, const std::string& why) {
  return std::runtime_error(
      fmt::format("numa: cannot allocate {} bytes on NUMA node {}: {}", bytes, node, why));
}

}  // namespace

PinnedBuffer PinnedBuffer::allocate(const std::shared_ptr<Topology>& topology, unsigned node,
                                    std::size_t bytes, PinnedOptions options) {
  SLUICE_ASSERT_MSG(topology != nullptr, "PinnedBuffer::allocate needs a topology");
  const NodeInfo& info = topology->node(node);  // throws std::out_of_range for a bad node

  PinnedBuffer buffer;
  buffer.topology_ = topology;
  buffer.node_ = node;
  if (bytes == 0) return buffer;

  const std::size_t page = page_bytes();
  if (bytes > std::numeric_limits<std::size_t>::max() - (page - 1)) {
    throw allocation_error(bytes, node,
                           fmt::format("size overflows when rounded up to {}-byte pages", page));
  }
  const std::size_t size = static_cast<std::size_t>(align_up(bytes, page));

  if (!topology->is_this_system()) {
    // A synthetic topology describes some other machine: its node numbers mean nothing to this
    // kernel, so the memory is ordinary anonymous pages (page-aligned by mmap), bound nowhere.
    void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) throw allocation_error(size, node, std::strerror(errno));
    buffer.data_ = static_cast<std::byte*>(data);
    buffer.size_ = size;
    buffer.hwloc_allocated_ = false;
    return buffer;
  }

  hwloc_topology_t topo = topology->raw();
  detail::Bitmap nodeset = detail::nodeset_of(info.os_index);
  // Our own mapping, 2 MiB-aligned and advised for transparent huge pages, then bound with
  // hwloc_set_area_membind. Measured on the dev VM (virtio disk): O_DIRECT reads into 4 KiB-page
  // buffers from hwloc_alloc_membind ran at ~1.2 GB/s, into huge-page buffers at ~2.3 GB/s: the
  // device maps 512x fewer pages per 1 MiB request.
  const std::size_t mapped = size + kHugePageBytes;
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) throw allocation_error(size, node, std::strerror(errno));
  auto* data = reinterpret_cast<std::byte*>(
      (reinterpret_cast<std::uintptr_t>(base) + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes);
  madvise(data, size, MADV_HUGEPAGE);  // advisory: without THP the buffer still works
  // STRICT so a binding the OS cannot enforce fails here instead of silently landing elsewhere;
  // we then record bound() == false. ENOSYS: no membind support; EXDEV: cannot be enforced;
  // EPERM: mbind blocked (container seccomp). Unbound pages still work, just possibly remote.
  const bool bound = hwloc_set_area_membind(topo, data, size, nodeset.get(), HWLOC_MEMBIND_BIND,
                                            HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT) == 0;
  // From here the buffer owns the memory, so an exception below still frees it.
  buffer.data_ = data;
  buffer.size_ = size;
  buffer.map_base_ = base;
  buffer.map_bytes_ = mapped;
  buffer.hwloc_allocated_ = false;
  buffer.bound_ = bound;

  touch_pages(buffer.data_, size, page);

  if (options.lock) {
    // ENOMEM/EPERM: the size exceeds RLIMIT_MEMLOCK and we lack CAP_IPC_LOCK; EAGAIN: some pages
    // could not be locked. Not fatal: the buffer works, it may just be paged out under pressure.
    buffer.locked_ = mlock(data, size) == 0;
  }
  if (options.cuda_register) {
    // false without CUDA or a device; copies then go through the driver's staging buffers.
    buffer.cuda_registered_ = detail::cuda_host_register(data, size);
  }
  return buffer;
}

PinnedBuffer::~PinnedBuffer() { release(); }

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : topology_(std::move(other.topology_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      node_(std::exchange(other.node_, 0)),
      bound_(std::exchange(other.bound_, false)),
      locked_(std::exchange(other.locked_, false)),
      cuda_registered_(std::exchange(other.cuda_registered_, false)),
      hwloc_allocated_(std::exchange(other.hwloc_allocated_, false)),
      map_base_(std::exchange(other.map_base_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    release();
    topology_ = std::move(other.topology_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    node_ = std::exchange(other.node_, 0);
    bound_ = std::exchange(other.bound_, false);
    locked_ = std::exchange(other.locked_, false);
    cuda_registered_ = std::exchange(other.cuda_registered_, false);
    hwloc_allocated_ = std::exchange(other.hwloc_allocated_, false);
    map_base_ = std::exchange(other.map_base_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
  }
  return *this;
}

void PinnedBuffer::release() noexcept {
  if (data_) {
    // Undo in reverse order of allocate(): CUDA must forget the range before it is unmapped.
    if (cuda_registered_) detail::cuda_host_unregister(data_);
    if (locked_) munlock(data_, size_);
    if (map_base_ != nullptr) {
      munmap(map_base_, map_bytes_);
    } else {
      munmap(data_, size_);
    }
  }
  topology_.reset();
  data_ = nullptr;
  size_ = 0;
  node_ = 0;
  bound_ = false;
  locked_ = false;
  cuda_registered_ = false;
  hwloc_allocated_ = false;
  map_base_ = nullptr;
  map_bytes_ = 0;
}

int node_of_address(const void* address) {
  int node = -1;
  // get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR) returns the node of the page at `address`. The raw
  // syscall avoids a libnuma dependency for this one call. Failure (ENOSYS: no NUMA support in
  // the kernel; EPERM: seccomp; EFAULT: unmapped address) means "unknown".
  const long rc = syscall(SYS_get_mempolicy, &node, nullptr, 0UL, const_cast<void*>(address),
                          static_cast<unsigned long>(MPOL_F_NODE | MPOL_F_ADDR));
  return rc == 0 ? node : -1;
}

}  // namespace sluice::numa
