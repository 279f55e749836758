// Batches, and running one through a Forward in passes the memory plan allows.
#include "engine/forward.hpp"

#include <algorithm>
#include <numeric>

#include "common/assert.hpp"

namespace sluice {

std::int64_t Batch::add(std::int32_t seq, std::int64_t pos0, std::span<const std::int32_t> ids, bool want_last) {
  return add(seq, pos0, ids, std::int64_t(want_last && !ids.empty() ? 1 : 0));
}

std::int64_t Batch::add(std::int32_t seq, std::int64_t pos0, std::span<const std::int32_t> ids, std::int64_t n_wanted) {
  SLUICE_ASSERT(n_wanted >= 0 && n_wanted <= static_cast<std::int64_t>(ids.size()));
  if (ids.empty()) return -1;
  spans.push_back({seq, pos0, static_cast<std::int64_t>(ids.size())});
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  if (n_wanted == 0) return -1;
  const auto first = static_cast<std::int64_t>(logit_rows.size());
  for (std::int64_t r = n_tokens() - n_wanted; r < n_tokens(); ++r) logit_rows.push_back(r);
  return first;
}

void Batch::want_all() {
  logit_rows.resize(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) logit_rows[i] = static_cast<std::int64_t>(i);
}

void Batch::clear() {
  tokens.clear();
  spans.clear();
  logit_rows.clear();
}

std::vector<Batch> split_batch(const Batch& batch, std::int64_t max_tokens, std::vector<std::size_t>* first_logit) {
  SLUICE_ASSERT(max_tokens > 0);
  SLUICE_ASSERT(std::is_sorted(batch.logit_rows.begin(), batch.logit_rows.end()));
  std::vector<Batch> pieces;
  std::size_t next_logit = 0;  // the first of batch.logit_rows not yet placed in a piece
  std::int64_t span_row = 0;   // the batch row where the current span starts
  for (const SeqSpan& s : batch.spans) {
    for (std::int64_t done = 0; done < s.n;) {
      if (pieces.empty() || pieces.back().n_tokens() == max_tokens) {
        pieces.emplace_back();
        if (first_logit) first_logit->push_back(next_logit);
      }
      Batch& piece = pieces.back();
      const std::int64_t take = std::min(s.n - done, max_tokens - piece.n_tokens());
      const std::int64_t from = span_row + done;  // batch row of this part's first token
      const std::int64_t at = piece.n_tokens();   // its row in the piece
      piece.spans.push_back({s.seq, s.pos0 + done, take});
      piece.tokens.insert(piece.tokens.end(), batch.tokens.begin() + from, batch.tokens.begin() + from + take);
      for (; next_logit < batch.logit_rows.size() && batch.logit_rows[next_logit] < from + take; ++next_logit) {
        piece.logit_rows.push_back(batch.logit_rows[next_logit] - from + at);
      }
      done += take;
    }
    span_row += s.n;
  }
  return pieces;
}

void Forward::forward(Transformer& transformer, const Batch& batch, std::vector<float>& logits) {
  const auto n_vocab = static_cast<std::size_t>(config().n_vocab);
  logits.resize(batch.logit_rows.size() * n_vocab);
  const std::int64_t limit = transformer.max_pass_tokens();
  if (limit == 0 || batch.n_tokens() <= limit) {
    forward_pass(transformer, batch, logits.data());
    return;
  }
  transformer.check_spans(batch.spans);  // before the first piece writes anything
  // Rows wanted out of order (no caller does this today) are computed in ascending order and
  // put back where they were asked for.
  const bool ascending = std::is_sorted(batch.logit_rows.begin(), batch.logit_rows.end());
  std::vector<std::size_t> order(batch.logit_rows.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  Batch sorted;
  const Batch* source = &batch;
  if (!ascending) {
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return batch.logit_rows[a] < batch.logit_rows[b]; });
    sorted = batch;
    for (std::size_t i = 0; i < order.size(); ++i) sorted.logit_rows[i] = batch.logit_rows[order[i]];
    source = &sorted;
  }
  std::vector<std::size_t> first_logit;
  const std::vector<Batch> pieces = split_batch(*source, limit, &first_logit);
  std::vector<float> piece_logits;
  for (std::size_t p = 0; p < pieces.size(); ++p) {
    const Batch& piece = pieces[p];
    if (ascending) {
      forward_pass(transformer, piece, logits.data() + first_logit[p] * n_vocab);
      continue;
    }
    piece_logits.resize(piece.logit_rows.size() * n_vocab);
    forward_pass(transformer, piece, piece_logits.data());
    for (std::size_t r = 0; r < piece.logit_rows.size(); ++r) {
      std::copy_n(piece_logits.data() + r * n_vocab, n_vocab, logits.data() + order[first_logit[p] + r] * n_vocab);
    }
  }
}

void InRamForward::forward_pass(Transformer& transformer, const Batch& batch, float* logits) {
  const ModelConfig& c = model_.config();
  std::vector<float> x(std::size_t(batch.n_tokens() * c.n_embd));  // (n, d): the residual stream
  transformer.embed(model_.globals().tok_embd, batch.tokens, x.data());
  for (std::int64_t il = 0; il < c.n_layer; ++il) {
    transformer.block(il, model_.blocks()[std::size_t(il)], model_.globals(), x.data(), batch.spans);
  }
  transformer.head_rows(model_.globals(), x.data(), batch.logit_rows, logits);
}

}  // namespace sluice
