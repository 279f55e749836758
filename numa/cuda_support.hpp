// The CUDA-facing pieces of numa/: which NUMA node a GPU hangs off, and page-locking host memory
// for DMA. Exactly one implementation is linked: cuda_support.cpp when the build has CUDA
// (SLUICE_HAVE_CUDA), cuda_support_none.cpp otherwise, so callers never need an #ifdef.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace sluice::numa {

class Topology;

// Number of usable CUDA devices; 0 (with the runtime's reason in `reason`) when the build has
// no CUDA, there is no driver, or no device. Thread-safe.
int cuda_device_count(std::string& reason);

namespace detail {
// Whether Topology::load_this_system should discover PCI objects: only when a CUDA device exists,
// since cuda_device_node is their only user, and hwloc 2.9's PCI discovery costs a bus scan and
// leaks memory inside libpciaccess (open-mpi/hwloc#636), which fails sanitizer builds.
bool wants_pci_objects();
// Logical index of the NUMA node nearest `device`, or nullopt when it cannot be determined
// (no CUDA, no such device, synthetic topology, no PCI locality information).
std::optional<unsigned> cuda_device_node(const Topology& topology, int device);
// cudaHostRegister; false when the build has no CUDA, there is no device, or registration fails.
bool cuda_host_register(void* address, std::size_t bytes);
// cudaHostUnregister of an address cuda_host_register accepted.
void cuda_host_unregister(void* address);
}  // namespace detail

}  // namespace sluice::numa
