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
  // Allocates `bytes` (rounded up to the page size) bound to `node` of `topology`.
  // Throws std::runtime_error (with the size and node) when allocation fails.
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
  bool locked() const { return locked_; }
  bool cuda_registered() const { return cuda_registered_; }

 private:
  std::shared_ptr<Topology> topology_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  unsigned node_ = 0;
  bool locked_ = false;
  bool cuda_registered_ = false;
  bool hwloc_allocated_ = false;
  void release() noexcept;
};

// NUMA node that currently backs the page at `address` on this system (-1 when unknown).
int node_of_address(const void* address);

}  // namespace sluice::numa
