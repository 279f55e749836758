// Where a mixture-of-experts block finds its experts when they are not in the block's bytes
// (issue 15): a streamed MoE model reads only the experts its router picks, one expert (its gate,
// up and down slices) at a time, and keeps them in the expert cache between passes. The forward
// pass stays one: Transformer::moe_ffn slices the stacked tensors itself when BlockWeights has no
// provider (in RAM, or a block read whole), and asks the provider otherwise.
//
// Protocol, per layer and pass (one thread: the one running the pass):
//   request(layer, ids)   once, after routing: the experts the pass needs, ascending; reads of
//                         the absent ones start here
//   ready(layer, e)       whether acquire(e) would not wait (the pass computes those first)
//   acquire(layer, e)     once per requested expert: its three matrices, valid while the returned
//                         ExpertWeights lives, waiting for its read when needed
//   guess(layer + 1, ids) optionally, after request(layer): the experts the next layer will
//                         probably want (its router run early on this layer's input); reads of
//                         the absent ones may start, after every demanded read
// A pass that throws between request and the last acquire leaves the provider to its owner's
// reset (engine/expert_store.hpp): nothing half-read stays behind.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "engine/weights.hpp"

namespace sluice {

// One expert's matrices: 2-D views as expert_slice() gives them, and what keeps their bytes (a
// cache pin, or nothing for bytes the provider keeps until its next acquire).
struct ExpertWeights {
  TensorView gate, up, down;
  std::shared_ptr<void> hold;
};

class ExpertProvider {
 public:
  virtual ~ExpertProvider() = default;
  // `experts`: distinct ids in [0, n_expert), ascending. Throws sluice::Exception when a read
  // cannot be started.
  virtual void request(std::int64_t layer, std::span<const std::int32_t> experts) = 0;
  // Non-blocking; may reap finished reads.
  virtual bool ready(std::int64_t layer, std::int32_t expert) = 0;
  // Blocks until the expert's bytes are in RAM. Throws sluice::Exception naming the file,
  // tensor, expert and offset when its read fails or its bytes do not verify.
  virtual ExpertWeights acquire(std::int64_t layer, std::int32_t expert) = 0;
  // A hint: `experts` (distinct, ascending) are likely to be requested for `layer` next. Never
  // changes what acquire() returns; a provider that keeps nothing between calls ignores it.
  virtual void guess(std::int64_t layer, std::span<const std::int32_t> experts) {
    (void)layer;
    (void)experts;
  }
};

}  // namespace sluice
