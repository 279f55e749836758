// A model whose transformer blocks stream from a model source (a pack today: ModelSource,
// model/model_source.hpp) through the prefetcher on every forward pass (DESIGN.md §4-5). The
// forward pass is the same Transformer code as the in-RAM path; only where a block's weights come
// from differs, so logits are bit-identical to the in-RAM pass.
//
// What stays in RAM is the planner's choice (StreamOptions):
//  - resident_blocks: a fixed set of blocks read once (cache/resident_set.hpp); the rest stream;
//  - stream_head: the output head (the embedding matrix when tied) streams at the end of every
//    pass that wants logits instead of staying resident, in pieces of whole frames that fit a
//    ring slot of head_piece_slot_bytes (cut_tensor_pieces, engine/block_pieces.hpp), so a large vocabulary needs
//    no large slot;
//  - embed_on_demand: the embedding rows a batch needs are read (and verified) from the source
//    per batch instead of holding the embedding matrix;
//  - block_piece_slot_bytes: dense blocks stream in pieces of whole frames within slots of this
//    size, each matrix's rows multiplied as its pieces land (engine/block_pieces.hpp), so the
//    ring holds a few MiB instead of a few whole blocks. The blocks' norms and biases stay in RAM.
// Norms and other small tensors are always resident.
//
// One PassSchedule (engine/pass_schedule.hpp), and with it one ring, lives as long as the model.
// Each pass appends the units it binds, in order: its streamed blocks, then the head's pieces
// only when it wants logits; then (read_ahead) the next pass's blocks, so their reads run while
// this pass's last blocks and head compute. A pass checks each delivered unit against the one it
// binds, and an exception anywhere in a pass resets the schedule: the next pass starts clean.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "engine/block_pieces.hpp"
#include "engine/forward.hpp"
#include "engine/transformer.hpp"
#include "engine/weights.hpp"
#include "engine/pass_schedule.hpp"
#include "engine/expert_store.hpp"
#include "model/metadata.hpp"
#include "model/model_source.hpp"
#include "prefetch/prefetcher.hpp"

namespace sluice::io {
struct FaultPlan;
}

namespace sluice {

struct StreamOptions {
  prefetch::PrefetchOptions prefetch;  // ring slots, queue depth, backend
  // Each pass also schedules the next pass's blocks, so the ring reads across the boundary.
  // Off: a pass reads only what it binds (tests that count every I/O of a run turn it off).
  bool read_ahead = true;
  std::vector<std::int64_t> resident_blocks;  // blocks held in RAM (the planner's set)
  bool stream_head = false;
  std::uint64_t head_piece_slot_bytes = 0;  // 0: the head streams as one piece
  std::uint64_t block_piece_slot_bytes = 0;  // 0: streamed blocks go through the ring whole
  bool embed_on_demand = false;
  // Mixture of experts (engine/expert_store.hpp): >= 0 reads experts one by one, the ones the
  // router picks, into an expert cache of this many slots per layer; the source must hold the
  // experts apart (a GgufSource opened so, or a pack with expert extents). -1: experts stream
  // with their block, whole.
  std::int32_t expert_slots_per_layer = -1;
  // With expert_slots_per_layer >= 0: one count per layer (n_layer of them) instead, when not
  // empty (the planner's MemoryPlan::expert_layer_slots: some layers get one slot more).
  std::vector<std::int32_t> expert_layer_slots;
  // With experts read one by one: run the next layer's router early and read the experts it
  // picks while this layer computes (ExpertProvider::guess); needs the next block in RAM.
  bool expert_guesses = false;
  // Tests: number every read of the model (the source's opened from a path, and the
  // prefetcher's) with this plan (io/fault_backend.hpp). Must outlive the model.
  const io::FaultPlan* fault = nullptr;
};

struct StreamStats {
  std::uint64_t passes = 0;
  std::uint64_t bytes_streamed = 0;  // stored bytes read through the prefetcher
  std::uint64_t embedding_bytes = 0; // stored bytes read for embedding rows on demand
  std::chrono::nanoseconds wall{0};          // inside forward()
  std::chrono::nanoseconds wait{0};          // forward pass blocked waiting for an extent
  std::chrono::nanoseconds compute_busy{0};  // blocks and head computing
  std::chrono::nanoseconds io_busy{0};
  // Prefetch workers' CPU time (prefetch::PrefetchStats): zstd, checksums, raw frames copied.
  std::chrono::nanoseconds decode_busy{0};
  std::chrono::nanoseconds verify_busy{0};
  std::chrono::nanoseconds copy_busy{0};
  // The process's CPU seconds since the model was opened (every thread: compute, prefetch,
  // I/O): with the above, where a streamed pass's CPU goes (Session::print_stream_table).
  double cpu_seconds = 0;
  // Experts read one by one (expert_slots_per_layer >= 0): cache accesses (one per layer and
  // chosen expert per pass) that found the expert in RAM, experts read and the bytes read.
  std::uint64_t expert_hits = 0;
  std::uint64_t expert_accesses = 0;
  std::uint64_t expert_reads = 0;
  std::uint64_t expert_bytes = 0;
  // Of `wait`, the time blocked on expert reads (the expert store's clock; it is taken out of
  // compute_busy, inside which the pass waited), and the time spent verifying expert bytes (part
  // of compute_busy: the pass thread hashes what lands). io_busy includes the time expert reads
  // were in flight: with both block and expert reads the sum can exceed the disk's busy time.
  std::chrono::nanoseconds expert_wait{0};
  std::chrono::nanoseconds expert_verify{0};
  std::uint64_t expert_guess_reads = 0;  // experts read ahead on the next layer's early router
  std::uint64_t expert_guess_used = 0;   // of those, the ones the layer then used
  // wall / max(io_busy, compute_busy): 1.0 is perfect overlap, 2.0 fully serialised.
  double overlap() const;
};

class StreamedModel final : public Forward {
 public:
  // Opens a pack; reads its resident units and allocates the ring. Throws sluice::Exception (or
  // pack::PackError, one) naming the file when it is not a pack, fails the model check or lacks
  // a block's extent.
  StreamedModel(const std::string& path, StreamOptions options = {});
  // The same over any model source (options.fault then applies to the prefetcher's reads only).
  StreamedModel(std::unique_ptr<ModelSource> source, StreamOptions options = {});
  ~StreamedModel() override;

