#include "engine/block_pieces.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "common/assert.hpp"
#include "model/tensor_names.hpp"

namespace sluice {
namespace {
std::uint64_t row_bytes_of(const SourceTensor& t) {
  return ggml_row_bytes(*ggml_type_traits(t.type), t.shape.empty() ? 0 : t.shape[0]);
}

// Cuts `segments` (tensors of `unit`, in compute order) into runs and each run into pieces.
UnitPieces cut(const ModelSource& source, std::uint32_t unit, const std::vector<const SourceTensor*>& segments,
               std::uint64_t max_slot_bytes) {
  UnitPieces out;
  out.unit = unit;
  const pack::ExtentInfo& extent = source.units()[unit];
  std::uint64_t max_piece_raw = 0;
  // Segments at most a frame apart in the file are read as one run: reading the gap (norms and
  // biases, in synth's order) costs no more than the frame two runs would both read.
  std::uint64_t run_gap = 0;
  for (const pack::FrameInfo& f : extent.frames) run_gap = std::max<std::uint64_t>(run_gap, f.raw_bytes);
  for (std::size_t s = 0; s < segments.size();) {
    // One run: segments that follow one another in the file with small gaps.
    std::size_t end = s + 1;
    std::uint64_t run_end = segments[s]->offset + segments[s]->bytes;
    while (end < segments.size() && segments[end]->offset >= run_end && segments[end]->offset - run_end <= run_gap) {
      run_end = segments[end]->offset + segments[end]->bytes;
      ++end;
    }
    const std::size_t first = out.pieces.size();
    for (prefetch::ExtentPiece& p : prefetch::extent_range_pieces(extent, segments[s]->offset, run_end, max_slot_bytes)) {
      out.disk_bytes += p.info.disk_bytes;
      out.slot_bytes = std::max(out.slot_bytes, prefetch::extent_slot_bytes(p.info));
      max_piece_raw = std::max(max_piece_raw, p.info.raw_bytes);
      out.pieces.push_back(std::move(p));
    }
    for (; s < end; ++s) {
      PieceSegment seg;
      seg.tensor = segments[s];
      seg.row_bytes = row_bytes_of(*segments[s]);
      seg.first_piece = first;
      while (seg.first_piece + 1 < out.pieces.size() && out.pieces[seg.first_piece + 1].raw_begin <= seg.tensor->offset) ++seg.first_piece;
      out.max_piece_rows = std::max<std::int64_t>(
          out.max_piece_rows, std::min<std::int64_t>(std::int64_t(seg.tensor->shape.size() > 1 ? seg.tensor->shape[1] : 1),
                                                     std::int64_t(max_piece_raw / std::max<std::uint64_t>(seg.row_bytes, 1)) + 1));
      out.segments.push_back(seg);
    }
  }
  SLUICE_ASSERT_MSG(out.segments.size() <= 16, "too many pieced matrices in one unit");
  return out;
}
}  // namespace

bool blocks_stream_in_pieces(const ModelConfig& config) { return !config.is_moe(); }

UnitPieces cut_block_pieces(const ModelSource& source, std::uint32_t unit, std::int64_t il, std::uint64_t max_slot_bytes) {
  using namespace names;
  std::vector<const SourceTensor*> segments;
  for (std::string_view name : {kAttnQ, kAttnK, kAttnV, kAttnOutput, kFfnGate, kFfnUp, kFfnDown}) {
    const SourceTensor* t = source.find_tensor(block_tensor(il, name));
    if (t && t->extent == unit && t->shape.size() == 2) segments.push_back(t);
  }
  UnitPieces out = cut(source, unit, segments, max_slot_bytes);
  for (const SourceTensor& t : source.tensors()) {
    if (t.extent == unit && std::find(segments.begin(), segments.end(), &t) == segments.end()) out.small.push_back(&t);
  }
  return out;
}

UnitPieces cut_tensor_pieces(const ModelSource& source, const SourceTensor& tensor, std::uint64_t max_slot_bytes) {
  return cut(source, tensor.extent, {&tensor}, max_slot_bytes);
}

PiecedRows::PiecedRows(const UnitPieces& pieces, std::span<const std::uint32_t> ring_units, Take take)
    : pieces_(pieces), ring_units_(ring_units), take_(std::move(take)) {
  SLUICE_ASSERT(ring_units_.size() == pieces_.pieces.size());
}

TensorView PiecedRows::view(std::size_t s) const {
  const SourceTensor& t = *pieces_.segments[s].tensor;
  TensorView v;
  v.type = static_cast<GgmlType>(t.type);
  for (auto d : t.shape) v.dims.push_back(static_cast<std::int64_t>(d));
  v.data = &tags_[s];
  v.bytes = t.bytes;
  return v;
}

bool PiecedRows::holds(const TensorView& tensor) const {
  return tensor.data >= tags_.data() && tensor.data < tags_.data() + pieces_.segments.size();
}

void PiecedRows::advance_to(std::size_t piece) {
  SLUICE_ASSERT(current_ == SIZE_MAX || piece > current_);
  handle_.reset();
  for (std::size_t p = current_ == SIZE_MAX ? 0 : current_ + 1; p <= piece; ++p) {
    handle_ = take_(ring_units_[p]);
    current_ = p;
    if (p < piece) handle_.reset();
  }
}

void PiecedRows::for_each_rows(const TensorView& tensor, const RowsFn& fn) {
  const auto s = std::size_t(tensor.data - tags_.data());
  SLUICE_ASSERT_MSG(holds(tensor) && s == next_segment_, "pieced matrices used out of the order they are read in");
  ++next_segment_;
  const PieceSegment& seg = pieces_.segments[s];
  const SourceTensor& t = *seg.tensor;
  const std::uint64_t row_bytes = seg.row_bytes, begin = t.offset, end = t.offset + t.bytes;
  if (current_ == SIZE_MAX || current_ < seg.first_piece) advance_to(seg.first_piece);
  auto rows_view = [&](const std::byte* data, std::int64_t n_rows) {
    TensorView v = view(s);
    v.dims[1] = n_rows;
    v.data = data;
    v.bytes = row_bytes * std::uint64_t(n_rows);
    return v;
  };
  carry_.resize(row_bytes);
  std::uint64_t at = begin;  // raw offset in the unit
  while (at < end) {
    const prefetch::ExtentPiece* piece = &pieces_.pieces[current_];
    if (piece->raw_begin + handle_.bytes().size() <= at) {
      advance_to(current_ + 1);
      continue;
    }
    SLUICE_ASSERT(piece->raw_begin <= at);
    const std::uint64_t piece_end = std::min(end, piece->raw_begin + handle_.bytes().size());
    const std::byte* data = handle_.bytes().data() + (at - piece->raw_begin);
    const std::uint64_t into_row = (at - begin) % row_bytes;
    const auto row = std::int64_t((at - begin) / row_bytes);
    if (into_row == 0 && piece_end - at >= row_bytes) {
      const auto n_rows = std::int64_t((piece_end - at) / row_bytes);
      fn(row, rows_view(data, n_rows));
      at += std::uint64_t(n_rows) * row_bytes;
      continue;
    }
    // A row split between this piece and the next: its parts are joined first.
    const std::uint64_t part = std::min(row_bytes - into_row, piece_end - at);
    std::copy_n(data, part, carry_.data() + into_row);
    at += part;
    if (into_row + part == row_bytes) fn(row, rows_view(carry_.data(), 1));
  }
}

void PiecedRows::finish() {
  if (!ring_units_.empty() && (current_ == SIZE_MAX || current_ + 1 < ring_units_.size())) advance_to(ring_units_.size() - 1);
  handle_.reset();
}

}  // namespace sluice
