// Thread placement: binding the calling thread to a node's PUs, and NodeArena, a TBB arena whose
// observer binds each thread that enters it to the node and restores its old affinity on exit.
#include "numa/threads.hpp"

#include <hwloc.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_scheduler_observer.h>

#include "common/assert.hpp"
#include "numa/hwloc_util.hpp"

namespace sluice::numa {
namespace {

// sched_getaffinity fails with EINVAL when our mask is smaller than the kernel's. Start at
// glibc's CPU_SETSIZE and double up to 64Ki CPUs, well past Linux's largest NR_CPUS (8192).
constexpr std::size_t kInitialMaskCpus = CPU_SETSIZE;
constexpr std::size_t kMaxMaskCpus = std::size_t{1} << 16;

struct CpuSetFree {
  void operator()(cpu_set_t* set) const noexcept { CPU_FREE(set); }
};

// Binds every thread that enters `arena` to `cpus`, remembering each thread's previous binding
// so on_scheduler_exit can put it back (TBB workers move between arenas; a worker must not stay
// pinned to this node while it serves the default arena).
class BindingObserver final : public tbb::task_scheduler_observer {
 public:
  BindingObserver(tbb::task_arena& arena, std::shared_ptr<Topology> topology,
                  std::vector<unsigned> cpus)
      : tbb::task_scheduler_observer(arena),
        topology_(std::move(topology)),
        cpus_(std::move(cpus)),
        cpuset_(detail::cpuset_of(cpus_)) {
    arena.initialize();  // observing an arena that does not exist yet has nothing to attach to
    observe(true);
  }
  // Stop observing before the members die, so no callback runs on a half-destroyed observer.
  ~BindingObserver() override { observe(false); }

  const std::vector<unsigned>& cpus() const { return cpus_; }
  std::uint64_t entered() const { return entered_.load(std::memory_order_relaxed); }
  std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

  // Runs on the entering thread. Must not throw: TBB calls it from its scheduler.
  void on_scheduler_entry(bool /*is_worker*/) override {
    entered_.fetch_add(1, std::memory_order_relaxed);
    if (!topology_->is_this_system()) return;  // synthetic: cpus() is what would be bound
    hwloc_topology_t topo = topology_->raw();
    detail::Bitmap previous(hwloc_bitmap_alloc());
    if (previous && hwloc_get_cpubind(topo, previous.get(), HWLOC_CPUBIND_THREAD) != 0) {
      previous.reset();  // unknown old binding: the thread will stay on the node after exit
    }
    if (hwloc_set_cpubind(topo, cpuset_.get(), HWLOC_CPUBIND_THREAD) != 0) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      return;  // still on its old binding, nothing to restore
    }
    if (!previous) return;
    try {
      std::lock_guard lock(mutex_);
      saved_[std::this_thread::get_id()] = std::move(previous);
    } catch (...) {
      // Out of memory for the map entry: the thread keeps the node binding after exit, which
      // is a performance issue, not a correctness one.
    }
  }

  // Runs on the leaving thread; puts back the binding it had before on_scheduler_entry.
  void on_scheduler_exit(bool /*is_worker*/) override {
    if (!topology_->is_this_system()) return;
    detail::Bitmap previous;
    {
      std::lock_guard lock(mutex_);
      auto it = saved_.find(std::this_thread::get_id());
      if (it == saved_.end()) return;
      previous = std::move(it->second);
      saved_.erase(it);
    }
    // Best effort: if the OS refuses, the thread stays on this node, which is still valid.
    hwloc_set_cpubind(topology_->raw(), previous.get(), HWLOC_CPUBIND_THREAD);
  }

 private:
  std::shared_ptr<Topology> topology_;
  std::vector<unsigned> cpus_;
  detail::Bitmap cpuset_;
  std::atomic<std::uint64_t> entered_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::mutex mutex_;  // guards saved_
  std::unordered_map<std::thread::id, detail::Bitmap> saved_;
};

}  // namespace

std::vector<unsigned> cpus_for_node(const Topology& topology, unsigned node) {
  return topology.node(node).cpus;
}

bool bind_current_thread(const Topology& topology, unsigned node) {
  const NodeInfo& info = topology.node(node);
  if (!topology.is_this_system()) return true;  // synthetic: nothing to bind on this machine
  if (info.cpus.empty()) return false;           // memory-only node: no PU to run on
  detail::Bitmap cpuset = detail::cpuset_of(info.cpus);
  return hwloc_set_cpubind(topology.raw(), cpuset.get(), HWLOC_CPUBIND_THREAD) == 0;
}

std::vector<unsigned> current_thread_cpus() {
  for (std::size_t mask_cpus = kInitialMaskCpus; mask_cpus <= kMaxMaskCpus; mask_cpus *= 2) {
    std::unique_ptr<cpu_set_t, CpuSetFree> set(CPU_ALLOC(mask_cpus));
    if (!set) return {};
    const std::size_t mask_bytes = CPU_ALLOC_SIZE(mask_cpus);
    CPU_ZERO_S(mask_bytes, set.get());
    if (sched_getaffinity(0, mask_bytes, set.get()) == 0) {
      std::vector<unsigned> cpus;
      for (std::size_t cpu = 0; cpu < mask_cpus; ++cpu) {
        if (CPU_ISSET_S(cpu, mask_bytes, set.get())) cpus.push_back(static_cast<unsigned>(cpu));
      }
      return cpus;
    }
    // EINVAL: the kernel's mask is larger than ours, retry with a larger one. Anything else
    // (EFAULT, ESRCH) cannot happen for the calling thread; report "unknown" as empty.
    if (errno != EINVAL) return {};
  }
  return {};
}

struct NodeArena::Impl {
  Impl(std::shared_ptr<Topology> topology, std::vector<unsigned> cpus, int concurrency)
      : arena(concurrency), observer(arena, std::move(topology), std::move(cpus)) {}
  // Declared before the observer: the observer stops observing before the arena goes away.
  tbb::task_arena arena;
  BindingObserver observer;
};

NodeArena::NodeArena(std::shared_ptr<Topology> topology, unsigned node, int max_concurrency)
    : node_(node) {
  SLUICE_ASSERT_MSG(topology != nullptr, "NodeArena needs a topology");
  std::vector<unsigned> cpus = cpus_for_node(*topology, node);
  if (cpus.empty()) {
    throw std::invalid_argument(
        fmt::format("numa: NUMA node {} has no PUs, so no arena can run on it", node));
  }
  // More threads than PUs would only time-slice on the node's cores.
  const int node_pus = static_cast<int>(cpus.size());
  const int concurrency = max_concurrency <= 0 ? node_pus : std::min(max_concurrency, node_pus);
  impl_ = std::make_unique<Impl>(std::move(topology), std::move(cpus), concurrency);
}

NodeArena::~NodeArena() = default;

int NodeArena::max_concurrency() const { return impl_->arena.max_concurrency(); }

const std::vector<unsigned>& NodeArena::binding_cpus() const { return impl_->observer.cpus(); }

std::uint64_t NodeArena::threads_entered() const { return impl_->observer.entered(); }

std::uint64_t NodeArena::bind_failures() const { return impl_->observer.failures(); }

void NodeArena::execute_impl(void (*fn)(void*), void* ctx) {
  impl_->arena.execute([fn, ctx] { fn(ctx); });
}

}  // namespace sluice::numa
