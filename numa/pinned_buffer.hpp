// Page-aligned host buffers bound to a NUMA node (hwloc membind), locked in RAM (mlock), and
// registered with CUDA when a device is present. Move-only; memory is freed on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "numa/topology.hpp"

namespace sluice::numa {

struct PinnedOptions {
  bool lock = true;            // mlock; failure (RLIMIT_MEMLOCK) is reported, not fatal
  bool cuda_register = true;   // cudaHostRegister when built with CUDA and a device exists
};

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // Allocates `bytes` (rounded up to the page size) bound to `node` of `topology`, with every
  // page touched so it is resident on that node. bytes == 0 gives an empty buffer.
  // Against a synthetic topology the memory is ordinary page-aligned memory: nothing is bound,
  // locked or registered; node() records the node that would have been used.
  // Throws std::runtime_error (with the size and node) when allocation fails, and
  // std::out_of_range when `node` is not a node of `topology`. Thread-safe.
  static PinnedBuffer allocate(const std::shared_ptr<Topology>& topology, unsigned node,
                               std::size_t bytes, PinnedOptions options = {});
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }
  unsigned node() const { return node_; }
  // Whether the pages are bound to node() (false: binding unsupported or synthetic topology).
  bool bound() const { return bound_; }
  // Whether mlock succeeded (false: not asked, RLIMIT_MEMLOCK too low, or synthetic topology).
  bool locked() const { return locked_; }
  bool cuda_registered() const { return cuda_registered_; }

 private:
  std::shared_ptr<Topology> topology_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  unsigned node_ = 0;
  bool bound_ = false;
  bool locked_ = false;
  bool cuda_registered_ = false;
  bool hwloc_allocated_ = false;
  void* map_base_ = nullptr;  // the mapping data_ was carved from (2 MiB-aligned inside it)
  std::size_t map_bytes_ = 0;
  void release() noexcept;
};

// OS index of the NUMA node that currently backs the page at `address` on this system, faulting
// the page in if needed (-1 when unknown, e.g. get_mempolicy is blocked by a seccomp filter).
int node_of_address(const void* address);

}  // namespace sluice::numa
