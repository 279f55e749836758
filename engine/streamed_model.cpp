#include "engine/streamed_model.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <optional>
#include <fmt/format.h>
#include <stdexcept>

#include "common/assert.hpp"
#include "common/error.hpp"
#include "common/memory.hpp"
#include "common/trace.hpp"
#include "engine/generate.hpp"
#include "io/fault_backend.hpp"
#include "model/convert.hpp"
#include "model/gguf_source.hpp"
#include "model/pack_source.hpp"
#include "model/tensor_names.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

namespace {
TensorView view_of(const SourceTensor& t, const std::byte* unit_data) {
  TensorView v;
  v.type = static_cast<GgmlType>(t.type);
  for (auto d : t.shape) v.dims.push_back(static_cast<std::int64_t>(d));
  v.data = unit_data;
  if (unit_data) v.data += t.offset;
  v.bytes = t.bytes;
  return v;
}

Exception missing(const std::string& path, std::string what) {
  return Exception(ErrorContext{ErrorKind::corrupt, path}, fmt::format("{}: {}", path, what));
}

std::uint32_t unit_of(const ModelSource& source, std::string_view tensor) {
  const SourceTensor* t = source.find_tensor(tensor);
  if (!t) throw missing(source.path(), fmt::format("no tensor '{}'", tensor));
  return t->extent;
}

std::unique_ptr<ModelSource> open_pack(const std::string& path, const StreamOptions& options) {
  return PackSource::open(path, pack::PackOptions{options.fault});
}
}  // namespace

double StreamStats::overlap() const {
  const auto busiest = std::max(io_busy, compute_busy);
  return busiest.count() > 0 ? double(wall.count()) / double(busiest.count()) : 0.0;
}

StreamedModel::StreamedModel(const std::string& path, StreamOptions options)
    : StreamedModel(open_pack(path, options), options) {}

