// The expert cache (issue 15): mixture-of-experts weights kept in RAM between passes, one expert
// (its gate, up and down slices, read together) per slot. A token reads only the experts its
// router picks, so unlike the dense blocks (resident_set.hpp: a cyclic scan, where a fixed set is
// optimal) the access pattern repeats unevenly: routers prefer some experts, and a cache that keeps
// the frequent ones saves their reads every token.
//
// Per layer: each layer owns a fixed count of slots (the same for every layer, or one count per
// layer: the planner hands out the budget's whole slots, so some layers get one more than others).
// Every layer is visited once per pass, so a cache shared by all layers would let one busy layer
// evict another's experts just before they are needed again (the cyclic-scan failure of LRU); a
// fixed share per layer cannot.
//
// Policy: least frequently used, recency breaking ties. Frequencies are kept for every expert,
// cached or not (so an expert that keeps coming back wins its slot), and halve each time the layer
// has seen `aging_accesses` accesses, so the cache follows a router whose preferences drift.
// A guessed (prefetched) expert may only evict an expert used less often than itself: a wrong guess
// must not throw out a hot expert; a demanded one evicts the coldest.
//
// Not thread-safe: owned by the thread that runs the pass. Slots are 4 KiB aligned (O_DIRECT reads
// go straight into them) and allocated once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/aligned_buffer.hpp"

namespace sluice::cache {

struct ExpertKey {
  std::int32_t layer = 0;
  std::int32_t expert = 0;
  bool operator==(const ExpertKey&) const = default;
};

struct ExpertCacheStats {
  std::uint64_t hits = 0;       // accesses that found the expert ready in RAM
  std::uint64_t late = 0;       // accesses that found it still being read (a prefetch in flight)
  std::uint64_t misses = 0;     // accesses that had to read it
  std::uint64_t evictions = 0;
  std::uint64_t fills = 0;      // slots filled (demanded and guessed)
  std::uint64_t refused = 0;    // guesses not admitted (the victim was used more often)
  double hit_rate() const {
    const std::uint64_t n = hits + late + misses;
    return n == 0 ? 0.0 : double(hits) / double(n);
  }
};

enum class ExpertState { absent, filling, ready };
enum class FillReason { demand, guess };

class ExpertCache {
 public:
  // `slot_bytes` is rounded up to 4 KiB; a layer's count above n_experts is cut to n_experts.
  // Throws std::bad_alloc when the pool cannot be allocated.
  ExpertCache(std::int32_t n_layers, std::int32_t n_experts, std::int32_t slots_per_layer, std::size_t slot_bytes,
              std::uint32_t aging_accesses = 0 /* 0: 16 x n_experts */);
  // One count per layer (`layer_slots.size()` layers), each >= 0.
  ExpertCache(std::int32_t n_experts, std::span<const std::int32_t> layer_slots, std::size_t slot_bytes,
              std::uint32_t aging_accesses = 0 /* 0: 16 x n_experts */);
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  // A ready expert held in RAM: not evicted while a Pin lives. Move-only.
  class Pin {
   public:
    Pin(Pin&& other) noexcept : cache_(other.cache_), slot_(other.slot_) { other.cache_ = nullptr; }
    Pin& operator=(Pin&&) = delete;
    ~Pin();
    std::span<const std::byte> bytes() const;

   private:
    friend class ExpertCache;
    Pin(ExpertCache* cache, std::int32_t slot) : cache_(cache), slot_(slot) {}
    ExpertCache* cache_;
    std::int32_t slot_;
  };

  // A slot reserved for an expert being read: the caller reads into bytes(), then commit(). A Fill
  // destroyed without commit (the read failed, the pass was abandoned) empties the slot, so a
  // half-read expert is never served. Move-only.
  class Fill {
   public:
    Fill(Fill&& other) noexcept : cache_(other.cache_), slot_(other.slot_) { other.cache_ = nullptr; }
    Fill& operator=(Fill&&) = delete;
    ~Fill();
    std::span<std::byte> bytes() const;
    ExpertKey key() const;
    Pin commit() &&;  // the expert is ready; returns it pinned

   private:
    friend class ExpertCache;
    Fill(ExpertCache* cache, std::int32_t slot) : cache_(cache), slot_(slot) {}
    ExpertCache* cache_;
    std::int32_t slot_;
  };

  ExpertState state(ExpertKey key) const;
  // Counts one use of `key` by the pass (frequency, recency, and hit/late/miss by its state now).
  void record_access(ExpertKey key);
  // The expert, pinned; nullopt unless it is ready.
  std::optional<Pin> pin(ExpertKey key);
  // Reserves a slot of key.layer for `key` (which must be absent), evicting the least frequently
  // (then least recently) used unpinned ready expert there. nullopt when every slot of the layer is
  // pinned or filling, or, for a guess, when the victim was used more often than `key`.
  std::optional<Fill> reserve(ExpertKey key, FillReason reason);

  const ExpertCacheStats& stats() const { return stats_; }
  std::int32_t slots(std::int32_t layer) const;  // the slots layer `layer` owns
  std::int32_t total_slots() const { return std::int32_t(slots_.size()); }
  std::size_t slot_bytes() const { return slot_bytes_; }
  std::uint64_t pool_bytes() const { return pool_.capacity(); }
  std::uint32_t frequency(ExpertKey key) const { return frequency_[index(key)]; }

 private:
  struct Slot {
    ExpertKey key;
    ExpertState state = ExpertState::absent;
    std::int32_t pins = 0;
    std::uint64_t last_use = 0;
  };
  std::size_t index(ExpertKey key) const;
  void touch_pool();  // faults the pool's pages in once, off the pass's path
  void unpin(std::int32_t slot);
  void abandon(std::int32_t slot);

  std::int32_t n_layers_, n_experts_;
  std::size_t slot_bytes_;
  std::uint32_t aging_accesses_;
  std::vector<std::int32_t> first_slot_;    // n_layers + 1: layer L owns slots [first_slot_[L], first_slot_[L + 1])
  AlignedBuffer pool_;
  std::vector<Slot> slots_;                 // every layer's slots, layer by layer
  std::vector<std::int32_t> slot_of_;       // n_layers x n_experts: slot index or -1
  std::vector<std::uint32_t> frequency_;    // n_layers x n_experts, halved by aging
  std::vector<std::uint32_t> layer_accesses_;  // since the layer's last aging
  std::uint64_t clock_ = 0;
  ExpertCacheStats stats_;
};

// The hit rate a cache of `slots_per_layer` slots per layer can expect when the router picks among
// `n_experts` experts uniformly: every expert equally likely, so the cached fraction.
double uniform_expert_hit_rate(std::int32_t slots_per_layer, std::int32_t n_experts);
// With one count per layer: every layer is visited once per token, so the mean of the layers' rates.
double uniform_expert_hit_rate(std::span<const std::int32_t> layer_slots, std::int32_t n_experts);

}  // namespace sluice::cache
