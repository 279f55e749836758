// One forward pass over a batch of sequences, whatever holds the weights: a model in RAM
// (InRamForward) or a pack streamed block by block (StreamedModel). The batch lists tokens
// grouped in SeqSpans and the rows whose logits are wanted; logits come back row-major,
// (logit_rows.size(), n_vocab), in the order of logit_rows.
//
// A batch longer than the Transformer's max_pass_tokens() (the memory plan's pass size) runs as
// several passes of at most that many rows, so a whole prompt handed over at once stays within
// the buffers the planner counted. Each row's result does not depend on how the batch is cut
// (a later pass's rows read the earlier passes' K/V from the cache, as in one pass), so the
// logits are the same bits either way.
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
  // The same wanting the logits of the last `n_wanted` tokens (0 .. ids.size()); returns the
  // output index of the first of them (-1 when none). A verification pass wants every drafted row.
  std::int64_t add(std::int32_t seq, std::int64_t pos0, std::span<const std::int32_t> ids, std::int64_t n_wanted);
  // Every row of the batch wants logits.
  void want_all();
  std::int64_t n_tokens() const { return static_cast<std::int64_t>(tokens.size()); }
  void clear();
};

class Forward {
 public:
  virtual ~Forward() = default;
  virtual const ModelConfig& config() const = 0;
  // logits <- (batch.logit_rows.size(), n_vocab), in passes of at most
  // transformer.max_pass_tokens() rows. Not thread-safe (one Transformer, one pass at a time).
  void forward(Transformer& transformer, const Batch& batch, std::vector<float>& logits);

 protected:
  // One pass over the whole batch; writes the logits of batch.logit_rows to `logits` (row-major,
  // n_vocab wide, room for all of them).
  virtual void forward_pass(Transformer& transformer, const Batch& batch, float* logits) = 0;
};

// The batches, each of at most max_tokens rows, that `batch` is cut into (in order; a span may
// be split between two of them). logit_rows are renumbered within each piece; `first_logit` gets
// the index in batch.logit_rows of each piece's first wanted row. Needs logit_rows ascending.
std::vector<Batch> split_batch(const Batch& batch, std::int64_t max_tokens, std::vector<std::size_t>* first_logit = nullptr);

class InRamForward final : public Forward {
 public:
  explicit InRamForward(const Model& model) : model_(model) {}
  const ModelConfig& config() const override { return model_.config(); }

 protected:
  void forward_pass(Transformer& transformer, const Batch& batch, float* logits) override;

 private:
  const Model& model_;
};

}  // namespace sluice
