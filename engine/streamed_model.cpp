#include "engine/streamed_model.hpp"

#include <fmt/format.h>
#include <stdexcept>

#include "model/convert.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

namespace {
TensorView view_of(const pack::TensorInfo& t, const std::byte* extent_data) {
  TensorView v;
  v.type = static_cast<GgmlType>(t.type);
  for (auto d : t.shape) v.dims.push_back(static_cast<std::int64_t>(d));
  v.data = extent_data + t.offset;
  v.bytes = t.bytes;
  return v;
}
}  // namespace

StreamedModel::StreamedModel(const std::string& path, StreamOptions options)
    : path_(path), options_(std::move(options)), pack_(pack::Pack::open(path)) {
  metadata_ = metadata_of(pack_.metadata(), path_);
  config_ = config_from_metadata(*metadata_);
  const auto& extents = pack_.extents();
  resident_.resize(extents.size());
  block_extent_.assign(std::size_t(config_.n_layer), UINT32_MAX);
  for (std::uint32_t i = 0; i < extents.size(); ++i) {
    const std::string& name = extents[i].name;
    if (name.rfind("blk.", 0) == 0) {
      std::int64_t il = std::stoll(name.substr(4));
      if (il >= 0 && il < config_.n_layer) {
        block_extent_[std::size_t(il)] = i;
        streamed_bytes_per_pass_ += extents[i].disk_bytes;
        continue;
      }
    }
    auto bytes = pack_.read_extent(i);
    if (!bytes) throw std::runtime_error(bytes.error().message);
    resident_[i] = std::move(bytes).value();
    resident_bytes_ += resident_[i].size();
  }
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    if (block_extent_[std::size_t(il)] == UINT32_MAX) {
      throw std::runtime_error(fmt::format("{}: no extent 'blk.{}' for block {}", path_, il, il));
    }
  }
  TensorLookup resident_lookup = [this](std::string_view name) -> TensorView {
    const pack::TensorInfo* t = pack_.find_tensor(name);
    if (!t || resident_[t->extent].empty()) return {};
    return view_of(*t, resident_[t->extent].data());
  };
  globals_ = bind_globals(resident_lookup, config_, path_);
  if (config_.n_vocab == 0) config_.n_vocab = globals_.tok_embd.rows();
}

StreamedModel::~StreamedModel() = default;

BlockWeights StreamedModel::bind_streamed_block(std::int64_t il, std::span<const std::byte> extent_bytes) const {
  const std::uint32_t extent = block_extent_[std::size_t(il)];
  TensorLookup lookup = [&](std::string_view name) -> TensorView {
    const pack::TensorInfo* t = pack_.find_tensor(name);
    if (!t || t->extent != extent) return {};
    return view_of(*t, extent_bytes.data());
  };
  return bind_block(lookup, config_, il, path_);
}

void StreamedModel::ensure_prefetcher() {
  if (prefetcher_ && !prefetcher_->done()) return;
  collect_prefetch_stats();
  std::vector<std::uint32_t> plan;
  plan.reserve(block_extent_.size() * options_.passes_per_ring);
  for (std::size_t p = 0; p < options_.passes_per_ring; ++p) plan.insert(plan.end(), block_extent_.begin(), block_extent_.end());
  prefetcher_.reset();
  prefetcher_ = std::make_unique<prefetch::Prefetcher>(path_, pack_.extents(), std::move(plan), options_.prefetch);
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

void StreamedModel::evaluate(Transformer& transformer, std::span<const std::int32_t> tokens, std::int64_t pos0,
                             bool all_logits, std::vector<float>& logits) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  std::vector<float> x(std::size_t(n * config_.n_embd));
  transformer.embed(globals_.tok_embd, tokens, x.data());
  ensure_prefetcher();
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    auto started = Clock::now();
    auto next = prefetcher_->next();
    stats_.wait += Clock::now() - started;
    if (!next) throw std::runtime_error(next.error().message);
    prefetch::ExtentHandle handle = std::move(next).value();
    TraceScope compute(options_.prefetch.trace, "compute", fmt::format("blk.{}", il), {{"tokens", n}, {"pos0", pos0}});
    transformer.block(il, bind_streamed_block(il, handle.bytes()), globals_, x.data(), n, pos0);
  }
  ++stats_.passes;
  const std::int64_t rows = all_logits ? n : 1;
  logits.resize(std::size_t(rows * config_.n_vocab));
  transformer.head(globals_, x.data(), n, rows, logits.data());
}

}  // namespace sluice