  const ModelConfig& config() const override { return config_; }
  const Metadata& metadata() const { return *metadata_; }
  const ModelSource& source() const { return *source_; }
  std::uint64_t resident_bytes() const { return resident_bytes_; }
  // Stored bytes of the units read per pass (with experts read one by one: without them).
  std::uint64_t streamed_bytes_per_pass() const { return streamed_bytes_per_pass_; }
  // The expert store when experts are read one by one, else null.
  const ExpertStore* expert_store() const { return expert_store_.get(); }
  std::uint64_t ring_bytes() const { return schedule_ ? schedule_->ring_bytes() : 0; }
  std::int64_t resident_block_count() const;
  // Drops the tokenizer.ggml.* arrays (tokens, scores, types, merges) from the manifest's
  // metadata once the tokenizer has been built from them; metadata() no longer has them.
  void release_vocabulary_metadata();
  // Totals over every pass so far.
  StreamStats stats() const;

  // One sequence (same contract as engine/generate.hpp's evaluate()).
  void evaluate(Transformer& transformer, std::span<const std::int32_t> tokens, std::int64_t pos0, bool all_logits,
                std::vector<float>& logits);

 protected:
  void forward_pass(Transformer& transformer, const Batch& batch, float* logits) override;

 private:
  void run_pass(Transformer& transformer, const Batch& batch, float* logits);
  // Appends what this pass binds (and, read_ahead, the next pass's blocks) to the schedule.
  void schedule_pass(bool wants_head);
  // schedule_->take(unit); a checksum error also names the tensors in the bad chunk.
  prefetch::ExtentHandle take(std::uint32_t unit);
  BlockWeights bind_block_at(std::int64_t il, std::span<const std::byte> unit_bytes) const;
  // A block streamed in pieces: its matrices from `rows`, its other tensors from block_small_.
  BlockWeights bind_pieced_block(std::int64_t il, PiecedRows& rows) const;
  void embed(Transformer& transformer, std::span<const std::int32_t> tokens, float* x);
  void stream_head(Transformer& transformer, const Batch& batch, const float* x, float* logits);

  StreamOptions options_;
  std::unique_ptr<ModelSource> source_;
  std::string path_;
  std::unique_ptr<Metadata> metadata_;
  ModelConfig config_;
  std::vector<AlignedBuffer> resident_;  // by unit index; empty for streamed units
  std::vector<std::uint32_t> block_unit_;         // layer -> unit index
  std::vector<BlockWeights> resident_blocks_;     // by layer; bound only for resident layers
  std::vector<bool> block_resident_;
  std::uint32_t head_unit_ = 0;
  std::uint32_t embd_unit_ = 0;
  const SourceTensor* head_tensor_ = nullptr;     // output.weight, or token_embd.weight when tied
  std::vector<std::uint32_t> streamed_blocks_;    // the units of the streamed blocks, in layer order
  // What a pass reads for its streamed blocks, in order: their units, or their pieces.
  std::vector<std::uint32_t> block_reads_;
  // Blocks streamed in pieces (by layer; no segments for the others): the cut, each piece's
  // ring-table index, and the block's other tensors (norms, biases) held in RAM.
  std::vector<UnitPieces> block_pieces_;
  std::vector<std::vector<std::uint32_t>> block_piece_units_;
  std::vector<std::vector<std::pair<const SourceTensor*, std::vector<std::byte>>>> block_small_;
  UnitPieces head_cut_;                           // the streamed head's pieces (stream_head)
  std::vector<std::uint32_t> head_pieces_;        // their ring-table indices, in order
  std::vector<std::vector<std::byte>> small_streamed_;  // small globals copied out of streamed units
  GlobalWeights globals_;                         // output / tok_embd data null when not resident
  std::uint64_t resident_bytes_ = 0;
  std::uint64_t streamed_bytes_per_pass_ = 0;
  // The ring's table: the source's units, then the head's pieces. Null when nothing streams.
  std::unique_ptr<PassSchedule> schedule_;
  bool next_blocks_scheduled_ = false;
  std::unique_ptr<ExpertStore> expert_store_;  // expert_slots_per_layer >= 0  // a read-ahead appended the next pass's blocks
  StreamStats stats_;
  double cpu_at_open_ = 0;  // process_cpu_seconds() once the resident units were read
};

}  // namespace sluice
