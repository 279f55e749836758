// The memory-budget planner (DESIGN.md §5): given a model source (a pack today), the sequences and context to serve and
// a budget, decides what is resident and what streams, sizes the ring, the KV cache and the pass
// (tokens per forward pass), and predicts the seconds a pass needs from the disk bandwidth.
// Refuses a budget below the minimum with a message that gives the minimum.
//
// Order of decisions:
//  1. The minimum: small tensors (norms), the per-pass memory (PassMemory: activations of every
//     row of a pass, attention scores, logits, sampling, the tokenizer's work), an overhead
//     allowance, the KV cache (resident, or spilled with two layers in RAM when the resident one
//     does not fit and spilling is allowed) and a 2-slot ring; the output head resident, or
//     streamed as the pass's last extent when the budget needs that. The embedding is read row by
//     row on demand unless it is the (resident) head itself.
//  2. The pass: the tokens per pass asked for when some configuration of 1. fits with them;
//     else the cheapest configuration that fits with 1 token per pass, with as many tokens per
//     pass as then fit (the plan says it reduced them). Only when 1 token per pass does not fit
//     is the budget refused.
//  3. What is left goes first to ring slots (up to the number asked for), then to a fixed set of
//     resident blocks spread over the layers (cache/resident_set.hpp), then to the embedding,
//     then (experts read one by one) to expert cache slots, the same number for every layer.
//     With room for everything, nothing streams and the ring is not allocated.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "compute/views.hpp"
#include "model/model_config.hpp"
#include "model/pack_source.hpp"

namespace sluice {

enum class SpillMode { automatic, always, never };

struct PlanRequest {
  std::uint64_t budget = 0;
  std::int64_t n_ctx = 0;
  std::int32_t n_seq = 1;              // KV slots (parallel sequences)
  std::int64_t pass_tokens = 1;        // most tokens one pass carries (prompt chunk + decodes)
  std::int64_t logit_rows = 0;         // most rows of logits one pass returns (0: one per sequence)
  compute::KvType kv_type = compute::KvType::f16;
  SpillMode kv_spill = SpillMode::automatic;
  unsigned wanted_slots = 4;
  // > 0: dense blocks whose ring slot would be larger (and whose ring of wanted_slots would hold
  // more than kPiecedRingBytes) stream in pieces of about this many bytes
  // (engine/block_pieces.hpp), the ring then sized to keep the disk's queue full (kPiecedRingBytes)
  // rather than to hold whole blocks. 0: blocks stream whole.
  std::uint64_t block_piece_bytes = 0;
  bool allow_resident_blocks = true;   // false: every block streams (measuring the disk path)
  double disk_gbps = 0;                // measured or given; 0 when unknown
  int compute_threads = 0;             // the session's compute::Executor::concurrency(); 0: one per core
  std::string kv_spill_dir;            // where a spilled cache's scratch file goes (the plan names it)
  std::optional<std::uint64_t> kv_spill_free_bytes;  // free disk there (free_disk_bytes, common/disk_space.hpp); nullopt: unknown
  // Memory the budget also holds for something beside this model (a resident draft model,
  // engine/speculative.hpp): set aside first, named in the plan's table by `reserved_for`.
  std::uint64_t reserved_bytes = 0;
  std::string reserved_for;
};

// What one forward pass holds besides weights, ring and KV cache. Everything here that grows with
// the prompt grows with the pass instead (a prompt runs in passes of `tokens` rows) or with the
// context (attention scores, the tokenizer's work on a prompt that fills it).
struct PassMemory {
  std::int64_t tokens = 0;             // rows one pass carries: max(pass tokens, sequences)
  std::uint64_t per_token = 0;         // residual row, block scratch (Transformer::scratch_bytes), matmul input, embedding row
  std::uint64_t token_bytes = 0;       // tokens x per_token
  std::uint64_t attention_bytes = 0;   // score scratch of every worker thread (cpu::attention_scratch_bytes)
  std::int64_t attention_threads = 0;
  std::int64_t logit_rows = 0;
  std::int64_t n_vocab = 0;
  std::uint64_t logits_bytes = 0;      // logit rows x vocab, the streamed head's per-piece products, head matmul input
  std::uint64_t sampling_bytes = 0;    // a candidate list per sequence, one draw's working arrays
  std::uint64_t prompt_bytes = 0;      // tokenizing a prompt that fills the context; token ids of every sequence
  std::uint64_t embedding_frames_bytes = 0;  // embedding rows on demand: the frames held while gathering them
  std::uint64_t piece_out_bytes = 0;   // blocks in pieces: a run of rows' products (Transformer::piece_out_bytes)
  std::uint64_t total() const {
    return token_bytes + attention_bytes + logits_bytes + sampling_bytes + prompt_bytes + embedding_frames_bytes + piece_out_bytes;
  }
};

struct MemoryPlan {
  PlanRequest request;
  std::string source;                   // ModelSource::describe(): format, how reads are verified
  std::uint64_t source_bytes = 0;       // stored bytes of every read unit
  std::int64_t pass_tokens = 0;         // most tokens per pass: the request's, or fewer to fit the budget
  PassMemory pass;                      // at pass_tokens
  std::uint64_t small_bytes = 0;        // norms and other small tensors, always resident
  std::uint64_t head_bytes = 0;         // the output head's extent (decoded)
  bool head_resident = true;
  std::uint64_t head_piece_slot_bytes = 0;  // streamed head: split into pieces within this slot size
  bool tied = false;                    // the head is the embedding matrix
  std::uint64_t embedding_bytes = 0;
  bool embedding_resident = false;      // else its rows are read on demand per batch
  std::uint64_t slot_bytes = 0;         // one ring slot
  std::uint64_t block_piece_slot_bytes = 0;  // > 0: streamed blocks go through the ring in pieces within this slot
  unsigned slots = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t kv_bytes = 0;           // RAM the KV cache holds
  std::uint64_t kv_full_bytes = 0;      // the whole cache (what spilling keeps on disk)
  std::int64_t kv_ring_layers = 0;      // sliding-window layers whose cache is a ring of...
  std::int64_t kv_ring_rows = 0;        // ... this many rows per sequence
  bool kv_spilled = false;
  // Spilled: the scratch file's size (cache::spilled_kv_file_bytes). It is sparse and takes disk
  // as positions are written back, so it is not refused up front when the directory has less
  // free: the plan says so (kv_spill_disk_short) and how many positions per sequence fit.
  std::uint64_t kv_spill_file_bytes = 0;
  bool kv_spill_disk_short = false;     // the file at full context x sequences exceeds the free space
  std::int64_t kv_spill_positions_fit = 0;  // when short: positions per sequence the free space holds
  std::uint64_t activation_bytes = 0;   // pass.total(): everything one pass holds
  std::uint64_t overhead_bytes = 0;     // runtime, tokenizer, manifest: a fixed allowance
  std::vector<std::int64_t> resident_blocks;
  std::uint64_t resident_block_bytes = 0;
  std::int64_t blocks = 0;
  std::uint64_t streamed_per_pass = 0;  // stored bytes read per forward pass (experts read one by one apart)
  // Experts read one by one (a GGUF source opened with experts apart, engine/expert_store.hpp):
  // the expert cache gets what the dense decisions above leave, as whole slots: every layer the
  // same count, and the slots left over one more each to some layers (expert_slots_by_layer).
  bool experts_apart = false;
  std::uint64_t expert_slot_bytes = 0;      // one expert's three rounded slices (ExpertStore::slot_bytes_for)
  std::int32_t expert_slots_per_layer = 0;  // of config.n_expert: the fewest any layer has
  std::int64_t expert_slots_total = 0;      // every layer's together
  std::vector<std::int32_t> expert_layer_slots;  // by layer (n_layer of them; empty unless experts_apart)
  std::int64_t n_expert = 0;
  std::uint64_t expert_cache_bytes = 0;     // slots x layers x slot, plus the transient buffer (one slot)
  double expert_hit_rate = 0;               // expected for uniform routing (cache::uniform_expert_hit_rate)
  std::uint64_t expert_bytes_per_token = 0; // expected expert bytes read per token at that hit rate
  std::uint64_t total = 0;
  std::uint64_t minimum = 0;            // the smallest budget any configuration would accept