StreamedModel::StreamedModel(std::unique_ptr<ModelSource> source, StreamOptions options)
    : options_(std::move(options)), source_(std::move(source)), path_(source_->path()) {
  metadata_ = source_->metadata();
  // Tensors against hyper-parameters, and every "blk.N" unit's N below n_layer, before any
  // index or buffer is taken from them.
  config_ = source_->checked_config();
  const auto& units = source_->units();
  block_unit_.assign(std::size_t(config_.n_layer), UINT32_MAX);
  std::vector<std::int64_t> unit_block(units.size(), -1);  // unit -> block, -1: not a block's
  for (std::uint32_t i = 0; i < units.size(); ++i) {
    if (units[i].name.ends_with(names::kExpertsSuffix)) {  // a block's experts (a GGUF opened experts apart, a pack's expert extent): read one by one
      unit_block[i] = -2;
      continue;
    }
    const std::optional<std::int64_t> il = names::block_extent_index(units[i].name, config_.n_layer);
    if (!il) continue;
    block_unit_[std::size_t(*il)] = i;
    unit_block[i] = *il;
  }
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (block_unit_[std::size_t(il)] == UINT32_MAX) {
      throw missing(path_, fmt::format("no extent '{}' for block {}", names::block_name(il), il));
    }
  }
  block_resident_.assign(std::size_t(config_.n_layer), false);
  for (std::int64_t il : options_.resident_blocks) {
    if (il < 0 || il >= config_.n_layer) throw std::invalid_argument(fmt::format("resident block {} out of range", il));
    block_resident_[std::size_t(il)] = true;
  }
  embd_unit_ = unit_of(*source_, names::kTokenEmbd);
  const bool tied = source_->find_tensor(names::kOutput) == nullptr;
  head_unit_ = tied ? embd_unit_ : unit_of(*source_, names::kOutput);
  head_tensor_ = source_->find_tensor(tied ? names::kTokenEmbd : names::kOutput);
  (void)unit_of(*source_, names::kOutputNorm);  // present, resident or with the head

  // What a pass may stream: the streamed blocks (whole, or in pieces), then the head's pieces.
  const bool pieced = options_.block_piece_slot_bytes > 0 && blocks_stream_in_pieces(config_);
  std::vector<ReadUnit> ring_table = units;
  block_pieces_.resize(std::size_t(config_.n_layer));
  block_piece_units_.resize(std::size_t(config_.n_layer));
  block_small_.resize(std::size_t(config_.n_layer));
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (block_resident_[std::size_t(il)]) continue;
    const std::uint32_t unit = block_unit_[std::size_t(il)];
    streamed_blocks_.push_back(unit);
    if (!pieced) {
      block_reads_.push_back(unit);
      continue;
    }
    UnitPieces& cut = block_pieces_[std::size_t(il)];
    cut = cut_block_pieces(*source_, unit, il, options_.block_piece_slot_bytes);
    for (const prefetch::ExtentPiece& piece : cut.pieces) {
      block_piece_units_[std::size_t(il)].push_back(std::uint32_t(ring_table.size()));
      block_reads_.push_back(std::uint32_t(ring_table.size()));
      ring_table.push_back(piece.info);
    }
    FrameCache frames;  // the block's norms and biases share frames
    for (const SourceTensor* t : cut.small) {
      std::vector<std::byte> bytes(t->bytes);
      read_unit_range(*source_, unit, t->offset, bytes, &frames);
      block_small_[std::size_t(il)].emplace_back(t, std::move(bytes));
    }
    source_->release_page_cache(unit);  // the frames came through the page cache; the ring reads O_DIRECT
  }
  if (options_.stream_head) {
    const std::uint64_t max_slot = options_.head_piece_slot_bytes > 0 ? options_.head_piece_slot_bytes : UINT64_MAX;
    head_cut_ = cut_tensor_pieces(*source_, *head_tensor_, max_slot);
    for (const prefetch::ExtentPiece& piece : head_cut_.pieces) {
      head_pieces_.push_back(std::uint32_t(ring_table.size()));
      ring_table.push_back(piece.info);
    }
  }
  std::vector<std::uint32_t> ring_for = block_reads_;
  ring_for.insert(ring_for.end(), head_pieces_.begin(), head_pieces_.end());
  for (std::uint32_t u : ring_for) streamed_bytes_per_pass_ += ring_table[u].disk_bytes;

  resident_.resize(units.size());
  for (std::uint32_t i = 0; i < units.size(); ++i) {
    if (unit_block[i] == -2) continue;
    if (unit_block[i] >= 0 && !block_resident_[std::size_t(unit_block[i])]) continue;
    if (options_.stream_head && i == head_unit_) continue;
    if (options_.embed_on_demand && i == embd_unit_ && !(i == head_unit_ && !options_.stream_head)) continue;
    // A compressed unit is read, verified and decoded a frame at a time: its stored bytes are
    // never staged beside the decoded ones (twice the unit at once: 340 MB for Gemma 3's head).
    resident_[i] = source_->read_whole_unit(i);
    // The unit came through the page cache; under a memory cgroup those pages count against
    // the limit beside the copy we keep, so hand them back at once.
    source_->release_page_cache(i);
    // Pinned so a cgroup under pressure reclaims page cache, never these (best effort).
    mlock(resident_[i].data(), resident_[i].size());
    resident_bytes_ += resident_[i].size();
  }
  auto resident_view = [this](std::string_view name) -> TensorView {
    const SourceTensor* t = source_->find_tensor(name);
    if (!t) return {};
    return view_of(*t, resident_[t->extent].empty() ? nullptr : resident_[t->extent].data());
  };
  globals_.tok_embd = resident_view(names::kTokenEmbd);
  globals_.output = tied ? globals_.tok_embd : resident_view(names::kOutput);
  globals_.output_norm = resident_view(names::kOutputNorm);
  globals_.rope_freqs = resident_view(names::kRopeFreqs);
  // Small globals that live in a streamed unit (the head's, in some packs) are copied out once.
  for (auto [name, view] : {std::pair{names::kOutputNorm, &globals_.output_norm}, std::pair{names::kRopeFreqs, &globals_.rope_freqs}}) {
    const SourceTensor* t = source_->find_tensor(name);
    if (!t || *view) continue;
    small_streamed_.emplace_back(t->bytes);
    read_unit_range(*source_, t->extent, t->offset, small_streamed_.back());
    *view = view_of(*t, nullptr);
    view->data = small_streamed_.back().data();
  }

  const bool experts_apart = std::any_of(unit_block.begin(), unit_block.end(), [](std::int64_t b) { return b == -2; });
  if (options_.expert_slots_per_layer >= 0) {
    if (!config_.is_moe() || !experts_apart) {
      throw std::invalid_argument(fmt::format("{}: experts read one by one need a mixture-of-experts model with its experts apart (a GGUF "
                                              "opened so, or a pack converted with expert extents)", path_));
    }
    ExpertStoreOptions eo;
    eo.slots_per_layer = options_.expert_slots_per_layer;
    eo.layer_slots = options_.expert_layer_slots;
    eo.backend = options_.prefetch.io;
    eo.fault = options_.fault;
    eo.trace = options_.prefetch.trace;
    eo.guesses = options_.expert_guesses;
    expert_store_ = std::make_unique<ExpertStore>(*source_, config_, eo);
  } else if (experts_apart) {
    throw std::invalid_argument(fmt::format("{}: the source holds the experts apart; set expert_slots_per_layer", path_));
  }
  resident_blocks_.resize(std::size_t(config_.n_layer));
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (block_resident_[std::size_t(il)]) {
      resident_blocks_[std::size_t(il)] = bind_block_at(il, resident_[block_unit_[std::size_t(il)]].span());
    }
  }
  if (!ring_for.empty()) {  // the ring, once, for the model's life
    // One reader per file the units lie in (a split GGUF's shards).
    auto prefetcher = std::make_unique<prefetch::Prefetcher>(source_->files(), std::move(ring_table), prefetch::RingFor(ring_for),
                                                             options_.prefetch,
                                                             options_.fault ? io::fault_wrapper(*options_.fault) : io::BackendWrapper{});
    schedule_ = std::make_unique<PassSchedule>(std::move(prefetcher));
  }
  cpu_at_open_ = process_cpu_seconds();
}

