// A streamed tensor cut into pieces that fit small ring slots, and the rows of its matrices as the
// pieces arrive (DESIGN.md §4). A 13B block is 172 MiB: a ring of whole blocks holds four of them
// (688 MiB of the budget), and on a virtual disk memory that large fills 11-19% slower than the
// 32 MiB a queue of reads keeps in flight (DESIGN.md §7). In pieces, the ring is a few MiB per slot:
// a pass reads each matrix of a block in the order Transformer::block multiplies by them (q, k,
// v, output, gate, up, down), and each matmul runs over the rows a piece holds as soon as it lands.
//
//   file:     | norm | q | k | v | o | norm | gate | up | down |   (synth's order; a real GGUF's varies)
//   segments:  q k v o gate up down                               (compute order; the norms stay in RAM)
//   runs:     segments back to back in the file (gaps up to a frame) are read as one run
//   pieces:   each run's frames, cut into slots of at most max_slot_bytes; a frame a run shares
//             with the next (a real GGUF's order) is read twice: `disk_bytes` counts it twice
//
// Rows are whole in a piece except where a piece ends mid-row: that row's two parts are joined in
// a carry buffer and multiplied on their own. Every kernel computes an output element the same way
// whatever rows share its call, so the logits are bit-identical to the whole block's.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/weights.hpp"
#include "model/model_config.hpp"
#include "model/model_source.hpp"
#include "prefetch/prefetcher.hpp"

namespace sluice {

// One matrix of a pieced unit: its bytes in the unit's raw bytes.
struct PieceSegment {
  const SourceTensor* tensor = nullptr;
  std::uint64_t row_bytes = 0;
  std::size_t first_piece = 0;  // the piece that holds its first byte
};

struct UnitPieces {
  std::uint32_t unit = 0;
  std::vector<PieceSegment> segments;          // in the order they are multiplied by
  std::vector<prefetch::ExtentPiece> pieces;   // in the order they are read
  std::vector<const SourceTensor*> small;      // the unit's other tensors (norms, biases)
  std::uint64_t disk_bytes = 0;                // stored bytes of every piece
  std::uint64_t slot_bytes = 0;                // the largest piece's ring slot
  std::int64_t max_piece_rows = 0;             // the most rows of one matrix one piece holds (+1 carried)
};

// Whether a block of `config` may stream in pieces: dense blocks. (A mixture-of-experts block's
// stacked experts are sliced by expert, not by rows.)
bool blocks_stream_in_pieces(const ModelConfig& config);

// Block `il` (the unit `unit` of `source`) in pieces of at most max_slot_bytes of ring slot.
UnitPieces cut_block_pieces(const ModelSource& source, std::uint32_t unit, std::int64_t il, std::uint64_t max_slot_bytes);
// One tensor (a streamed output head) in pieces.
UnitPieces cut_tensor_pieces(const ModelSource& source, const SourceTensor& tensor, std::uint64_t max_slot_bytes);

// The rows of a pass's pieced matrices, taken from the ring piece by piece. One per unit and pass:
// construct it, bind views with view(), let the forward pass call for_each_rows() for each
// segment in order, then finish(). Every piece the unit reads is taken (each only once), so the
// schedule stays in step even where a matrix is not multiplied by.
class PiecedRows final : public WeightRows {
 public:
  using Take = std::function<prefetch::ExtentHandle(std::uint32_t ring_unit)>;
  // `ring_units`: the ring-table index of each of `pieces.pieces`.
  PiecedRows(const UnitPieces& pieces, std::span<const std::uint32_t> ring_units, Take take);

  // Segment s's view: its type and shape, and as data a tag that holds() recognises (never bytes
  // to read: the rows come from for_each_rows).
  TensorView view(std::size_t s) const;
  bool holds(const TensorView& tensor) const override;
  // fn(first row, those rows) over the whole matrix, in order. Segments must come in order.
  void for_each_rows(const TensorView& tensor, const RowsFn& fn) override;
  // Takes any piece not yet taken and releases the last one.
  void finish();

 private:
  void advance_to(std::size_t piece);  // releases the current piece and takes up to `piece`

  const UnitPieces& pieces_;
  std::span<const std::uint32_t> ring_units_;
  Take take_;
  std::array<std::byte, 16> tags_{};  // view(s).data = &tags_[s]
  std::size_t next_segment_ = 0;
  std::size_t current_ = SIZE_MAX;    // index of the piece held, SIZE_MAX: none yet
  prefetch::ExtentHandle handle_;
  std::vector<std::byte> carry_;      // a row split between two pieces
};

}  // namespace sluice