  double predicted_seconds_per_pass() const {
    return request.disk_gbps > 0 ? double(streamed_per_pass) / (request.disk_gbps * 1e9) : 0.0;
  }
  bool streams() const { return streamed_per_pass > 0; }
};

// `total` expert cache slots shared among `n_layer` layers of `n_expert` experts (total is cut to
// n_layer x n_expert): each layer gets total / n_layer, and the remainder one more each, spread
// evenly along the layers (layer l gets one more when floor((l + 1) r / n) > floor(l r / n)).
std::vector<std::int32_t> expert_slots_by_layer(std::int64_t total, std::int64_t n_layer, std::int64_t n_expert);

// The reads one io_uring queue keeps in flight (32 x 1 MiB, io::BackendOptions): a ring of blocks in
// pieces holds this much, so the disk always has its queue full, and no more: on a virtual disk
// memory past ~40 MiB fills 11-19% slower (DESIGN.md §7).
inline constexpr std::uint64_t kPiecedRingBytes = 32ull << 20;

// Throws std::runtime_error saying the minimum (at 1 token per pass) when the budget cannot hold
// even that, and std::invalid_argument for a KV type the model cannot use.
MemoryPlan plan_memory(const ModelSource& source, const ModelConfig& config, const PlanRequest& request);
inline MemoryPlan plan_memory(const pack::Pack& pack, const ModelConfig& config, const PlanRequest& request) {
  return plan_memory(PackSource::borrow(pack), config, request);
}

void print_plan(const MemoryPlan& plan, std::ostream& out);

}  // namespace sluice
