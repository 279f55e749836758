// Placement of threads on NUMA nodes: binds the calling thread, and TBB arenas whose workers
// bind themselves to a node's cores when they enter the arena.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "numa/topology.hpp"

namespace sluice::numa {

// OS PU indices of `node` (what binding to it means). Throws std::out_of_range for a bad node.
std::vector<unsigned> cpus_for_node(const Topology& topology, unsigned node);

// Binds the calling thread to the PUs of `node`; false when the OS refuses (or the node has no
// PUs). Throws std::out_of_range for a bad node. Against a synthetic topology nothing is bound
// and true is returned; cpus_for_node() tells what would be.
bool bind_current_thread(const Topology& topology, unsigned node);
// OS PU indices the calling thread may run on right now (sched_getaffinity).
std::vector<unsigned> current_thread_cpus();

// A TBB task arena whose worker threads bind themselves to `node` on entry and return to their
// previous affinity on exit. Against a synthetic topology nothing is bound; binding_cpus() says
// what would be. A worker still inside the arena when it is destroyed keeps the node binding
// until it next enters a NodeArena (TBB does not tell an observer about threads that leave after
// it stops observing).
class NodeArena {
 public:
  // max_concurrency is clamped to [1, PUs of the node]; <= 0 means "one thread per PU".
  // Throws std::out_of_range for a bad node and std::invalid_argument for a node without PUs.
  NodeArena(std::shared_ptr<Topology> topology, unsigned node, int max_concurrency);
  ~NodeArena();
  NodeArena(const NodeArena&) = delete;
  NodeArena& operator=(const NodeArena&) = delete;
  // Runs f inside the arena (blocking), e.g. arena.execute([&]{ tbb::parallel_for(...); }).
  template <typename F>
  void execute(F&& f);
  unsigned node() const { return node_; }
  int max_concurrency() const;
  // OS PU indices every thread entering the arena is (or, synthetic, would be) bound to.
  const std::vector<unsigned>& binding_cpus() const;
  // Times a thread entered the arena (external callers of execute() included). Thread-safe.
  std::uint64_t threads_entered() const;
  // Times binding an entering thread failed (the thread then runs unbound). Thread-safe.
  std::uint64_t bind_failures() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  unsigned node_;
  void execute_impl(void (*fn)(void*), void* ctx);
};

template <typename F>
void NodeArena::execute(F&& f) {
  // The const_cast only erases the type for the trampoline; the lambda restores the exact type
  // (const included), so a const callable is never called through a non-const path.
  using Callable = std::remove_reference_t<F>;
  execute_impl([](void* ctx) { (*static_cast<Callable*>(ctx))(); },
               const_cast<void*>(static_cast<const void*>(std::addressof(f))));
}

}  // namespace sluice::numa
