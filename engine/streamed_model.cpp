#include "engine/streamed_model.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <stdexcept>

#include "common/assert.hpp"
#include "common/trace.hpp"
#include "engine/generate.hpp"
#include "model/convert.hpp"
#include "model/tensor_check.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

namespace {
TensorView view_of(const pack::TensorInfo& t, const std::byte* extent_data) {
  TensorView v;
  v.type = static_cast<GgmlType>(t.type);
  for (auto d : t.shape) v.dims.push_back(static_cast<std::int64_t>(d));
  v.data = extent_data;
  if (extent_data) v.data += t.offset;
  v.bytes = t.bytes;
  return v;
}

std::uint32_t extent_of(const pack::Pack& pack, std::string_view tensor, const std::string& path) {
  const pack::TensorInfo* t = pack.find_tensor(tensor);
  if (!t) throw std::runtime_error(fmt::format("{}: no tensor '{}'", path, tensor));
  return t->extent;
}
}  // namespace

double StreamStats::overlap() const {
  const auto busiest = std::max(io_busy, compute_busy);
  return busiest.count() > 0 ? double(wall.count()) / double(busiest.count()) : 0.0;
}

StreamedModel::StreamedModel(const std::string& path, StreamOptions options)
    : path_(path), options_(std::move(options)), pack_(pack::Pack::open(path, options_.pack)) {
  metadata_ = metadata_of(pack_.metadata(), path_);
  // Tensors against hyper-parameters, and every "blk.N" extent's N below n_layer, before any
  // index or buffer is taken from them.
  config_ = checked_config(pack_);
  const auto& extents = pack_.extents();
  block_extent_.assign(std::size_t(config_.n_layer), UINT32_MAX);
  std::vector<std::int64_t> extent_block(extents.size(), -1);  // extent -> block, -1: not a block's
  for (std::uint32_t i = 0; i < extents.size(); ++i) {
    const std::optional<std::int64_t> il = block_extent_index(extents[i].name);
    if (!il) continue;
    SLUICE_ASSERT_MSG(*il >= 0 && *il < config_.n_layer, "checked_config bounds block extents");
    block_extent_[std::size_t(*il)] = i;
    extent_block[i] = *il;
  }
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (block_extent_[std::size_t(il)] == UINT32_MAX) {
      throw std::runtime_error(fmt::format("{}: no extent 'blk.{}' for block {}", path_, il, il));
    }
  }
  block_resident_.assign(std::size_t(config_.n_layer), false);
  for (std::int64_t il : options_.resident_blocks) {
    if (il < 0 || il >= config_.n_layer) throw std::invalid_argument(fmt::format("resident block {} out of range", il));
    block_resident_[std::size_t(il)] = true;
  }
  embd_extent_ = extent_of(pack_, "token_embd.weight", path_);
  const bool tied = pack_.find_tensor("output.weight") == nullptr;
  head_extent_ = tied ? embd_extent_ : extent_of(pack_, "output.weight", path_);
  (void)extent_of(pack_, "output_norm.weight", path_);  // present, resident or with the head

  // What one pass streams, in order: the streamed blocks, then the head.
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (!block_resident_[std::size_t(il)]) plan_pass_.push_back(block_extent_[std::size_t(il)]);
  }
  stream_extents_ = extents;
  if (options_.stream_head) {
    const std::uint64_t max_slot = options_.head_piece_slot_bytes > 0 ? options_.head_piece_slot_bytes : UINT64_MAX;
    std::uint64_t raw = 0;
    for (pack::ExtentInfo& piece : prefetch::extent_pieces(extents[head_extent_], max_slot)) {
      head_piece_raw_begin_.push_back(raw);
      raw += piece.raw_bytes;
      plan_pass_.push_back(std::uint32_t(stream_extents_.size()));
      stream_extents_.push_back(std::move(piece));
    }
  }
  for (std::uint32_t e : plan_pass_) streamed_bytes_per_pass_ += stream_extents_[e].disk_bytes;

  resident_.resize(extents.size());
  for (std::uint32_t i = 0; i < extents.size(); ++i) {
    if (extent_block[i] >= 0 && !block_resident_[std::size_t(extent_block[i])]) continue;
    if (options_.stream_head && i == head_extent_) continue;
    if (options_.embed_on_demand && i == embd_extent_ && !(i == head_extent_ && !options_.stream_head)) continue;
    resident_[i] = read_resident_extent(i);
    // The extent came through the page cache; under a memory cgroup those pages count against
    // the limit beside the copy we keep, so hand them back at once.
    ::posix_fadvise(pack_.fd(), off_t(extents[i].offset), off_t(extents[i].disk_bytes), POSIX_FADV_DONTNEED);
    // Pinned so a cgroup under pressure reclaims page cache, never these (best effort).
    mlock(resident_[i].data(), resident_[i].size());
    resident_bytes_ += resident_[i].size();
  }
  auto resident_view = [this](std::string_view name) -> TensorView {
    const pack::TensorInfo* t = pack_.find_tensor(name);
    if (!t) return {};
    return view_of(*t, resident_[t->extent].empty() ? nullptr : resident_[t->extent].data());
  };
  globals_.tok_embd = resident_view("token_embd.weight");
  globals_.output = tied ? globals_.tok_embd : resident_view("output.weight");
  globals_.output_norm = resident_view("output_norm.weight");
  globals_.rope_freqs = resident_view("rope_freqs.weight");
  // Small globals that live in a streamed extent (the head's, in some packs) are copied out once.
  for (auto [name, view] : {std::pair{"output_norm.weight", &globals_.output_norm}, std::pair{"rope_freqs.weight", &globals_.rope_freqs}}) {
    const pack::TensorInfo* t = pack_.find_tensor(name);
    if (!t || *view) continue;
    small_streamed_.push_back(read_raw_range(t->extent, t->offset, t->bytes));
    *view = view_of(*t, nullptr);
    view->data = small_streamed_.back().data();
  }

  resident_blocks_.resize(std::size_t(config_.n_layer));
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (block_resident_[std::size_t(il)]) {
      resident_blocks_[std::size_t(il)] = bind_block_at(il, resident_[block_extent_[std::size_t(il)]]);
    }
  }
  std::uint64_t at = 0;
  for (const auto& f : extents[embd_extent_].frames) {
    embd_frame_raw_offset_.push_back(at);
    at += f.raw_bytes;
  }
}

