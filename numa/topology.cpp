// Topology: loads this machine's (or a synthetic) hwloc topology and flattens what sluice needs
// (NUMA nodes with their PUs and memory, core/PU counts) into plain vectors.
#include "numa/topology.hpp"

#include <hwloc.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "numa/cuda_support.hpp"
#include "numa/hwloc_util.hpp"

namespace sluice::numa {

namespace {

// Owns a topology between hwloc_topology_init and the hand-off to Topology.
struct TopologyGuard {
  hwloc_topology_t topo = nullptr;
  ~TopologyGuard() {
    if (topo) hwloc_topology_destroy(topo);
  }
  hwloc_topology_t release() { return std::exchange(topo, nullptr); }
};

hwloc_topology_t init_topology(const char* what) {
  hwloc_topology_t topo = nullptr;
  if (hwloc_topology_init(&topo) != 0) {
    throw std::runtime_error(fmt::format("numa: hwloc_topology_init failed for {}: {}", what,
                                         std::strerror(errno)));
  }
  return topo;
}

void load_topology(hwloc_topology_t topo, const char* what) {
  if (hwloc_topology_load(topo) != 0) {
    throw std::runtime_error(
        fmt::format("numa: hwloc_topology_load failed for {}: {}", what, std::strerror(errno)));
  }
}

const char* plural(unsigned count) { return count == 1 ? "" : "s"; }

}  // namespace

std::shared_ptr<Topology> Topology::load_this_system() {
  constexpr const char* kWhat = "this system";
  TopologyGuard guard{init_topology(kWhat)};
  // PCI devices are filtered out by default. With a CUDA device, keep the important ones (GPUs,
  // NICs, NVMe; cheaper than KEEP_ALL) so node_near_cuda_device can find the GPU's PCI object.
  // This asks the CUDA runtime for its device count (initializing it) in CUDA builds.
  if (detail::wants_pci_objects()) {
    hwloc_topology_set_io_types_filter(guard.topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  }
  load_topology(guard.topo, kWhat);
  return std::shared_ptr<Topology>(new Topology(guard.release(), true));
}

std::shared_ptr<Topology> Topology::load_synthetic(const std::string& description) {
  const std::string what = fmt::format("synthetic topology \"{}\"", description);
  TopologyGuard guard{init_topology(what.c_str())};
  if (hwloc_topology_set_synthetic(guard.topo, description.c_str()) != 0) {
    throw std::runtime_error(fmt::format("numa: invalid {}", what));
  }
  load_topology(guard.topo, what.c_str());
  return std::shared_ptr<Topology>(new Topology(guard.release(), false));
}

Topology::Topology(hwloc_topology* topo, bool this_system)
    : topo_(topo), this_system_(this_system) {
  const hwloc_obj_t root = hwloc_get_root_obj(topo_);
  const int node_count = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < node_count; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo_, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    NodeInfo node;
    node.index = static_cast<unsigned>(i);
    node.os_index = obj->os_index;
    // A memory-only node (CXL, HBM exposed as its own node) has an empty cpuset.
    if (obj->cpuset) node.cpus = detail::indices_of(obj->cpuset);
    node.memory_bytes = obj->attr ? obj->attr->numanode.local_memory : 0;
    nodes_.push_back(std::move(node));
  }
  // hwloc 2 always reports at least one NUMA node, but callers index nodes()[0] unconditionally,
  // so make that hold even if a backend ever reports none: one node owning every PU.
  if (nodes_.empty()) {
    NodeInfo node;
    if (root->cpuset) node.cpus = detail::indices_of(root->cpuset);
    node.memory_bytes = root->total_memory;
    nodes_.push_back(std::move(node));
  }
  const int pus = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_PU);
  const int cores = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_CORE);
  pu_count_ = pus > 0 ? static_cast<unsigned>(pus) : 1;
  // Some platforms expose no core level (PUs only); then each PU counts as a core.
  core_count_ = cores > 0 ? static_cast<unsigned>(cores) : pu_count_;
}

Topology::~Topology() {
  if (topo_) hwloc_topology_destroy(topo_);
}

const NodeInfo& Topology::node(unsigned index) const {
  if (index >= nodes_.size()) {
    throw std::out_of_range(fmt::format("numa: node {} out of range (topology has {} node{})",
                                        index, nodes_.size(),
                                        plural(static_cast<unsigned>(nodes_.size()))));
  }
  return nodes_[index];
}

unsigned Topology::node_near_cuda_device(int device) const {
  return detail::cuda_device_node(*this, device).value_or(0);
}

std::string Topology::summary() const {
  const auto node_count = static_cast<unsigned>(nodes_.size());
  return fmt::format("{} NUMA node{}, {} core{}, {} PU{}", node_count, plural(node_count),
                     core_count_, plural(core_count_), pu_count_, plural(pu_count_));
}

}  // namespace sluice::numa
