// One forward pass over a batch of sequences, whatever holds the weights: a model in RAM
// (InRamForward) or a pack streamed block by block (StreamedModel). The batch lists tokens
// grouped in SeqSpans and the rows whose logits are wanted; logits come back row-major,
// (logit_rows.size(), n_vocab), in the order of logit_rows.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model.hpp"
#include "engine/transformer.hpp"

namespace sluice {

struct Batch {
  std::vector<std::int32_t> tokens;
  std::vector<SeqSpan> spans;
  std::vector<std::int64_t> logit_rows;  // rows of `tokens` whose logits the caller wants

  // Appends `ids` of sequence `seq` at positions pos0..; with want_last, the logits of its last
  // token are wanted (their index in the output is returned; -1 otherwise).
  std::int64_t add(std::int32_t seq, std::int64_t pos0, std::span<const std::int32_t> ids, bool want_last);
  // Every row of the batch wants logits.
  void want_all();
  std::int64_t n_tokens() const { return static_cast<std::int64_t>(tokens.size()); }
  void clear();
};

class Forward {
 public:
  virtual ~Forward() = default;
  virtual const ModelConfig& config() const = 0;
  virtual void forward(Transformer& transformer, const Batch& batch, std::vector<float>& logits) = 0;
};

class InRamForward final : public Forward {
 public:
  explicit InRamForward(const Model& model) : model_(model) {}
  const ModelConfig& config() const override { return model_.config(); }
  void forward(Transformer& transformer, const Batch& batch, std::vector<float>& logits) override;

 private:
  const Model& model_;
};

}  // namespace sluice
