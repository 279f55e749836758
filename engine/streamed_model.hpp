// A model whose transformer blocks stream from a pack through the prefetcher on every forward
// pass (DESIGN.md §4-5). The forward pass is the same Transformer code as the in-RAM path; only
// where a block's weights come from differs, so logits are bit-identical to the in-RAM pass.
//
// What stays in RAM is the planner's choice (StreamOptions):
//  - resident_blocks: a fixed set of blocks read once (cache/resident_set.hpp); the rest stream;
//  - stream_head: the output head (the embedding matrix when tied) streams at the end of every
//    pass instead of staying resident, in pieces of whole frames that fit a ring slot of
//    head_piece_slot_bytes (prefetch::extent_pieces), so a large vocabulary needs no large slot;
//  - embed_on_demand: the embedding rows a batch needs are read (and verified) from the pack per
//    batch instead of holding the embedding matrix.
// Norms and other small tensors are always resident.
//
// Passes share one Prefetcher whose plan is the streamed extents repeated `passes_per_ring`
// times, so the ring is allocated once and reads for the next pass start while this one ends.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/forward.hpp"
#include "engine/transformer.hpp"
#include "engine/weights.hpp"
#include "model/metadata.hpp"
#include "model/pack_reader.hpp"
#include "prefetch/prefetcher.hpp"

namespace sluice {

struct StreamOptions {
  prefetch::PrefetchOptions prefetch;  // ring slots, queue depth, backend
  // The pack's own reads (header, manifest, resident extents, embedding rows on demand, small
  // globals); tests set pack.fault, with prefetch.fault, to inject faults into every read.
  pack::PackOptions pack;
  std::size_t passes_per_ring = 64;     // passes planned per prefetcher before a new one is made
  std::vector<std::int64_t> resident_blocks;  // blocks held in RAM (the planner's set)
  bool stream_head = false;
  std::uint64_t head_piece_slot_bytes = 0;  // 0: the head streams as one piece
  bool embed_on_demand = false;
};

struct StreamStats {
  std::uint64_t passes = 0;
  std::uint64_t bytes_streamed = 0;  // stored bytes read through the prefetcher
  std::uint64_t embedding_bytes = 0; // stored bytes read for embedding rows on demand
  std::chrono::nanoseconds wall{0};          // inside forward()
  std::chrono::nanoseconds wait{0};          // forward pass blocked waiting for an extent
  std::chrono::nanoseconds compute_busy{0};  // blocks and head computing
  std::chrono::nanoseconds io_busy{0};
  std::chrono::nanoseconds decode_busy{0};
  // wall / max(io_busy, compute_busy): 1.0 is perfect overlap, 2.0 fully serialised.
  double overlap() const;
};

class StreamedModel final : public Forward {
 public:
  // Opens a pack; reads its resident extents. Throws std::runtime_error naming the file when it
  // is not a pack or lacks a block's extent.
  StreamedModel(const std::string& path, StreamOptions options = {});
  ~StreamedModel() override;

  const ModelConfig& config() const override { return config_; }
  const Metadata& metadata() const { return *metadata_; }
  const pack::Pack& pack() const { return pack_; }
  std::uint64_t resident_bytes() const { return resident_bytes_; }
  std::uint64_t streamed_bytes_per_pass() const { return streamed_bytes_per_pass_; }
  std::uint64_t ring_bytes() const { return prefetcher_ ? prefetcher_->ring_bytes() : 0; }
  std::int64_t resident_block_count() const;
  // Drops the tokenizer.ggml.* arrays (tokens, scores, types, merges) from the manifest's
  // metadata once the tokenizer has been built from them; metadata() no longer has them.
  void release_vocabulary_metadata();
  // Totals over every pass so far, including the prefetcher in use.
  StreamStats stats() const;

  // One sequence (same contract as engine/generate.hpp's evaluate()).
  void evaluate(Transformer& transformer, std::span<const std::int32_t> tokens, std::int64_t pos0, bool all_logits,
                std::vector<float>& logits);

 protected:
  void forward_pass(Transformer& transformer, const Batch& batch, float* logits) override;

 private:
  std::vector<std::byte> read_resident_extent(std::uint32_t index) const;
  BlockWeights bind_block_at(std::int64_t il, std::span<const std::byte> extent_bytes) const;
  TensorView view_in(std::string_view tensor, std::span<const std::byte> extent_bytes) const;
  void embed(Transformer& transformer, std::span<const std::int32_t> tokens, float* x);
  prefetch::ExtentHandle next_extent();
  void stream_head(Transformer& transformer, const Batch& batch, const float* x, float* logits);
  // Raw bytes [from, from + n) of an extent, read frame by frame (for small tensors that share a
  // streamed extent).
  std::vector<std::byte> read_raw_range(std::uint32_t extent, std::uint64_t from, std::uint64_t n);
  void ensure_prefetcher();
  void collect_prefetch_stats();

  std::string path_;
  StreamOptions options_;
  pack::Pack pack_;
  std::unique_ptr<Metadata> metadata_;
  ModelConfig config_;
  std::vector<std::vector<std::byte>> resident_;  // by extent index; empty for streamed extents
  std::vector<std::uint32_t> block_extent_;       // layer -> extent index
  std::vector<BlockWeights> resident_blocks_;     // by layer; bound only for resident layers
  std::vector<bool> block_resident_;
  std::uint32_t head_extent_ = 0;
  std::uint32_t embd_extent_ = 0;
  std::vector<std::uint64_t> embd_frame_raw_offset_;  // prefix sums of the embedding's frames
  std::vector<std::uint32_t> plan_pass_;          // the extents one pass streams, in order
  std::vector<pack::ExtentInfo> stream_extents_;  // the pack's extents, then the head's pieces
  std::vector<std::uint64_t> head_piece_raw_begin_;  // each piece's first raw byte in the head extent
  std::vector<std::vector<std::byte>> small_streamed_;  // small globals copied out of streamed extents
  std::vector<std::byte> head_carry_;             // a head row split between two pieces
  GlobalWeights globals_;                         // output / tok_embd data null when not resident
  std::uint64_t resident_bytes_ = 0;
  std::uint64_t streamed_bytes_per_pass_ = 0;
  std::unique_ptr<prefetch::Prefetcher> prefetcher_;
  StreamStats stats_;
};

}  // namespace sluice
