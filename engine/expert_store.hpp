// The streamed ExpertProvider (engine/expert_provider.hpp, issue 15): a MoE model's experts read
// one by one from a GGUF or a pack and kept in the expert cache (cache/expert_cache.hpp) between
// passes.
//
// An expert of layer L is three slices, one of each of blk.L.ffn_{gate,up,down}_exps.
//  - GGUF: experts are the slowest dimension, so each slice is a contiguous range of the file.
//    Each slice is read O_DIRECT through an io::Reader (one per file, many reads in flight),
//    rounded out to the direct-I/O block, or to the sidecar index's chunks when the model has
//    one, and then verified against it. A slot holds the three rounded ranges back to back:
//
//      slot:  | gate range (rounded) | up range (rounded) | down range (rounded) |
//               ^ the slice starts (offset mod granularity) into its range
//
//  - Pack with expert extents (model/pack_format.hpp item 5): the expert's three slices lie
//    together in one 4096-aligned range of the extent "blk.L.exps", read with ONE O_DIRECT read
//    straight into the slot and verified against the checksums of that expert's own frames:
//
//      slot:  | gate slice | up slice | down slice | pad |   (the expert's bytes, as stored)
//
// Either way acquire() hands out 2-D views of the three slices inside the slot.
//
// Reads go into an ExpertCache slot reserved for the expert; when every slot of the layer is
// pinned or being filled, into one transient buffer (valid until the next acquire). A failed,
// short or corrupt read throws sluice::Exception naming the file, tensor, expert and offset, after
// every read in flight has landed: the reserved slots are released empty (ExpertCache::Fill), so
// nothing half-read is ever served and the next pass reads those experts again.
//
// Not thread-safe: owned by the thread that runs the pass (the cache's contract).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cache/expert_cache.hpp"
#include "common/aligned_buffer.hpp"
#include "common/trace.hpp"
#include "common/units.hpp"
#include "engine/expert_provider.hpp"
#include "io/backend.hpp"
#include "io/reader.hpp"
#include "model/model_source.hpp"

namespace sluice::io {
struct FaultPlan;
}
namespace sluice::gguf {
class GgufIndex;
}

namespace sluice {

struct ExpertStoreOptions {
  std::int32_t slots_per_layer = 0;  // expert cache slots per layer (0: every expert read each pass)
  // One count per layer (n_layer of them), overriding slots_per_layer when not empty: the planner
  // gives the slots that do not divide evenly one more each to some layers.
  std::vector<std::int32_t> layer_slots;
  io::BackendOptions backend;        // O_DIRECT, queue depth
  const io::FaultPlan* fault = nullptr;  // tests: number every expert read with this plan
  TraceRecorder* trace = nullptr;        // expert read spans on the "io" lane
  bool guesses = true;                   // read guessed experts ahead (guess()); false: ignore them
};

struct ExpertStoreStats {
  cache::ExpertCacheStats cache;      // hits, misses, evictions of the expert cache
  std::uint64_t expert_reads = 0;     // experts read from the file (into a slot or the transient buffer)
  std::uint64_t transient_reads = 0;  // of which into the transient buffer (every slot of the layer held)
  std::uint64_t bytes_read = 0;       // bytes requested from the file (the rounded ranges)
  // Where a pass's time went (the pass thread's clock): blocked in acquire() waiting for reads to
  // land, verifying landed bytes against the sidecar index, and the time at least one expert read
  // was in flight (the expert "io busy" that overlap is measured against).
  std::chrono::nanoseconds wait{0};
  std::chrono::nanoseconds verify{0};
  std::chrono::nanoseconds io_busy{0};
  // Guesses (guess()): experts read ahead because the next layer's router, run early, chose them;
  // of those, the ones that layer then requested (the rest were wasted reads).
  std::uint64_t guess_reads = 0;
  std::uint64_t guess_used = 0;
};

class ExpertStore final : public ExpertProvider {
 public:
  // `source` must hold the experts apart (its blk.N.exps units: a GgufSource opened with
  // experts_apart, or a pack with expert extents) and outlive the store. Throws
  // std::invalid_argument when the model has no experts or the source lacks them,
  // std::runtime_error naming the file when a reader cannot be opened.
  ExpertStore(const ModelSource& source, const ModelConfig& config, ExpertStoreOptions options);
  ~ExpertStore() override;  // waits for reads in flight (they write into our buffers)

  // Bytes of one slot (the largest expert's three rounded ranges, or a pack's expert bytes): what
  // the planner multiplies.
  static std::uint64_t slot_bytes_for(const ModelSource& source, const ModelConfig& config);

  void request(std::int64_t layer, std::span<const std::int32_t> experts) override;
  bool ready(std::int64_t layer, std::int32_t expert) override;
  ExpertWeights acquire(std::int64_t layer, std::int32_t expert) override;
  // Starts reads of the absent guessed experts into slots the cache admits them to (never the
  // transient buffer), queued behind every demanded read; they land in the cache unpinned.
  void guess(std::int64_t layer, std::span<const std::int32_t> experts) override;
  // After a pass that threw: waits for reads in flight, drops them and every pin the pass held.
  void reset();

