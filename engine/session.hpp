// Everything a command needs to run a model under a memory budget, set up in one place for
// `sluice run`, `sluice bench`, `sluice batch` and `sluice perplexity`: opens a pack or a GGUF (a
// single file or any shard of a split set) as a ModelSource, plans it (engine/planner.hpp) and
// streams it through the prefetcher with the planner's resident set. A GGUF whose plan holds
// every weight with room to spare (and --stream not on) is memory-mapped in RAM instead (session.cpp
// fits_in_ram says why). Builds the KV cache the plan chose (resident or spilled, fp16 or q8_0, one slot per
// parallel sequence) and the tokenizer, and reports the streaming statistics at the end.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "common/trace.hpp"
#include "engine/forward.hpp"
#include "engine/planner.hpp"
#include "engine/streamed_model.hpp"
#include "model/tokenizer.hpp"

namespace sluice {

// Which blocks stream: the planner decides (automatic), every block (always), none (never: all
// resident, refused when they do not fit).
enum class StreamMode { automatic, always, never };

// How a mixture-of-experts GGUF's experts stream (engine/expert_store.hpp): automatic reads them
// one by one, only the routed ones, whenever the model streams; apart does the same and streams
// the model even when it would fit in RAM; whole reads each block with every expert in it (the
// old way). A pack, and --stream off, always hold whole blocks.
enum class ExpertsMode { automatic, apart, whole };

struct SessionOptions {
  std::string model;
  std::uint64_t budget = 0;           // 0: 80% of available memory (cgroup-aware)
  std::int64_t n_ctx = 0;             // 0: the model's trained context, capped at 4096, or less (ctx_needed)
  // With n_ctx 0: the most positions a sequence of this run can need (its longest prompt, the
  // tokens to generate, drafts), when the front-end knows it; the context is then that, rounded
  // up to 256, within the cap. A smaller KV cache leaves the budget to resident blocks (Qwen 1.5B
  // at 600 MiB: 0 of 28 blocks resident at 4096, 1.46 tok/s; at 512, 4.17). 0: unknown.
  std::int64_t ctx_needed = 0;
  std::int32_t n_seq = 1;             // parallel sequences (KV slots)
  std::int64_t pass_tokens = 512;     // most tokens per pass (prompt chunks are cut to fit)
  std::int64_t logit_rows = 0;        // most rows of logits per pass (0: one per sequence)
  compute::KvType kv_type = compute::KvType::f16;
  SpillMode kv_spill = SpillMode::automatic;
  std::string kv_spill_dir = "/var/tmp";
  StreamMode stream = StreamMode::automatic;
  ExpertsMode experts = ExpertsMode::automatic;
  // Experts read one by one: read the next layer's likely ones ahead. Off by default: on this
  // disk they were right 95% of the time but did not pay (README, mixtures of experts).
  bool expert_guesses = false;
  unsigned slots = 4;
  // Dense blocks larger than this stream in pieces of about this size (PlanRequest::block_piece_bytes);
  // 0: whole blocks.
  std::uint64_t block_piece_bytes = 4ull << 20;
  int threads = 0;
  double disk_gbps = 0;               // 0: measured on the pack at start (a short O_DIRECT read)
  TraceRecorder* trace = nullptr;
  // Memory the budget also holds for something else (a resident draft model): the planner sets
  // it aside first and names it `reserved_for` in its table.
  std::uint64_t reserved_bytes = 0;
  std::string reserved_for;
  std::ostream* log = nullptr;        // where the plan is printed (null: nowhere)
  // Tests: inject faults into every read and write of the run (the pack's own reads, the
  // prefetcher's, the KV spill's) with this plan; set its shared_operations to number them all
  // together. Must outlive the session.
  io::FaultPlan* fault = nullptr;
};

class Session {
 public:
  // Throws std::runtime_error (bad file; impossible budget: message names the minimum; an explicit
  // budget above the memory cgroup's limit or the available memory: message names both, before
  // anything is loaded) and std::invalid_argument (negative -c or pass size). Warns on `log` when
  // the context is above the model's trained one.
  explicit Session(SessionOptions options);
  ~Session();

  Forward& forward() { return *forward_; }
  Transformer& transformer() { return *transformer_; }
  // The threads every kernel of this session runs on (--threads); the backend computes on it.
  compute::Executor& executor() { return *executor_; }
  // The backend every pass of this session computes on (the CPU's, on executor()).
  compute::ComputeBackend& backend() { return *backend_; }
  const tok::Tokenizer& tokenizer() const { return *tokenizer_; }
  const Metadata& metadata() const;
  const ModelConfig& config() const { return forward_->config(); }
  std::int64_t n_ctx() const { return transformer_->n_ctx(); }
  // Most tokens per pass: the plan's (which may be fewer than asked, to fit the budget), or
  // --pass-tokens for a model in RAM; 0: no limit.
  std::int64_t pass_tokens() const { return pass_tokens_; }
  const MemoryPlan* plan() const { return plan_ ? &*plan_ : nullptr; }
  StreamedModel* streamed() { return streamed_.get(); }
  std::uint64_t weight_bytes() const { return weight_bytes_; }
  // "pack, checksummed, N of M blocks resident, X streamed per pass", the same with the GGUF
  // source's description ("gguf (1 file), reads unverified (...)"), or "in RAM (gguf, memory-mapped)".
  std::string describe() const;
  // The end-of-run table: passes, bytes read, read GB/s, io busy %, compute busy %, overlap,
  // tokens/s (tokens = prompt + generated tokens processed).
  void print_stream_table(std::ostream& out, std::int64_t tokens) const;

 private:
  SessionOptions options_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<StreamedModel> streamed_;
  std::unique_ptr<InRamForward> in_ram_;
  Forward* forward_ = nullptr;
  std::unique_ptr<compute::Executor> executor_;  // declared before backend_, which borrows it
  std::unique_ptr<compute::ComputeBackend> backend_;  // declared before transformer_, which borrows it
  std::unique_ptr<Transformer> transformer_;
  std::unique_ptr<tok::Tokenizer> tokenizer_;
  std::optional<MemoryPlan> plan_;
  std::uint64_t weight_bytes_ = 0;
  std::int64_t n_ctx_ = 0;
  std::int64_t pass_tokens_ = 0;
};

// 80% of available memory (DESIGN.md §5).
std::uint64_t default_memory_budget();

// What Session(options) would plan, without loading the model (`--plan-only`).
// One line: a streamed run's CPU time per pass, by where it went (the process's CPU, the pass
// thread's compute and waiting, the prefetch workers' checksums, zstd and copies).
std::string stream_cpu_line(const StreamStats& stats);

struct SessionPlan {
  MemoryPlan plan;
  bool in_ram = false;            // a GGUF Session would memory-map whole instead (the plan holds it with room)
  std::uint64_t weight_bytes = 0;  // every tensor's bytes
  std::string experts_note;        // why a MoE model's experts stream whole, when they do ("" otherwise)
  std::string context_note;        // blocks stream and a smaller -c would keep more resident ("" otherwise)
};
// Opens the model's header and tensor table only (reads no weight, does not measure the disk:
// the plan predicts s/pass only with --disk-gbps), checks the options and budget as Session
// does, and plans. Throws what Session throws for the same options before it loads anything
// (an impossible budget: std::runtime_error naming the minimum).
SessionPlan plan_session(const SessionOptions& options);

}  // namespace sluice
