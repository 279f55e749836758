#include "compute/executor.hpp"

#include <algorithm>

#include <oneapi/tbb/global_control.h>

namespace sluice::compute {

Executor::Executor(int threads) : arena_(threads > 0 ? threads : tbb::task_arena::automatic) {
  arena_.initialize();  // an automatic arena knows its size only once initialized
  // An arena larger than TBB's global thread limit never gets more workers than the limit
  // allows (the limit counts the calling thread too).
  const auto limit = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  concurrency_ = std::max(1, int(std::min<std::size_t>(std::size_t(arena_.max_concurrency()), limit)));
}

std::atomic<TaskProbe> detail::task_probe{nullptr};

void set_task_probe(TaskProbe probe) { detail::task_probe.store(probe, std::memory_order_relaxed); }

}  // namespace sluice::compute