StreamedModel::~StreamedModel() = default;

// An all-raw extent is read straight into its buffer. A compressed one would need its stored
// bytes staged beside the decoded ones (twice the extent at once: 340 MB for Gemma 3's tied
// head), so it is read, verified and decoded a frame at a time instead.
std::vector<std::byte> StreamedModel::read_resident_extent(std::uint32_t index) const {
  const pack::ExtentInfo& e = pack_.extents()[index];
  if (e.all_raw()) {
    auto bytes = pack_.read_extent(index);
    if (!bytes) throw std::runtime_error(bytes.error().message);
    return std::move(bytes).value();
  }
  std::vector<std::byte> raw(e.raw_bytes);
  std::uint64_t at = 0;
  for (std::size_t f = 0; f < e.frames.size(); ++f) {
    auto frame = pack_.read_frame(index, f);
    if (!frame) throw std::runtime_error(frame.error().message);
    std::copy(frame.value().begin(), frame.value().end(), raw.begin() + std::ptrdiff_t(at));
    at += frame.value().size();
  }
  return raw;
}

void StreamedModel::release_vocabulary_metadata() {
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}) {
    pack_.erase_metadata_key(key);
  }
}

std::int64_t StreamedModel::resident_block_count() const {
  return std::count(block_resident_.begin(), block_resident_.end(), true);
}

