// Machine topology via hwloc: NUMA nodes, their cores, and the node nearest a CUDA device.
// A Topology is either this machine's or a synthetic one (hwloc_topology_set_synthetic) so
// multi-node placement logic can be tested on a single-node machine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct hwloc_topology;

namespace sluice::numa {

struct NodeInfo {
  unsigned index = 0;            // logical NUMA node index (0..n-1)
  unsigned os_index = 0;         // OS node number (what mbind/get_mempolicy use)
  std::vector<unsigned> cpus;    // OS indices of the processing units local to this node
  std::uint64_t memory_bytes = 0;
};

class Topology {
 public:
  // This machine. Throws std::runtime_error when hwloc cannot load a topology.
  static std::shared_ptr<Topology> load_this_system();
  // A synthetic topology, e.g. "numa:2 core:4 pu:1" (see hwloc_topology_set_synthetic).
  // Binding calls against it do not touch the OS; they record what would have been bound.
  static std::shared_ptr<Topology> load_synthetic(const std::string& description);

  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  bool is_this_system() const { return this_system_; }
  // Always at least one node: a machine without NUMA information reports a single node.
  const std::vector<NodeInfo>& nodes() const { return nodes_; }
  // Node by logical index. Throws std::out_of_range (with the index and node count) when
  // `index` >= nodes().size(); node indices often come from configuration.
  const NodeInfo& node(unsigned index) const;
  unsigned core_count() const { return core_count_; }
  unsigned pu_count() const { return pu_count_; }
  // Node nearest CUDA device `device` (by PCI locality) when CUDA and the device exist; else 0.
  unsigned node_near_cuda_device(int device) const;
  // One-line human summary: "1 NUMA node, 2 cores, 2 PUs".
  std::string summary() const;

  // The underlying hwloc topology, for numa/ internals. Read-only use is thread-safe.
  hwloc_topology* raw() const { return topo_; }

 private:
  Topology(hwloc_topology* topo, bool this_system);
  hwloc_topology* topo_ = nullptr;
  bool this_system_ = true;
  std::vector<NodeInfo> nodes_;
  unsigned core_count_ = 0;
  unsigned pu_count_ = 0;
};

}  // namespace sluice::numa
