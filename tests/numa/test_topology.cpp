// Topology tests: this machine's topology is consistent with what the OS reports, a synthetic
// two-node topology has disjoint nodes, and CUDA locality degrades to node 0 without a GPU.
#include "numa/topology.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "numa/cuda_support.hpp"
#include "numa/threads.hpp"

namespace sluice::numa {
namespace {

// Two nodes of two single-PU cores: the smallest shape with something to keep apart.
constexpr const char* kTwoNodes = "numa:2 core:2 pu:1";

TEST(Topology, ThisSystemHasNodesAndAllPus) {
  auto topo = Topology::load_this_system();
  ASSERT_TRUE(topo->is_this_system());
  ASSERT_GE(topo->nodes().size(), 1u);
  // hwloc counts the PUs this process may use (cgroup cpuset); that equals either the online
  // CPU count or our affinity mask, depending on how the container restricts us.
  const unsigned online = std::thread::hardware_concurrency();
  const auto affinity = static_cast<unsigned>(current_thread_cpus().size());
  EXPECT_TRUE(topo->pu_count() == online || topo->pu_count() == affinity)
      << "hwloc PUs " << topo->pu_count() << ", hardware_concurrency " << online
      << ", affinity " << affinity;
  EXPECT_GE(topo->pu_count(), topo->core_count());
  EXPECT_GE(topo->core_count(), 1u);

  unsigned node_pus = 0;
  for (std::size_t i = 0; i < topo->nodes().size(); ++i) {
    const NodeInfo& node = topo->nodes()[i];
    EXPECT_EQ(node.index, i);
    EXPECT_TRUE(std::is_sorted(node.cpus.begin(), node.cpus.end()));
    node_pus += static_cast<unsigned>(node.cpus.size());
  }
  EXPECT_EQ(node_pus, topo->pu_count());
  EXPECT_GT(topo->nodes()[0].memory_bytes, 0u);
  EXPECT_NE(topo->summary().find("NUMA node"), std::string::npos) << topo->summary();
}

TEST(Topology, SyntheticTwoNodesAreDisjoint) {
  auto topo = Topology::load_synthetic(kTwoNodes);
  EXPECT_FALSE(topo->is_this_system());
  ASSERT_EQ(topo->nodes().size(), 2u);
  EXPECT_EQ(topo->core_count(), 4u);
  EXPECT_EQ(topo->pu_count(), 4u);
  EXPECT_EQ(topo->summary(), "2 NUMA nodes, 4 cores, 4 PUs");

  const NodeInfo& n0 = topo->node(0);
  const NodeInfo& n1 = topo->node(1);
  EXPECT_EQ(n0.index, 0u);
  EXPECT_EQ(n1.index, 1u);
  EXPECT_NE(n0.os_index, n1.os_index);
  ASSERT_EQ(n0.cpus.size(), 2u);
  ASSERT_EQ(n1.cpus.size(), 2u);
  for (unsigned cpu : n0.cpus) {
    EXPECT_EQ(std::count(n1.cpus.begin(), n1.cpus.end(), cpu), 0) << "PU " << cpu << " in both";
  }
  EXPECT_GT(n1.memory_bytes, 0u);
  EXPECT_EQ(cpus_for_node(*topo, 1), n1.cpus);
}

TEST(Topology, BadNodeIndexThrows) {
  auto topo = Topology::load_synthetic(kTwoNodes);
  EXPECT_THROW(topo->node(2), std::out_of_range);
  EXPECT_THROW(cpus_for_node(*topo, 2), std::out_of_range);
}

TEST(Topology, InvalidSyntheticDescriptionThrows) {
  try {
    Topology::load_synthetic("numa:two bogus:");
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("numa:two bogus:"), std::string::npos) << e.what();
  }
}

TEST(Topology, CudaLocalityWithoutDeviceIsNodeZero) {
  auto synthetic = Topology::load_synthetic(kTwoNodes);
  EXPECT_EQ(synthetic->node_near_cuda_device(0), 0u);
  auto topo = Topology::load_this_system();
  EXPECT_EQ(topo->node_near_cuda_device(-1), 0u);
  EXPECT_EQ(topo->node_near_cuda_device(1 << 20), 0u);
}

TEST(TopologyGpu, CudaDeviceHasANearNode) {
  std::string reason;
  if (cuda_device_count(reason) == 0) GTEST_SKIP() << "no CUDA device: " << reason;
  auto topo = Topology::load_this_system();
  EXPECT_LT(topo->node_near_cuda_device(0), topo->nodes().size());
}

}  // namespace
}  // namespace sluice::numa
