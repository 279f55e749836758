// One executor bounds every compute thread (compute/executor.hpp): a forward pass on a CPU
// backend whose executor has N threads runs its kernel work on at most N threads, all inside
// that executor's arena, and `-t 1` (SessionOptions::threads = 1) runs it on exactly one.
//
// The kernels report each parallel task through compute::set_task_probe; the probe records the
// thread and the concurrency of the arena the task ran in. The arena check is what fails
// deterministically when a kernel escapes to TBB's default arena (which has every core), even on
// a run where TBB happened to schedule everything on one thread.
#include <gtest/gtest.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>

#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "compute/cpu/cpu_backend.hpp"
#include "compute/executor.hpp"
#include "engine/forward.hpp"
#include "engine/session.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

// What the probe saw: the threads that ran kernel tasks, and each task's arena concurrency.
struct Seen {
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::set<int> arena_concurrency;
  std::int64_t tasks = 0;
};
Seen seen;

void record_task() {
  const int concurrency = tbb::this_task_arena::max_concurrency();
  std::lock_guard lock(seen.mutex);
  seen.threads.insert(std::this_thread::get_id());
  seen.arena_concurrency.insert(concurrency);
  ++seen.tasks;
}

// Installs the probe for one scope and clears what it saw.
class ProbeScope {
 public:
  ProbeScope() {
    std::lock_guard lock(seen.mutex);
    seen.threads.clear();
    seen.arena_concurrency.clear();
    seen.tasks = 0;
    compute::set_task_probe(&record_task);
  }
  ~ProbeScope() { compute::set_task_probe(nullptr); }
};

// 8 heads of 32 over 160 positions: past attention's threshold for parallel heads (32768 key x
// head_dim products per row), 160 prompt rows for parallel attention rows, and 256 x 768
// matrices for parallel matmul strips. Two layers keep it fast.
constexpr std::int64_t kPromptTokens = 160;

std::string write_model(const sluice::testing::TempDir& dir) {
  SynthOptions o;
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 2;
  o.vocab_from.clear();
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, o);
  return path;
}

Batch prompt_batch() {
  std::vector<std::int32_t> ids;
  for (std::int64_t i = 0; i < kPromptTokens; ++i) ids.push_back(std::int32_t(1 + i * 7 % 500));
  Batch batch;
  batch.add(0, 0, ids, true);
  batch.want_all();
  return batch;
}

// Logits of the prompt through a CPU backend on `executor`, recording the kernel threads.
std::vector<float> forward_on(compute::Executor& executor, const Model& model) {
  cpu::CpuBackend backend(executor);
  cache::KvShape shape{model.config().n_layer, model.config().n_head_kv * model.config().head_dim, 192, 1};
  Transformer transformer(model.config(), cache::make_resident_kv_cache(shape), backend);
  InRamForward forward(model);
  std::vector<float> logits;
  forward.forward(transformer, prompt_batch(), logits);
  return logits;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Executor, ConcurrencyIsTheThreadsAskedForCappedByTbb) {
  compute::Executor one(1), all(0);
  EXPECT_EQ(one.concurrency(), 1);
  EXPECT_EQ(all.concurrency(), tbb::info::default_concurrency());
  int inside = 0;
  one.run([&] { inside = tbb::this_task_arena::max_concurrency(); });
  EXPECT_EQ(inside, 1);
  // Nested: running on the executor from inside it just calls the function.
  int nested = 0;
  one.run([&] { one.run([&] { nested = tbb::this_task_arena::max_concurrency(); }); });
  EXPECT_EQ(nested, 1);
}

TEST(Executor, OneThreadRunsEveryKernelTaskOfAForwardPassOnTheCaller) {
  sluice::testing::TempDir dir;
  auto model = Model::open(write_model(dir));
  compute::Executor executor(1);
  ProbeScope probe;
  forward_on(executor, *model);
  std::lock_guard lock(seen.mutex);
  EXPECT_GT(seen.tasks, 0) << "the kernels never reported a task: the probe is not wired";
  EXPECT_EQ(seen.threads.size(), 1u);
  EXPECT_EQ(seen.threads.count(std::this_thread::get_id()), 1u) << "kernel work ran on another thread";
  EXPECT_EQ(seen.arena_concurrency, std::set<int>{1}) << "a kernel ran outside the executor's arena";
}

TEST(Executor, NThreadsBoundEveryKernelTaskAndTheBitsDoNotChange) {
  sluice::testing::TempDir dir;
  auto model = Model::open(write_model(dir));
  compute::Executor one(1);
  const std::vector<float> want = forward_on(one, *model);
  for (int threads : {2, 0}) {
    SCOPED_TRACE(threads);
    compute::Executor executor(threads);
    ProbeScope probe;
    const std::vector<float> got = forward_on(executor, *model);
    EXPECT_TRUE(same_bits(want, got)) << "logits differ from the 1-thread pass";
    std::lock_guard lock(seen.mutex);
    EXPECT_GT(seen.tasks, 0);
    EXPECT_LE(seen.threads.size(), std::size_t(executor.concurrency()));
    EXPECT_EQ(seen.arena_concurrency, std::set<int>{executor.concurrency()}) << "a kernel ran outside the executor's arena";
  }
}

// `-t 1` end to end through the Session: it owns the executor, the backend computes on it, and
// the planner would count attention scratch for its one thread.
TEST(Executor, SessionWithOneThreadComputesOnOneThread) {
  sluice::testing::TempDir dir;
  SessionOptions options;
  options.model = write_model(dir);
  options.n_ctx = 192;
  options.threads = 1;
  Session session(options);
  EXPECT_EQ(session.executor().concurrency(), 1);
  EXPECT_EQ(&dynamic_cast<cpu::CpuBackend&>(session.backend()).executor(), &session.executor());
  ProbeScope probe;
  std::vector<float> logits;
  session.forward().forward(session.transformer(), prompt_batch(), logits);
  std::lock_guard lock(seen.mutex);
  EXPECT_GT(seen.tasks, 0);
  EXPECT_EQ(seen.threads.size(), 1u);
  EXPECT_EQ(seen.arena_concurrency, std::set<int>{1});
}

}  // namespace
}  // namespace sluice