StreamedModel::~StreamedModel() = default;

void StreamedModel::release_vocabulary_metadata() {
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}) {
    source_->erase_metadata_key(key);
  }
}

std::int64_t StreamedModel::resident_block_count() const {
  return std::count(block_resident_.begin(), block_resident_.end(), true);
}

prefetch::ExtentHandle StreamedModel::take(std::uint32_t unit) {
  try {
    return schedule_->take(unit);
  } catch (const Exception& e) {
    const ErrorContext& c = e.context();
    const pack::ExtentInfo& info = schedule_->unit(unit);
    if (c.kind != ErrorKind::checksum || c.offset < 0 || c.frame < 0 || std::size_t(c.frame) >= info.frames.size()) throw;
    const std::string tensors = source_->tensors_at(c.file, std::uint64_t(c.offset), info.frames[std::size_t(c.frame)].disk_bytes);
    if (tensors.empty()) throw;
    throw Exception(c, fmt::format("{} (tensors in that chunk: {})", e.what(), tensors));
  }
}

BlockWeights StreamedModel::bind_pieced_block(std::int64_t il, PiecedRows& rows) const {
  const UnitPieces& cut = block_pieces_[std::size_t(il)];
  TensorLookup lookup = [&](std::string_view name) -> TensorView {
    for (std::size_t s = 0; s < cut.segments.size(); ++s) {
      if (cut.segments[s].tensor->name == name) return rows.view(s);
    }
    for (const auto& [t, bytes] : block_small_[std::size_t(il)]) {
      if (t->name != name) continue;
      TensorView v = view_of(*t, nullptr);
      v.data = bytes.data();
      return v;
    }
    return {};
  };
  BlockWeights w = bind_block(lookup, config_, il, path_, false);
  w.rows = &rows;
  return w;
}

BlockWeights StreamedModel::bind_block_at(std::int64_t il, std::span<const std::byte> unit_bytes) const {
  const std::uint32_t unit = block_unit_[std::size_t(il)];
  TensorLookup lookup = [&](std::string_view name) -> TensorView {
    const SourceTensor* t = source_->find_tensor(name);
    if (!t || t->extent != unit) return {};
    return view_of(*t, unit_bytes.data());
  };
  BlockWeights w = bind_block(lookup, config_, il, path_, expert_store_ != nullptr);
  w.experts = expert_store_.get();
  return w;
}