TensorView StreamedModel::view_in(std::string_view tensor, std::span<const std::byte> extent_bytes) const {
  const pack::TensorInfo* t = pack_.find_tensor(tensor);
  return t ? view_of(*t, extent_bytes.data()) : TensorView{};
}

BlockWeights StreamedModel::bind_block_at(std::int64_t il, std::span<const std::byte> extent_bytes) const {
  const std::uint32_t extent = block_extent_[std::size_t(il)];
  TensorLookup lookup = [&](std::string_view name) -> TensorView {
    const pack::TensorInfo* t = pack_.find_tensor(name);
    if (!t || t->extent != extent) return {};
    return view_of(*t, extent_bytes.data());
  };
  return bind_block(lookup, config_, il, path_);
}

void StreamedModel::ensure_prefetcher() {
  if (plan_pass_.empty()) return;  // everything resident
  if (prefetcher_ && !prefetcher_->done()) return;
  collect_prefetch_stats();
  std::vector<std::uint32_t> plan;
  plan.reserve(plan_pass_.size() * options_.passes_per_ring);
  for (std::size_t p = 0; p < options_.passes_per_ring; ++p) plan.insert(plan.end(), plan_pass_.begin(), plan_pass_.end());
  prefetcher_.reset();
  prefetcher_ = std::make_unique<prefetch::Prefetcher>(path_, stream_extents_, std::move(plan), options_.prefetch);
}

StreamStats StreamedModel::stats() const {
  StreamStats s = stats_;
  if (prefetcher_) {
    prefetch::PrefetchStats p = prefetcher_->stats();
    s.bytes_streamed += p.bytes_read;
    s.io_busy += p.io_busy;
    s.decode_busy += p.decode_busy;
  }
  return s;
}

void StreamedModel::collect_prefetch_stats() {
  if (!prefetcher_) return;
  prefetch::PrefetchStats s = prefetcher_->stats();
  stats_.bytes_streamed += s.bytes_read;
  stats_.io_busy += s.io_busy;
  stats_.decode_busy += s.decode_busy;
}

prefetch::ExtentHandle StreamedModel::next_extent() {
  auto started = Clock::now();
  auto next = prefetcher_->next();
  stats_.wait += Clock::now() - started;
  if (!next) throw std::runtime_error(next.error().message);
  return std::move(next).value();
}

