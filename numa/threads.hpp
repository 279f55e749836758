// Placement of threads on NUMA nodes: binds the calling thread, and TBB arenas whose workers
// bind themselves to a node's cores when they enter the arena.
#pragma once

#include <memory>
#include <vector>

#include "numa/topology.hpp"

namespace sluice::numa {

// Binds the calling thread to the PUs of `node`. Against a synthetic topology nothing is bound
// and true is returned; cpus_for_node() tells what would be.
bool bind_current_thread(const Topology& topology, unsigned node);
// OS PU indices the calling thread may run on right now (sched_getaffinity).
std::vector<unsigned> current_thread_cpus();

// A TBB task arena whose worker threads bind themselves to `node` on entry.
class NodeArena {
 public:
  NodeArena(std::shared_ptr<Topology> topology, unsigned node, int max_concurrency);
  ~NodeArena();
  NodeArena(const NodeArena&) = delete;
  NodeArena& operator=(const NodeArena&) = delete;
  // Runs f inside the arena (blocking), e.g. arena.execute([&]{ tbb::parallel_for(...); }).
  template <typename F>
  void execute(F&& f);
  unsigned node() const { return node_; }
  int max_concurrency() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  unsigned node_;
  void execute_impl(void (*fn)(void*), void* ctx);
};

template <typename F>
void NodeArena::execute(F&& f) {
  execute_impl([](void* ctx) { (*static_cast<std::remove_reference_t<F>*>(ctx))(); }, &f);
}

}  // namespace sluice::numa
