// The memory-budget planner (DESIGN.md §5): given a pack, the sequences and context to serve and
// a budget, decides what is resident and what streams, sizes the ring and the KV cache, and
// predicts the seconds a pass needs from the disk bandwidth. Refuses a budget below the minimum
// with a message that gives the minimum.
//
// Order of decisions:
//  1. The minimum: small tensors (norms), activations for one pass, an overhead allowance, the
//     KV cache (resident, or spilled with two layers in RAM when the resident one does not fit
//     and spilling is allowed) and a 2-slot ring; the output head resident, or streamed as the
//     pass's last extent when the budget needs that. The embedding is read row by row on demand
//     unless it is the (resident) head itself.
//  2. What is left goes first to ring slots (up to the number asked for), then to a fixed set of
//     resident blocks spread over the layers (cache/resident_set.hpp), then to the embedding.
//     With room for everything, nothing streams and the ring is not allocated.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "compute/cpu/ops.hpp"
#include "model/model_config.hpp"
#include "model/pack_reader.hpp"

namespace sluice {

enum class SpillMode { automatic, always, never };

struct PlanRequest {
  std::uint64_t budget = 0;
  std::int64_t n_ctx = 0;
  std::int32_t n_seq = 1;              // KV slots (parallel sequences)
  std::int64_t pass_tokens = 1;        // most tokens one pass carries (prompt chunk + decodes)
  std::int64_t logit_rows = 0;         // most rows of logits one pass returns (0: one per sequence)
  cpu::KvType kv_type = cpu::KvType::f16;
  SpillMode kv_spill = SpillMode::automatic;
  unsigned wanted_slots = 4;
  bool allow_resident_blocks = true;   // false: every block streams (measuring the disk path)
  double disk_gbps = 0;                // measured or given; 0 when unknown
};

struct MemoryPlan {
  PlanRequest request;
  std::uint64_t small_bytes = 0;        // norms and other small tensors, always resident
  std::uint64_t head_bytes = 0;         // the output head's extent (decoded)
  bool head_resident = true;
  std::uint64_t head_piece_slot_bytes = 0;  // streamed head: split into pieces within this slot size
  bool tied = false;                    // the head is the embedding matrix
  std::uint64_t embedding_bytes = 0;
  bool embedding_resident = false;      // else its rows are read on demand per batch
  std::uint64_t slot_bytes = 0;         // one ring slot
  unsigned slots = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t kv_bytes = 0;           // RAM the KV cache holds
  std::uint64_t kv_full_bytes = 0;      // the whole cache (what spilling keeps on disk)
  bool kv_spilled = false;
  std::uint64_t activation_bytes = 0;
  std::uint64_t overhead_bytes = 0;     // runtime, tokenizer, manifest: a fixed allowance
  std::vector<std::int64_t> resident_blocks;
  std::uint64_t resident_block_bytes = 0;
  std::int64_t blocks = 0;
  std::uint64_t streamed_per_pass = 0;  // stored bytes read per forward pass
  std::uint64_t total = 0;
  std::uint64_t minimum = 0;            // the smallest budget any configuration would accept

  double predicted_seconds_per_pass() const {
    return request.disk_gbps > 0 ? double(streamed_per_pass) / (request.disk_gbps * 1e9) : 0.0;
  }
  bool streams() const { return streamed_per_pass > 0; }
};

// Throws std::runtime_error saying the minimum when the budget cannot hold even the minimum,
// and std::invalid_argument for a KV type the model cannot use.
MemoryPlan plan_memory(const pack::Pack& pack, const ModelConfig& config, const PlanRequest& request);

void print_plan(const MemoryPlan& plan, std::ostream& out);

}  // namespace sluice