// Embedding rows on demand: the frames holding the batch's distinct rows are read, verified and
// decoded once each; the rows are gathered into a small table the usual embed() reads.
void StreamedModel::embed(Transformer& transformer, std::span<const std::int32_t> tokens, float* x) {
  if (globals_.tok_embd) {
    transformer.embed(globals_.tok_embd, tokens, x);
    return;
  }
  const pack::TensorInfo& t = *pack_.find_tensor("token_embd.weight");
  const TensorView shape = view_of(t, nullptr);
  auto traits = ggml_type_traits(t.type);
  const std::uint64_t row_bytes = ggml_row_bytes(*traits, std::uint64_t(shape.cols()));
  std::vector<std::int32_t> distinct(tokens.begin(), tokens.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<std::byte> table(distinct.size() * row_bytes);
  std::map<std::size_t, std::vector<std::byte>> frames;
  const auto& info = pack_.extents()[embd_extent_];
  for (std::size_t r = 0; r < distinct.size(); ++r) {
    const std::int32_t id = distinct[r];
    if (id < 0 || id >= shape.rows()) {
      throw std::out_of_range(fmt::format("token id {} outside the vocabulary (0..{})", id, shape.rows() - 1));
    }
    std::uint64_t from = t.offset + std::uint64_t(id) * row_bytes;
    const std::uint64_t end = from + row_bytes;
    while (from < end) {  // a row may straddle two frames
      const auto f = std::size_t(std::upper_bound(embd_frame_raw_offset_.begin(), embd_frame_raw_offset_.end(), from) -
                                 embd_frame_raw_offset_.begin() - 1);
      // Rows come in ascending order, so frames do too: keep only the frames still ahead.
      frames.erase(frames.begin(), frames.lower_bound(f));
      auto [it, added] = frames.try_emplace(f);
      if (added) {
        auto bytes = pack_.read_frame(embd_extent_, f);
        if (!bytes) throw std::runtime_error(bytes.error().message);
        it->second = std::move(bytes).value();
        stats_.embedding_bytes += info.frames[f].disk_bytes;
      }
      const std::uint64_t in_frame = from - embd_frame_raw_offset_[f];
      const std::uint64_t n = std::min<std::uint64_t>(end - from, info.frames[f].raw_bytes - in_frame);
      std::copy_n(it->second.data() + in_frame, n, table.data() + r * row_bytes + (from - (t.offset + std::uint64_t(id) * row_bytes)));
      from += n;
    }
  }
  std::vector<std::int32_t> local(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    local[i] = std::int32_t(std::lower_bound(distinct.begin(), distinct.end(), tokens[i]) - distinct.begin());
  }
  TensorView rows = shape;
  rows.dims[1] = std::int64_t(distinct.size());
  rows.data = table.data();
  rows.bytes = table.size();
  transformer.embed(rows, local, x);
}

void StreamedModel::forward_pass(Transformer& transformer, const Batch& batch, float* logits) {
  const auto pass_started = Clock::now();
  const std::int64_t n = batch.n_tokens();
  // The per-pass summary lane: one span per forward pass (a decode step or a prompt chunk).
  TraceScope pass(options_.prefetch.trace, "pass", fmt::format("pass {}", stats_.passes),
                  {{"tokens", n}, {"sequences", std::int64_t(batch.spans.size())}, {"streamed_bytes", std::int64_t(streamed_bytes_per_pass_)}});
  std::vector<float> x(std::size_t(n * config_.n_embd));  // (n, d): the residual stream
  embed(transformer, batch.tokens, x.data());
  ensure_prefetcher();
  TraceRecorder* trace = options_.prefetch.trace;
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    prefetch::ExtentHandle handle;
    BlockWeights streamed;
    const BlockWeights* w = &resident_blocks_[std::size_t(il)];
    if (!block_resident_[std::size_t(il)]) {
      handle = next_extent();
      streamed = bind_block_at(il, handle.bytes());
      w = &streamed;
    }
    const auto started = Clock::now();
    TraceScope compute(trace, "compute", fmt::format("blk.{}", il),
                       {{"tokens", n}, {"sequences", std::int64_t(batch.spans.size())}, {"resident", std::int64_t(block_resident_[std::size_t(il)])}});
    transformer.block(il, *w, globals_, x.data(), batch.spans);
    stats_.compute_busy += Clock::now() - started;
  }
  if (options_.stream_head) {
    stream_head(transformer, batch, x.data(), logits);
  } else {
    const auto started = Clock::now();
    TraceScope compute(trace, "compute", "head", {{"rows", std::int64_t(batch.logit_rows.size())}});
    transformer.head_rows(globals_, x.data(), batch.logit_rows, logits);
    stats_.compute_busy += Clock::now() - started;
  }
  ++stats_.passes;
  stats_.wall += Clock::now() - pass_started;
}

