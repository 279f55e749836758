// Thread placement tests: binding the calling thread, and NodeArena workers running only on
// their node's PUs (real system) or recording the binding without applying it (synthetic).
#include "numa/threads.hpp"

#include <gtest/gtest.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "affinity_guard.hpp"

namespace sluice::numa {
namespace {

constexpr const char* kTwoNodes = "numa:2 core:2 pu:1";
// Enough chunks of work that TBB hands some of them to worker threads.
constexpr int kIterations = 10000;
constexpr int kGrain = 16;

// Runs body(i) for every i in [0, kIterations) with tbb::parallel_for, kGrain iterations a task.
template <typename Body>
void parallel_iterations(Body&& body) {
  tbb::parallel_for(tbb::blocked_range<int>(0, kIterations, kGrain),
                    [&](const tbb::blocked_range<int>& range) {
                      for (int i = range.begin(); i != range.end(); ++i) body(i);
                    });
}

bool within(const std::vector<unsigned>& cpus, const std::vector<unsigned>& allowed) {
  return std::all_of(cpus.begin(), cpus.end(), [&](unsigned cpu) {
    return std::find(allowed.begin(), allowed.end(), cpu) != allowed.end();
  });
}

TEST(Threads, CurrentThreadCpusMatchesAffinity) {
  const std::vector<unsigned> cpus = current_thread_cpus();
  ASSERT_FALSE(cpus.empty());
  EXPECT_TRUE(std::is_sorted(cpus.begin(), cpus.end()));
  EXPECT_LE(cpus.size(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST(Threads, BindCurrentThreadToNodeZero) {
  testing::AffinityGuard guard;
  auto topo = Topology::load_this_system();
  ASSERT_TRUE(bind_current_thread(*topo, 0));
  EXPECT_EQ(current_thread_cpus(), topo->node(0).cpus);
}

TEST(Threads, BindToSyntheticNodeChangesNothing) {
  testing::AffinityGuard guard;
  auto topo = Topology::load_synthetic(kTwoNodes);
  EXPECT_TRUE(bind_current_thread(*topo, 1));
  EXPECT_EQ(current_thread_cpus(), guard.saved());
  EXPECT_EQ(cpus_for_node(*topo, 1), topo->node(1).cpus);
  EXPECT_THROW(bind_current_thread(*topo, 2), std::out_of_range);
}

TEST(NodeArena, WorkersRunOnNodeZero) {
  auto topo = Topology::load_this_system();
  const std::vector<unsigned> node_cpus = topo->node(0).cpus;
  NodeArena arena(topo, 0, 0);
  EXPECT_EQ(arena.node(), 0u);
  EXPECT_EQ(arena.max_concurrency(), static_cast<int>(node_cpus.size()));
  EXPECT_EQ(arena.binding_cpus(), node_cpus);

  std::atomic<int> outside{0};
  std::mutex mutex;
  std::set<std::thread::id> threads;
  arena.execute([&] {
    parallel_iterations([&](int) {
      if (!within(current_thread_cpus(), node_cpus)) outside.fetch_add(1);
      std::lock_guard lock(mutex);
      threads.insert(std::this_thread::get_id());
    });
  });
  EXPECT_EQ(outside.load(), 0) << "iterations ran on PUs outside node 0";
  EXPECT_GE(arena.threads_entered(), 1u);
  EXPECT_EQ(arena.bind_failures(), 0u);
  std::printf("NodeArena: %zu threads ran the loop, %llu arena entries\n", threads.size(),
              static_cast<unsigned long long>(arena.threads_entered()));
}

TEST(NodeArena, CallerIsBoundInsideAndRestoredAfter) {
  auto topo = Topology::load_this_system();
  const std::vector<unsigned> node_cpus = topo->node(0).cpus;
  if (node_cpus.size() < 2) GTEST_SKIP() << "node 0 has one PU: binding cannot be observed";
  testing::AffinityGuard guard;
  // Narrow the caller to one PU so binding to the whole node, and undoing it, is visible.
  const std::vector<unsigned> narrow{node_cpus.front()};
  ASSERT_TRUE(testing::set_thread_cpus(narrow));

  NodeArena arena(topo, 0, 1);  // one slot: the calling thread runs everything
  EXPECT_EQ(arena.max_concurrency(), 1);
  std::vector<unsigned> inside;
  arena.execute([&] { inside = current_thread_cpus(); });
  EXPECT_EQ(inside, node_cpus);
  EXPECT_EQ(current_thread_cpus(), narrow) << "caller's affinity not restored after execute";
}

TEST(NodeArena, ConcurrencyClampedToNodePus) {
  auto topo = Topology::load_synthetic(kTwoNodes);
  NodeArena arena(topo, 1, 64);
  EXPECT_EQ(arena.max_concurrency(), 2);  // node 1 has two PUs
}

TEST(NodeArena, SyntheticRecordsBindingWithoutApplyingIt) {
  testing::AffinityGuard guard;
  auto topo = Topology::load_synthetic(kTwoNodes);
  NodeArena arena(topo, 1, 0);
  EXPECT_EQ(arena.node(), 1u);
  EXPECT_EQ(arena.binding_cpus(), topo->node(1).cpus);
  EXPECT_EQ(arena.binding_cpus(), cpus_for_node(*topo, 1));

  // Synthetic PUs need not exist here, so the work must run with the threads' real affinity.
  std::atomic<int> sum{0};
  arena.execute([&] { parallel_iterations([&](int) { sum.fetch_add(1); }); });
  EXPECT_EQ(sum.load(), kIterations);
  EXPECT_GE(arena.threads_entered(), 1u);
  EXPECT_EQ(arena.bind_failures(), 0u);
  EXPECT_EQ(current_thread_cpus(), guard.saved());
}

TEST(NodeArena, BadNodeThrows) {
  auto topo = Topology::load_synthetic(kTwoNodes);
  EXPECT_THROW(NodeArena(topo, 2, 0), std::out_of_range);
}

}  // namespace
}  // namespace sluice::numa
