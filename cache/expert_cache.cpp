#include "cache/expert_cache.hpp"

#include <algorithm>
#include <limits>
#include <sys/mman.h>
#include <thread>
#include <vector>
#include <utility>

#include "common/assert.hpp"

namespace sluice::cache {

namespace {
constexpr std::size_t kSlotAlign = AlignedBuffer::kAlign;  // O_DIRECT reads land in slots

// Layer L owns slots [first[L], first[L + 1]); each count is cut to n_experts (a layer never needs more).
std::vector<std::int32_t> first_slots(std::span<const std::int32_t> layer_slots, std::int32_t n_experts) {
  std::vector<std::int32_t> first(layer_slots.size() + 1, 0);
  for (std::size_t l = 0; l < layer_slots.size(); ++l) {
    SLUICE_ASSERT_MSG(layer_slots[l] >= 0, "expert cache: a layer's slot count is negative");
    const std::int32_t n = std::min(layer_slots[l], n_experts);
    SLUICE_ASSERT_MSG(first[l] <= std::numeric_limits<std::int32_t>::max() - n, "expert cache: too many slots");
    first[l + 1] = first[l] + n;
  }
  return first;
}

std::size_t pool_size(std::int32_t slots, std::size_t slot_bytes) {
  SLUICE_ASSERT_MSG(slots == 0 || slot_bytes <= std::numeric_limits<std::size_t>::max() / std::size_t(slots), "expert pool size overflows");
  return std::size_t(slots) * slot_bytes;
}
}  // namespace

ExpertCache::ExpertCache(std::int32_t n_layers, std::int32_t n_experts, std::int32_t slots_per_layer,
                         std::size_t slot_bytes, std::uint32_t aging_accesses)
    : ExpertCache(n_experts, std::vector<std::int32_t>(std::size_t(std::max(n_layers, 0)), std::max(slots_per_layer, 0)),
                  slot_bytes, aging_accesses) {
  SLUICE_ASSERT_MSG(slots_per_layer >= 0, "expert cache shape");
}

ExpertCache::ExpertCache(std::int32_t n_experts, std::span<const std::int32_t> layer_slots, std::size_t slot_bytes,
                         std::uint32_t aging_accesses)
    : n_layers_(std::int32_t(layer_slots.size())),
      n_experts_(n_experts),
      slot_bytes_((slot_bytes + kSlotAlign - 1) / kSlotAlign * kSlotAlign),
      // 16 accesses per expert between halvings: long enough that a router's preference shows,
      // short enough that a change of topic (a new batch of prompts) is followed within a few tokens.
      aging_accesses_(aging_accesses != 0 ? aging_accesses : 16u * std::uint32_t(std::max(n_experts, 1))),
      first_slot_(first_slots(layer_slots, std::max(n_experts, 0))),
      pool_(pool_size(first_slot_.back(), slot_bytes_)),  // members above are set
      slots_(std::size_t(first_slot_.back())),
      slot_of_(layer_slots.size() * std::size_t(std::max(n_experts, 0)), -1),
      frequency_(layer_slots.size() * std::size_t(std::max(n_experts, 0)), 0),
      layer_accesses_(layer_slots.size(), 0) {
  SLUICE_ASSERT_MSG(n_layers_ > 0 && n_experts > 0, "expert cache shape");
  touch_pool();
}

// Every slot's first fill is an O_DIRECT read into fresh memory, and io_uring's submit faults
// the pages in and the kernel zeroes them there, on the thread that submits: the one computing
// the pass (perf on a cold gpt-oss-120b run: 49% of all samples in clear_page_erms under
// io_uring_enter). So the pool is touched once here, by every core at once, in 4 KiB pages (in
// this VM a first touch of 4 KiB pages ran at 2.4 GB/s a thread, of huge pages at 1.0).
void ExpertCache::touch_pool() {
  const std::size_t bytes = pool_.capacity();
  if (bytes == 0) return;
  ::madvise(pool_.data(), bytes, MADV_NOHUGEPAGE);  // advisory
  constexpr std::size_t kPage = 4096;
  const std::size_t n_threads = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
  const std::size_t share = (bytes / kPage + n_threads - 1) / n_threads * kPage;
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < n_threads && t * share < bytes; ++t) {
    threads.emplace_back([this, begin = t * share, end = std::min(bytes, (t + 1) * share)] {
#ifdef MADV_POPULATE_WRITE
      // One call faults the range in (Linux 5.14+), cheaper than a fault per page.
      if (::madvise(pool_.data() + begin, end - begin, MADV_POPULATE_WRITE) == 0) return;
#endif
      for (std::size_t at = begin; at < end; at += kPage) pool_.data()[at] = std::byte{0};
    });
  }
  for (std::thread& t : threads) t.join();
}

std::int32_t ExpertCache::slots(std::int32_t layer) const {
  SLUICE_ASSERT_MSG(layer >= 0 && layer < n_layers_, "expert cache layer out of range");
  return first_slot_[std::size_t(layer) + 1] - first_slot_[std::size_t(layer)];
}

std::size_t ExpertCache::index(ExpertKey key) const {
  SLUICE_ASSERT_MSG(key.layer >= 0 && key.layer < n_layers_ && key.expert >= 0 && key.expert < n_experts_,
                    "expert key out of range");
  return std::size_t(key.layer) * std::size_t(n_experts_) + std::size_t(key.expert);
}

