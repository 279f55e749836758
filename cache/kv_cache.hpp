// The KV cache of every sequence in flight, layer by layer (DESIGN.md §5). Two kinds behind one
// interface:
//  - resident: every layer of every sequence in RAM (fp16 or q8_0);
//  - spilled: the cache lives in a scratch file; only two layers are in RAM at a time. The forward
//    pass walks layers in order, so while block L computes, layer L+1's K/V is read in the
//    background (by one reader thread that lives as long as the cache), and after block L the
//    positions it wrote go back to the file. Every read and write goes through io::File (the
//    io/ retry policy; errors name the file, offset and errno).
//
// The forward pass brackets each block with begin_layer(il) / end_layer(il, writes); view() is
// valid between the two. Sequences are numbered 0..n_seq-1 (slots); clear() forgets a slot's
// positions so a new sequence can reuse it, truncate() the positions from some length on (the
// drafted tokens a verification pass rejected, engine/engine.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "compute/views.hpp"

namespace sluice::io {
struct FaultPlan;
}  // namespace sluice::io

namespace sluice::cache {

// Sliding-window layers (gemma3's local layers, gpt-oss's even layers) attend to the last
// `window` positions only, so a layer marked in ring_layers keeps a ring of ring_rows() rows per
// sequence, position p in row p % ring_rows(), instead of n_ctx rows: the window plus
// `ring_slack` rows, so that a pass can store up to ring_slack + 1 positions before it attends
// (store_chunk()) and a truncation of up to ring_slack positions keeps the window whole. With
// n_ctx <= window + ring_slack every layer keeps n_ctx rows.
struct KvShape {
  std::int64_t n_layer = 0;
  std::int64_t row_floats = 0;  // n_head_kv * head_dim
  std::int64_t n_ctx = 0;       // positions per sequence
  std::int32_t n_seq = 1;
  compute::KvType type = compute::KvType::f16;
  std::int64_t window = 0;                    // sliding window of the ring layers (0: none)
  std::vector<bool> ring_layers;              // n_layer entries, or empty: no ring layer
  std::int64_t ring_slack = kKvRingSlack;

  static constexpr std::int64_t kKvRingSlack = 256;

  std::int64_t row_bytes() const { return compute::kv_row_bytes(type, row_floats); }
  std::int64_t ring_rows() const { return window > 0 && window + ring_slack < n_ctx ? window + ring_slack : 0; }
  bool ring(std::int64_t il) const {
    return ring_rows() > 0 && il >= 0 && il < std::int64_t(ring_layers.size()) && ring_layers[std::size_t(il)];
  }
  bool any_ring() const;
  std::int64_t rows(std::int64_t il) const { return ring(il) ? ring_rows() : n_ctx; }
  // The most positions of one sequence a pass may store in a ring layer before attending (the
  // forward pass stores and attends in pieces of this size); n_ctx without ring layers.
  std::int64_t store_chunk() const { return any_ring() ? ring_slack + 1 : n_ctx; }
  std::uint64_t plane_bytes(std::int64_t il) const { return std::uint64_t(rows(il)) * std::uint64_t(row_bytes()); }
  std::uint64_t layer_bytes(std::int64_t il) const { return 2 * std::uint64_t(n_seq) * plane_bytes(il); }
  std::uint64_t total_bytes() const;
  std::uint64_t largest_layer_bytes() const;
};

// Positions [pos0, pos0 + n) of sequence `seq` were written in the current layer.
struct KvWrite {
  std::int32_t seq = 0;
  std::int64_t pos0 = 0;
  std::int64_t n = 0;
};

struct KvStats {
  std::uint64_t bytes_read = 0;     // spilled: bytes read back from the scratch file
  std::uint64_t bytes_written = 0;  // spilled: bytes written to it
  double read_wait_seconds = 0;     // time begin_layer() waited for a read
};

struct KvSpillOptions {
  // Tests: number every read and write of the scratch file with this plan
  // (io/fault_backend.hpp). Must outlive the cache.
  const io::FaultPlan* fault = nullptr;
};

// Errors: begin_layer() and end_layer() of a spilled cache throw sluice::Exception (ErrorKind::io)
// naming the scratch file, offset and errno when a read or write fails (after the io/ retries). The cache
// stays usable: a layer whose read failed is read again by the next begin_layer() of it.
class KvCache {
 public:
  explicit KvCache(KvShape shape) : shape_(shape) {}
  virtual ~KvCache() = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const KvShape& shape() const { return shape_; }
  virtual void begin_layer(std::int64_t il) = 0;
  virtual compute::KvLayerView view(std::int64_t il, std::int32_t seq) = 0;
  virtual void end_layer(std::int64_t il, std::span<const KvWrite> writes) = 0;
  void clear(std::int32_t seq) { (void)truncate(seq, 0); }
  // Forgets positions >= `length` of sequence `seq` (they are written again before any pass reads
  // them) and returns how many positions stay: `length`, or 0 where a ring layer no longer holds
  // the window that position `length` attends to (the positions were overwritten by later ones:
  // the caller then evaluates the sequence again from position 0). clear(seq) is truncate(seq, 0).
  [[nodiscard]] virtual std::int64_t truncate(std::int32_t seq, std::int64_t length) = 0;
  virtual std::uint64_t memory_bytes() const = 0;  // RAM this cache holds
  virtual bool spilled() const = 0;
  virtual KvStats stats() const { return {}; }

 protected:
  // end_layer(): the positions written so far (per sequence, the end of the highest write).
  void note_writes(std::span<const KvWrite> writes);
  // truncate(): the positions that stay (above), and the new high-water mark.
  std::int64_t keep(std::int32_t seq, std::int64_t length);

  KvShape shape_;

 private:
  std::vector<std::int64_t> written_end_ = std::vector<std::int64_t>(std::size_t(shape_.n_seq), 0);
};

// Throws std::invalid_argument for an impossible shape (q8_0 with a row not a multiple of 32).
std::unique_ptr<KvCache> make_resident_kv_cache(const KvShape& shape);
// The scratch file is created in `dir` and unlinked at once (nothing is left behind after a
// crash). Throws sluice::Exception naming the directory when it cannot be created.
std::unique_ptr<KvCache> make_spilled_kv_cache(const KvShape& shape, const std::string& dir,
                                               const KvSpillOptions& options = {});
// RAM a spilled cache of this shape holds: two of its largest layers.
std::uint64_t spilled_kv_memory_bytes(const KvShape& shape);
// Size of a spilled cache's scratch file: every layer of every sequence (ring layers their ring),
// each plane padded to 4 KiB. The file is sized sparse (ftruncate) and its blocks are taken as positions are written
// back, so a run takes this much of the directory's disk only when every sequence fills its
// context; until then it holds what was written (4 KiB-rounded per layer, sequence and plane).
std::uint64_t spilled_kv_file_bytes(const KvShape& shape);

}  // namespace sluice::cache
