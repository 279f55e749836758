// numa/ CUDA hooks for builds with CUDA: GPU-to-NUMA-node locality via the device's PCI bus id
// and hwloc's PCI objects, and host registration through compute/cuda.
#include "numa/cuda_support.hpp"

#include <cuda_runtime.h>
#include <hwloc.h>
#include <hwloc/cudart.h>

#include <cstdio>

#include "compute/cuda/device_probe.hpp"
#include "numa/hwloc_util.hpp"
#include "numa/topology.hpp"

namespace sluice::numa {

int cuda_device_count(std::string& reason) {
  cuda::DeviceProbe probe = cuda::probe_devices();
  reason = probe.reason;
  return probe.device_count;
}

namespace detail {
namespace {

// cudaDeviceGetPCIBusId writes "dddd:bb:dd.f" (13 bytes with the NUL); the docs ask for at
// least 13, and a larger buffer costs nothing.
constexpr int kPciBusIdChars = 32;

// Logical index of the first node of `topology` whose OS index is in `nodeset`.
std::optional<unsigned> first_node_in(const Topology& topology, hwloc_const_nodeset_t nodeset) {
  for (const NodeInfo& node : topology.nodes()) {
    if (hwloc_bitmap_isset(nodeset, node.os_index)) return node.index;
  }
  return std::nullopt;
}

// Logical index of the first node of `topology` that owns a PU in `cpuset`.
std::optional<unsigned> first_node_near(const Topology& topology, hwloc_const_cpuset_t cpuset) {
  for (const NodeInfo& node : topology.nodes()) {
    for (unsigned cpu : node.cpus) {
      if (hwloc_bitmap_isset(cpuset, cpu)) return node.index;
    }
  }
  return std::nullopt;
}

}  // namespace

bool wants_pci_objects() {
  std::string reason;
  return cuda_device_count(reason) > 0;
}

std::optional<unsigned> cuda_device_node(const Topology& topology, int device) {
  // A synthetic topology has no PCI devices, and the real GPU's locality says nothing about it.
  if (!topology.is_this_system()) return std::nullopt;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error: "no driver" is an answer, not a failure
    return std::nullopt;
  }
  if (device < 0 || device >= count) return std::nullopt;

  // Preferred: the PCI object hwloc discovered (Topology keeps important I/O objects when a
  // device exists); its first non-I/O ancestor (package, die, group) carries the local nodeset.
  char bus_id[kPciBusIdChars] = {};
  if (cudaDeviceGetPCIBusId(bus_id, kPciBusIdChars, device) == cudaSuccess) {
    unsigned domain = 0, bus = 0, dev = 0, func = 0;
    if (std::sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &func) == 4) {
      hwloc_obj_t pci = hwloc_get_pcidev_by_busid(topology.raw(), domain, bus, dev, func);
      hwloc_obj_t ancestor = pci ? hwloc_get_non_io_ancestor_obj(topology.raw(), pci) : nullptr;
      if (ancestor && ancestor->nodeset) {
        if (auto node = first_node_in(topology, ancestor->nodeset)) return node;
      }
    }
  }
  cudaGetLastError();

  // Fallback when hwloc has no PCI objects (I/O discovery unavailable, e.g. in some containers):
  // the device's local_cpus from sysfs, as hwloc's CUDA-runtime helper reads it.
  Bitmap cpuset = make_bitmap();
  if (hwloc_cudart_get_device_cpuset(topology.raw(), device, cpuset.get()) == 0) {
    if (auto node = first_node_near(topology, cpuset.get())) return node;
  }
  cudaGetLastError();
  return std::nullopt;
}

bool cuda_host_register(void* address, std::size_t bytes) {
  return cuda::host_register(address, bytes);
}

void cuda_host_unregister(void* address) { cuda::host_unregister(address); }

}  // namespace detail
}  // namespace sluice::numa