ExpertState ExpertCache::state(ExpertKey key) const {
  const std::int32_t s = slot_of_[index(key)];
  return s < 0 ? ExpertState::absent : slots_[std::size_t(s)].state;
}

void ExpertCache::record_access(ExpertKey key) {
  const std::size_t i = index(key);
  switch (state(key)) {
    case ExpertState::ready: ++stats_.hits; break;
    case ExpertState::filling: ++stats_.late; break;
    case ExpertState::absent: ++stats_.misses; break;
  }
  if (frequency_[i] < std::numeric_limits<std::uint32_t>::max()) ++frequency_[i];
  if (const std::int32_t s = slot_of_[i]; s >= 0) slots_[std::size_t(s)].last_use = ++clock_;
  if (++layer_accesses_[std::size_t(key.layer)] >= aging_accesses_) {
    layer_accesses_[std::size_t(key.layer)] = 0;
    const auto first = frequency_.begin() + std::ptrdiff_t(std::size_t(key.layer) * std::size_t(n_experts_));
    std::for_each(first, first + n_experts_, [](std::uint32_t& f) { f /= 2; });
  }
}

std::optional<ExpertCache::Pin> ExpertCache::pin(ExpertKey key) {
  const std::int32_t s = slot_of_[index(key)];
  if (s < 0 || slots_[std::size_t(s)].state != ExpertState::ready) return std::nullopt;
  ++slots_[std::size_t(s)].pins;
  return Pin(this, s);
}

std::optional<ExpertCache::Fill> ExpertCache::reserve(ExpertKey key, FillReason reason) {
  const std::size_t i = index(key);
  SLUICE_ASSERT_MSG(slot_of_[i] < 0, "reserve: the expert already has a slot");
  std::int32_t victim = -1;
  for (std::int32_t s = first_slot_[std::size_t(key.layer)]; s < first_slot_[std::size_t(key.layer) + 1]; ++s) {
    const Slot& slot = slots_[std::size_t(s)];
    if (slot.state == ExpertState::absent) {  // a free slot beats any eviction
      victim = s;
      break;
    }
    if (slot.state != ExpertState::ready || slot.pins > 0) continue;
    if (victim < 0) {
      victim = s;
      continue;
    }
    const Slot& best = slots_[std::size_t(victim)];
    const std::uint32_t f = frequency_[index(slot.key)], fb = frequency_[index(best.key)];
    if (f < fb || (f == fb && slot.last_use < best.last_use)) victim = s;
  }
  if (victim < 0) return std::nullopt;
  Slot& slot = slots_[std::size_t(victim)];
  if (slot.state == ExpertState::ready) {
    if (reason == FillReason::guess && frequency_[index(slot.key)] > frequency_[i]) {
      ++stats_.refused;
      return std::nullopt;
    }
    slot_of_[index(slot.key)] = -1;
    ++stats_.evictions;
  }
  slot.key = key;
  slot.state = ExpertState::filling;
  slot.pins = 0;
  slot.last_use = ++clock_;
  slot_of_[i] = victim;
  return Fill(this, victim);
}

void ExpertCache::unpin(std::int32_t s) {
  Slot& slot = slots_[std::size_t(s)];
  SLUICE_ASSERT_MSG(slot.pins > 0, "expert unpinned twice");
  --slot.pins;
}

void ExpertCache::abandon(std::int32_t s) {
  Slot& slot = slots_[std::size_t(s)];
  slot_of_[index(slot.key)] = -1;
  slot.state = ExpertState::absent;
  slot.pins = 0;
}

ExpertCache::Pin::~Pin() {
  if (cache_ != nullptr) cache_->unpin(slot_);
}

std::span<const std::byte> ExpertCache::Pin::bytes() const {
  return {cache_->pool_.data() + std::size_t(slot_) * cache_->slot_bytes_, cache_->slot_bytes_};
}

ExpertCache::Fill::~Fill() {
  if (cache_ != nullptr) cache_->abandon(slot_);
}

std::span<std::byte> ExpertCache::Fill::bytes() const {
  return {cache_->pool_.data() + std::size_t(slot_) * cache_->slot_bytes_, cache_->slot_bytes_};
}

ExpertKey ExpertCache::Fill::key() const { return cache_->slots_[std::size_t(slot_)].key; }

ExpertCache::Pin ExpertCache::Fill::commit() && {
  ExpertCache* cache = std::exchange(cache_, nullptr);
  Slot& slot = cache->slots_[std::size_t(slot_)];
  slot.state = ExpertState::ready;
  slot.pins = 1;
  ++cache->stats_.fills;
  return Pin(cache, slot_);
}

double uniform_expert_hit_rate(std::int32_t slots_per_layer, std::int32_t n_experts) {
  if (n_experts <= 0) return 0.0;
  return double(std::clamp(slots_per_layer, 0, n_experts)) / double(n_experts);
}

double uniform_expert_hit_rate(std::span<const std::int32_t> layer_slots, std::int32_t n_experts) {
  if (layer_slots.empty()) return 0.0;
  double sum = 0;
  for (const std::int32_t s : layer_slots) sum += uniform_expert_hit_rate(s, n_experts);
  return sum / double(layer_slots.size());
}

}  // namespace sluice::cache