// The head streams in pieces of whole frames; a piece's bytes hold whole rows of the output
// matrix plus, at either end, part of a row that continues in the next piece: those parts are
// joined in head_carry_ and that row is computed on its own.
void StreamedModel::stream_head(Transformer& transformer, const Batch& batch, const float* x, float* logits) {
  if (batch.logit_rows.empty()) {  // still consume the pieces: the plan repeats per pass
    for (std::size_t p = 0; p < head_piece_raw_begin_.size(); ++p) next_extent();
    return;
  }
  const pack::TensorInfo& t = *pack_.find_tensor(pack_.find_tensor("output.weight") ? "output.weight" : "token_embd.weight");
  const TensorView whole = view_of(t, nullptr);
  const std::uint64_t row_bytes = ggml_row_bytes(*ggml_type_traits(t.type), std::uint64_t(whole.cols()));
  auto rows_view = [&](const std::byte* data, std::int64_t n_rows) {
    TensorView v = whole;
    v.dims[1] = n_rows;
    v.data = data;
    v.bytes = row_bytes * std::uint64_t(n_rows);
    return v;
  };
  TraceRecorder* trace = options_.prefetch.trace;
  const std::int64_t n_vocab = config_.n_vocab;
  auto started = Clock::now();
  transformer.head_norm(globals_, x, batch.logit_rows);
  stats_.compute_busy += Clock::now() - started;
  head_carry_.resize(row_bytes);
  std::uint64_t carried = 0;
  for (std::size_t p = 0; p < head_piece_raw_begin_.size(); ++p) {
    prefetch::ExtentHandle piece = next_extent();
    started = Clock::now();
    TraceScope compute(trace, "compute", fmt::format("head piece {}", p), {{"rows", std::int64_t(batch.logit_rows.size())}});
    const std::uint64_t begin = head_piece_raw_begin_[p], end = begin + piece.bytes().size();
    const std::uint64_t lo = std::max(begin, t.offset), hi = std::min(end, t.offset + t.bytes);
    std::uint64_t at = lo;  // raw offset in the extent
    auto piece_bytes = [&](std::uint64_t offset) { return piece.bytes().data() + (offset - begin); };
    if (carried > 0 && at < hi) {
      const std::uint64_t take = std::min(row_bytes - carried, hi - at);
      std::copy_n(piece_bytes(at), take, head_carry_.data() + carried);
      carried += take;
      at += take;
      if (carried == row_bytes) {
        transformer.head_part(rows_view(head_carry_.data(), 1), std::int64_t((at - t.offset) / row_bytes) - 1, logits, n_vocab);
        carried = 0;
      }
    }
    if (at < hi && carried == 0) {
      const auto whole_rows = std::int64_t((hi - at) / row_bytes);
      if (whole_rows > 0) {
        transformer.head_part(rows_view(piece_bytes(at), whole_rows), std::int64_t((at - t.offset) / row_bytes), logits, n_vocab);
        at += std::uint64_t(whole_rows) * row_bytes;
      }
      carried = hi - at;
      std::copy_n(piece_bytes(at), carried, head_carry_.data());
    }
    stats_.compute_busy += Clock::now() - started;
  }
  SLUICE_ASSERT(carried == 0);
  transformer.head_finish(logits, std::int64_t(batch.logit_rows.size()), n_vocab);
}

std::vector<std::byte> StreamedModel::read_raw_range(std::uint32_t extent, std::uint64_t from, std::uint64_t n) {
  std::vector<std::byte> out(n);
  std::uint64_t frame_begin = 0, done = 0;
  const auto& frames = pack_.extents()[extent].frames;
  for (std::size_t f = 0; f < frames.size() && done < n; ++f) {
    const std::uint64_t frame_end = frame_begin + frames[f].raw_bytes;
    if (frame_end > from + done) {
      auto bytes = pack_.read_frame(extent, f);
      if (!bytes) throw std::runtime_error(bytes.error().message);
      const std::uint64_t in_frame = from + done - frame_begin;
      const std::uint64_t take = std::min(n - done, frames[f].raw_bytes - in_frame);
      std::copy_n(bytes.value().data() + in_frame, take, out.data() + done);
      done += take;
    }
    frame_begin = frame_end;
  }
  if (done != n) throw std::runtime_error(fmt::format("{}: extent {} is shorter than its tensor table says", path_, extent));
  return out;
}

void StreamedModel::evaluate(Transformer& transformer, std::span<const std::int32_t> tokens, std::int64_t pos0,
                             bool all_logits, std::vector<float>& logits) {
  forward(transformer, single_sequence_batch(tokens, pos0, all_logits), logits);
}

}  // namespace sluice