StreamStats StreamedModel::stats() const {
  StreamStats s = stats_;
  s.cpu_seconds = process_cpu_seconds() - cpu_at_open_;
  if (schedule_) {
    prefetch::PrefetchStats p = schedule_->stats();
    s.bytes_streamed += p.bytes_read;
    s.io_busy += p.io_busy;
    s.decode_busy += p.decode_busy;
    s.verify_busy += p.verify_busy;
    s.copy_busy += p.copy_busy;
    s.wait += schedule_->wait();
  }
  if (expert_store_) {
    const ExpertStoreStats e = expert_store_->stats();
    s.expert_hits = e.cache.hits;
    s.expert_accesses = e.cache.hits + e.cache.late + e.cache.misses;
    s.expert_reads = e.expert_reads;
    s.expert_bytes = e.bytes_read;
    s.expert_wait = e.wait;
    s.expert_verify = e.verify;
    s.expert_guess_reads = e.guess_reads;
    s.expert_guess_used = e.guess_used;
    s.wait += e.wait;
    s.compute_busy -= std::min(e.wait, s.compute_busy);
    s.io_busy += e.io_busy;
  }
  return s;
}

// Embedding rows on demand: the frames holding the batch's distinct rows are read, verified and
// decoded once each; the rows are gathered into a small table the usual embed() reads.
void StreamedModel::embed(Transformer& transformer, std::span<const std::int32_t> tokens, float* x) {
  if (globals_.tok_embd) {
    transformer.embed(globals_.tok_embd, tokens, x);
    return;
  }
  const SourceTensor& t = *source_->find_tensor(names::kTokenEmbd);
  const TensorView shape = view_of(t, nullptr);
  const std::uint64_t row_bytes = ggml_row_bytes(*ggml_type_traits(t.type), std::uint64_t(shape.cols()));
  std::vector<std::int32_t> distinct(tokens.begin(), tokens.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<std::byte> table(distinct.size() * row_bytes);
  FrameCache frames;  // rows come in ascending order, so a frame two rows share is read once
  for (std::size_t r = 0; r < distinct.size(); ++r) {
    const std::int32_t id = distinct[r];
    if (id < 0 || id >= shape.rows()) {
      throw std::out_of_range(fmt::format("token id {} outside the vocabulary (0..{})", id, shape.rows() - 1));
    }
    read_unit_range(*source_, embd_unit_, t.offset + std::uint64_t(id) * row_bytes,
                    std::span(table.data() + r * row_bytes, row_bytes), &frames);
  }
  stats_.embedding_bytes += frames.stored_bytes_read;
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

void StreamedModel::schedule_pass(bool wants_head) {
  if (!schedule_) return;
  if (!next_blocks_scheduled_) {
    for (std::uint32_t u : block_reads_) schedule_->append(u);
  }
  if (wants_head) {
    for (std::uint32_t u : head_pieces_) schedule_->append(u);
  }
  next_blocks_scheduled_ = options_.read_ahead && !streamed_blocks_.empty();
  if (next_blocks_scheduled_) {
    for (std::uint32_t u : block_reads_) schedule_->append(u);
  }
}

void StreamedModel::forward_pass(Transformer& transformer, const Batch& batch, float* logits) {
  try {
    run_pass(transformer, batch, logits);
  } catch (...) {
    // Whatever threw (a read, a compute step, a bad token), the pass's handles are gone by now:
    // drop what it scheduled and what it read ahead, so the next pass starts at its first block.
    if (schedule_) schedule_->reset();
    if (expert_store_) expert_store_->reset();
    next_blocks_scheduled_ = false;
    throw;
  }
}

void StreamedModel::run_pass(Transformer& transformer, const Batch& batch, float* logits) {
  const auto pass_started = Clock::now();
  const std::int64_t n = batch.n_tokens();
  const bool wants_head = !batch.logit_rows.empty();
  // The per-pass summary lane: one span per forward pass (a decode step or a prompt chunk).
  TraceScope pass(options_.prefetch.trace, "pass", fmt::format("pass {}", stats_.passes),
                  {{"tokens", n}, {"sequences", std::int64_t(batch.spans.size())}, {"streamed_bytes", std::int64_t(streamed_bytes_per_pass_)}});
  schedule_pass(options_.stream_head && wants_head);  // reads start while the embedding runs
  std::vector<float> x(std::size_t(n * config_.n_embd));  // (n, d): the residual stream
  embed(transformer, batch.tokens, x.data());
  TraceRecorder* trace = options_.prefetch.trace;
  auto take_piece = [this](std::uint32_t unit) { return take(unit); };
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    prefetch::ExtentHandle handle;
    std::optional<PiecedRows> rows;  // a block in pieces: taken as its matmuls reach them
    BlockWeights streamed;
    const BlockWeights* w = &resident_blocks_[std::size_t(il)];
    if (!block_resident_[std::size_t(il)]) {
      if (!block_piece_units_[std::size_t(il)].empty()) {
        rows.emplace(block_pieces_[std::size_t(il)], block_piece_units_[std::size_t(il)], take_piece);
        streamed = bind_pieced_block(il, *rows);
      } else {
        handle = take(block_unit_[std::size_t(il)]);
        streamed = bind_block_at(il, handle.bytes());
      }
      w = &streamed;
    }
    // Experts guessed for the next layer need its router in RAM: a resident block's. (A streamed
    // next block may still be in flight; waiting for it here would stall this layer.)
    if (expert_store_ && options_.expert_guesses && il + 1 < config_.n_layer && block_resident_[std::size_t(il + 1)]) {
      if (w != &streamed) {
        streamed = *w;
        w = &streamed;
      }
      streamed.next = &resident_blocks_[std::size_t(il + 1)];
    }
    const auto started = Clock::now();
    const auto waited = schedule_ ? schedule_->wait() : std::chrono::nanoseconds{0};
    TraceScope compute(trace, "compute", names::block_name(il),
                       {{"tokens", n}, {"sequences", std::int64_t(batch.spans.size())}, {"resident", std::int64_t(block_resident_[std::size_t(il)])}});
    transformer.block(il, *w, globals_, x.data(), batch.spans);
    if (rows) rows->finish();
    // A block in pieces waits for them inside block(): that time is the schedule's, not compute.
    stats_.compute_busy += Clock::now() - started - (schedule_ ? schedule_->wait() - waited : std::chrono::nanoseconds{0});
  }
  if (options_.stream_head) {
    if (wants_head) stream_head(transformer, batch, x.data(), logits);
  } else {
    const auto started = Clock::now();
    TraceScope compute(trace, "compute", "head", {{"rows", std::int64_t(batch.logit_rows.size())}});
    transformer.head_rows(globals_, x.data(), batch.logit_rows, logits);
    stats_.compute_busy += Clock::now() - started;
  }
  // Only the read-ahead of the next pass's blocks is left scheduled.
  SLUICE_ASSERT(!schedule_ || schedule_->queued() == (next_blocks_scheduled_ ? block_reads_.size() : 0));
  ++stats_.passes;
  stats_.wall += Clock::now() - pass_started;
}

// The head streams in pieces of whole frames, its vocabulary rows multiplied as each lands
// (PiecedRows joins a row split between two pieces).
void StreamedModel::stream_head(Transformer& transformer, const Batch& batch, const float* x, float* logits) {
  TraceRecorder* trace = options_.prefetch.trace;
  const std::int64_t n_vocab = config_.n_vocab;
  auto started = Clock::now();
  transformer.head_norm(globals_, x, batch.logit_rows);
  stats_.compute_busy += Clock::now() - started;
  started = Clock::now();
  const auto waited = schedule_->wait();
  TraceScope compute(trace, "compute", "head", {{"rows", std::int64_t(batch.logit_rows.size())}});
  PiecedRows rows(head_cut_, head_pieces_, [this](std::uint32_t unit) { return take(unit); });
  rows.for_each_rows(rows.view(0), [&](std::int64_t first, const TensorView& part) { transformer.head_part(part, first, logits, n_vocab); });
  rows.finish();
  stats_.compute_busy += Clock::now() - started - (schedule_->wait() - waited);
  transformer.head_finish(logits, std::int64_t(batch.logit_rows.size()), n_vocab);
}

void StreamedModel::evaluate(Transformer& transformer, std::span<const std::int32_t> tokens, std::int64_t pos0,
                             bool all_logits, std::vector<float>& logits) {
  forward(transformer, single_sequence_batch(tokens, pos0, all_logits), logits);
}

}  // namespace sluice
