// The memory-budget planner (DESIGN.md §5): given a pack, a context size and a budget, decides
// what is resident and what streams, sizes the ring, and predicts the seconds a pass needs from
// the disk bandwidth. Refuses a budget below the minimum with a message that gives the minimum.
//
// Today's plan: embedding, output head and misc tensors resident; every block streams through a
// ring of `slots` slots (each the largest block's stored + decoded bytes); KV cache fp16 for the
// context; activations for one prompt batch. Blocks are not yet kept resident when the budget
// would allow it (cache/ will add that resident set).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "model/model_config.hpp"
#include "model/pack_reader.hpp"

namespace sluice {

struct MemoryPlan {
  std::uint64_t budget = 0;
  std::uint64_t resident_bytes = 0;     // embedding, head, norms
  std::uint64_t slot_bytes = 0;         // one ring slot
  unsigned slots = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t kv_bytes = 0;
  std::uint64_t activation_bytes = 0;
  std::uint64_t overhead_bytes = 0;     // runtime, tokenizer, manifest: a fixed allowance
  std::uint64_t total = 0;
  std::uint64_t minimum = 0;            // the same with a 2-slot ring
  std::uint64_t streamed_per_pass = 0;  // stored bytes read per forward pass
  std::int64_t blocks = 0;
  double disk_gbps = 0;                 // measured or given; 0 when unknown
  double predicted_seconds_per_pass() const { return disk_gbps > 0 ? double(streamed_per_pass) / (disk_gbps * 1e9) : 0.0; }
};

// Throws std::runtime_error saying the minimum when the budget cannot hold even a 2-slot ring.
MemoryPlan plan_memory(const pack::Pack& pack, const ModelConfig& config, std::int64_t n_ctx, std::int64_t batch_tokens,
                       std::uint64_t budget, unsigned wanted_slots, double disk_gbps);

void print_plan(const MemoryPlan& plan, std::ostream& out);

}  // namespace sluice
