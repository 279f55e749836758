// The reads of forward passes, as the passes ask for them: a pass appends the read units it will
// bind, in the order it binds them (append-style: a pass can add a unit it decides late, as
// routed experts will), and takes each delivered unit back with the index it expects. Wraps one
// Prefetcher whose ring lives as long as the schedule.
//
// Each delivered unit is checked against the unit the pass binds: a different one is a
// sluice::Exception (kind corrupt) naming the file, the expected and the delivered unit, never
// a block bound to another block's bytes. After anything throws mid-pass, reset() cancels the
// reads in flight and drops what was scheduled, so the next pass starts clean on the same ring.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "prefetch/prefetcher.hpp"

namespace sluice {

// Thread safety: one thread (the one running passes) uses a schedule.
class PassSchedule {
 public:
  // A schedule over `prefetcher` (its extents() name the units; its file names every error).
  explicit PassSchedule(std::unique_ptr<prefetch::Prefetcher> prefetcher);

  // Schedules `unit` after everything scheduled so far.
  void append(std::uint32_t unit);
  // The next delivered unit, which must be `unit`. Throws sluice::Exception: the read's error
  // (kind, file, extent, frame, offset, errno), or kind corrupt when another unit arrived.
  prefetch::ExtentHandle take(std::uint32_t unit);
  // After an exception mid-pass: cancels reads in flight, drops everything scheduled and not yet
  // taken, keeps the ring.
  void reset();
  // The read unit `unit` names (its frames, ranges and name).
  const pack::ExtentInfo& unit(std::uint32_t unit) const { return prefetcher_->extents()[unit]; }
  // Units appended and not yet taken.
  std::size_t queued() const { return queued_.size(); }

  std::chrono::nanoseconds wait() const { return wait_; }  // take() blocked for data
  prefetch::PrefetchStats stats() const { return prefetcher_->stats(); }
  std::uint64_t ring_bytes() const { return prefetcher_->ring_bytes(); }

 private:
  std::unique_ptr<prefetch::Prefetcher> prefetcher_;
  std::deque<std::uint32_t> queued_;
  std::chrono::nanoseconds wait_{0};
};

}  // namespace sluice
