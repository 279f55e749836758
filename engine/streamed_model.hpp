// A model whose transformer blocks stream from a pack through the prefetcher on every forward
// pass, while the embedding, final norm and head stay resident. The forward pass is the same
// Transformer code as the in-RAM path (engine/transformer.hpp); only where a block's weights come
// from differs, so logits are bit-identical to the in-RAM pass.
//
// Passes share one Prefetcher whose plan is the block extents repeated `passes_per_ring` times,
// so the ring is allocated once and reads for the next pass start while the current one ends.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/transformer.hpp"
#include "engine/weights.hpp"
#include "model/metadata.hpp"
#include "model/pack_reader.hpp"
#include "prefetch/prefetcher.hpp"

namespace sluice {

struct StreamOptions {
  prefetch::PrefetchOptions prefetch;  // ring slots, queue depth, backend
  std::size_t passes_per_ring = 64;     // passes planned per prefetcher before a new one is made
};

struct StreamStats {
  std::uint64_t passes = 0;
  std::uint64_t bytes_streamed = 0;  // stored bytes read for blocks
  std::chrono::nanoseconds wait{0};  // time the forward pass waited for a block
  std::chrono::nanoseconds io_busy{0};
  std::chrono::nanoseconds decode_busy{0};
};

class StreamedModel {
 public:
  // Opens a pack; reads its resident extents (token_embd, output, misc). Throws std::runtime_error
  // naming the file when it is not a pack or lacks a block's extent.
  StreamedModel(const std::string& path, StreamOptions options = {});
  ~StreamedModel();

  const ModelConfig& config() const { return config_; }
  const Metadata& metadata() const { return *metadata_; }
  const pack::Pack& pack() const { return pack_; }
  std::uint64_t resident_bytes() const { return resident_bytes_; }
  std::uint64_t streamed_bytes_per_pass() const { return streamed_bytes_per_pass_; }
  std::uint64_t ring_bytes() const { return prefetcher_ ? prefetcher_->ring_bytes() : 0; }
  // Totals over every pass so far, including the prefetcher in use.
  StreamStats stats() const;

  // One forward pass (same contract as engine/generate.hpp's evaluate()).
  void evaluate(Transformer& transformer, std::span<const std::int32_t> tokens, std::int64_t pos0, bool all_logits,
                std::vector<float>& logits);

 private:
  BlockWeights bind_streamed_block(std::int64_t il, std::span<const std::byte> extent_bytes) const;
  void ensure_prefetcher();
  void collect_prefetch_stats();

  std::string path_;
  StreamOptions options_;
  pack::Pack pack_;
  std::unique_ptr<Metadata> metadata_;
  ModelConfig config_;
  std::vector<std::vector<std::byte>> resident_;  // by extent index; empty for streamed extents
  std::vector<std::uint32_t> block_extent_;       // layer -> extent index
  GlobalWeights globals_;
  std::uint64_t resident_bytes_ = 0;
  std::uint64_t streamed_bytes_per_pass_ = 0;
  std::unique_ptr<prefetch::Prefetcher> prefetcher_;
  StreamStats stats_;
};

}  // namespace sluice