  ExpertStoreStats stats() const;
  std::uint64_t slot_bytes() const { return slot_bytes_; }
  // RAM the store holds: the cache's slots and the transient buffer.
  std::uint64_t memory_bytes() const { return cache_.pool_bytes() + transient_.size(); }
  std::int32_t slots(std::int32_t layer) const { return cache_.slots(layer); }  // expert cache slots of `layer`
  std::int32_t total_slots() const { return cache_.total_slots(); }

 private:
  // One of an expert's three slices (gate, up, down) in layer `layer`.
  struct Part {
    std::string tensor;            // blk.L.ffn_gate_exps.weight, ...
    std::uint32_t file = 0;        // index into source.files()
    std::uint64_t file_offset = 0; // of expert 0's slice
    std::uint64_t slice_bytes = 0; // one expert's share
    std::uint64_t expert_stride = 0;  // from one expert's slice to the next's (GGUF: slice_bytes)
    std::uint64_t slot_offset = 0; // GGUF: where its rounded range starts in a slot; pack: where its slice does
    TensorView shape;              // the 2-D expert view, data null
  };
  struct Layer {
    std::array<Part, 3> parts;
    // A pack's expert extent: expert e is ONE read of expert_bytes at extent_offset + e x
    // expert_bytes (file 0), verified against frames [first_frame[e], first_frame[e + 1]) of unit
    // `unit`. Else (GGUF) one read per part.
    bool packed = false;
    std::uint32_t unit = 0;
    std::uint64_t extent_offset = 0, expert_bytes = 0;
    std::vector<std::size_t> first_frame;
  };
  struct Read {                    // an expert being read
    cache::ExpertKey key;
    std::optional<cache::ExpertCache::Fill> fill;  // empty: into the transient buffer
    std::optional<cache::ExpertCache::Pin> pin;    // once committed
    std::byte* dest = nullptr;
    int parts_left = 3;            // reads still to land (3 slices, or 1 for a pack's expert)
    bool failed = false;
    bool guess = false;            // started by guess()
    bool wanted = true;            // false: a guess no request() has asked for (yet)
    ErrorContext error;
    std::string message;
    std::chrono::steady_clock::time_point started;
  };
  struct Queued {
    std::uint32_t file = 0;
    io::ReadRequest request;
  };

  std::uint64_t read_begin(const Part& p, std::int32_t expert) const;  // rounded-down file offset
  std::uint64_t read_length(const Part& p, std::int32_t expert) const; // rounded-out length
  void complete_packed(Read& r, const io::ReadCompletion& c);  // one landed read of a pack's expert
  void complete_slice(Read& r, const io::ReadCompletion& c);   // one landed slice of a GGUF's expert
  std::uint64_t start_read(cache::ExpertKey key, std::optional<cache::ExpertCache::Fill> fill, std::byte* dest, bool guess = false);
  void pump();                      // submits queued reads while the readers have room, demanded ones first
  void promote(std::uint64_t id);   // a guess was requested: its queued parts go with the demanded
  // Starts reads of requested experts that had no slot at request() time, in request order, into
  // slots freed since (each acquire() releases the expert computed before): the next experts'
  // reads overlap the current one's compute instead of waiting for their own acquire().
  void start_pending();
  void reap(bool block);            // handles finished reads; with block, waits for at least one
  void complete(const io::ReadCompletion& c);
  void drain();                     // waits for every read in flight and forgets them
  [[noreturn]] void fail(const Read& r);

  const ModelSource& source_;
  const gguf::GgufIndex* index_ = nullptr;  // a GGUF's sidecar: reads rounded to its chunks and verified
  ModelConfig config_;
  ExpertStoreOptions options_;
  std::uint64_t granularity_ = kDirectAlign;
  std::vector<Layer> layers_;
  std::uint64_t slot_bytes_ = 0;
  cache::ExpertCache cache_;
  AlignedBuffer transient_;
  std::vector<std::unique_ptr<io::Reader>> readers_;  // by file
  std::deque<Queued> queued_;        // demanded reads not yet submitted
  std::deque<Queued> queued_guesses_;  // guessed ones, submitted when no demanded read waits
  std::map<std::uint64_t, Read> reads_;  // by id (user_data / 4)
  std::map<std::pair<std::int64_t, std::int32_t>, std::uint64_t> read_of_;  // (layer, expert) -> id
  std::map<std::pair<std::int64_t, std::int32_t>, cache::ExpertCache::Pin> held_;  // hits pinned by request
  std::set<std::pair<std::int64_t, std::int32_t>> guessed_;
  std::deque<cache::ExpertKey> pending_;  // requested, absent, no slot yet (request order)  // read as guesses, not yet judged by their layer's request
  std::uint64_t next_id_ = 1;
  ExpertStoreStats stats_;
  std::size_t reads_landing_ = 0;  // reads started whose parts have not all landed
  std::chrono::steady_clock::time_point busy_since_;  // when reads_landing_ last left 0
};

}  // namespace sluice
