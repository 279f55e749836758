// The one place compute work gets its threads: a TBB task arena of a fixed number of threads,
// owned by whoever sets a run up (engine/session.cpp, one per session; a Transformer built on its
// own CPU backend owns one there) and lent to the compute backend, which runs every parallel
// kernel inside it. So `-t N` bounds every kernel (matmul, attention rows, attention heads) and
// the memory planner can count per-thread scratch from concurrency() instead of guessing from the
// machine's cores.
//
// Kernels (compute/cpu/matmul.hpp, ops.hpp) run their tbb::parallel_for loops in the caller's
// arena; an Executor's run() is how a caller makes that arena this one. Other TBB work stays out:
// the prefetcher decodes frames in its own arena (prefetch/prefetcher.hpp says why).
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

namespace sluice::compute {

class Executor {
 public:
  // threads <= 0: TBB's default (every core this process may run on). More threads than TBB's
  // global limit are accepted and capped by it (concurrency() tells the cap).
  explicit Executor(int threads = 0);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Most threads that run work inside at once, the calling thread included: the bound on per-
  // thread scratch (engine/planner.cpp's attention scores).
  int concurrency() const { return concurrency_; }

  // Runs f() inside the arena and returns when it (and every task it spawned) is done. f's
  // parallel loops use at most concurrency() threads. Called from inside the arena (nested), it
  // just calls f. Thread-safe: concurrent callers share the threads. f must not throw across
  // TBB tasks (STYLE.md): it may throw on the calling thread, and the exception propagates.
  template <typename F>
  void run(F&& f) {
    arena_.execute(std::forward<F>(f));
  }

  // body(i) for i in [begin, end), in parallel inside the arena.
  template <typename F>
  void parallel_for(std::int64_t begin, std::int64_t end, F&& body) {
    run([&] { tbb::parallel_for(begin, end, body); });
  }

 private:
  tbb::task_arena arena_;
  int concurrency_ = 1;
};

// ---- test hook ----
// Every parallel task of the CPU kernels calls note_task() before it computes, so a test can
// record which threads ran kernel work (and in which arena). Null in production: one relaxed
// atomic load per task. set_task_probe is for tests only; the probe must be thread-safe.
using TaskProbe = void (*)();
void set_task_probe(TaskProbe probe);
namespace detail {
extern std::atomic<TaskProbe> task_probe;
}
inline void note_task() {
  if (TaskProbe probe = detail::task_probe.load(std::memory_order_relaxed)) probe();
}

}  // namespace sluice::compute
