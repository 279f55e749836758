// One streamed pass: pull every extent of a Prefetcher's plan through a compute stage and
// measure how well disk, decode and compute overlapped. Used by `sluice demo`, bench_io and
// (later) the engine's pass scheduler.
#pragma once

#include <chrono>
#include <functional>
#include <span>

#include "prefetch/prefetcher.hpp"

namespace sluice::prefetch {

struct PassStats {
  std::chrono::nanoseconds wall{0};
  std::chrono::nanoseconds io_busy{0};       // at least one read in flight
  std::chrono::nanoseconds decode_busy{0};   // summed over workers: verifying, decompressing, copying
  std::chrono::nanoseconds verify_busy{0};   // of decode_busy: checksums
  std::chrono::nanoseconds compute_busy{0};  // consumer time inside the compute stage
  std::chrono::nanoseconds consumer_wait{0}; // consumer time blocked waiting for data
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_decoded = 0;
  std::uint64_t extents = 0;

  double seconds() const { return std::chrono::duration<double>(wall).count(); }
  double read_gbps() const { return bytes_read / seconds() / 1e9; }
  // wall / max(io_busy, compute_busy): 1.0 is perfect overlap; 2.0 means fully serialised.
  double overlap() const;
};

using ComputeStage = std::function<void(std::span<const std::byte> bytes, std::uint32_t extent)>;

// Runs the prefetcher's whole plan through `compute` (which may be empty). Stops at the first
// error and returns it; handles are released as soon as compute returns.
Result<PassStats, PrefetchError> stream_pass(Prefetcher& prefetcher, const ComputeStage& compute);

// A stand-in for a transformer block's work: reads one word per 4 KiB page of the extent (so
// the data is really touched) then spins until `seconds_per_byte * bytes` have passed.
class SyntheticCompute {
 public:
  explicit SyntheticCompute(double seconds_per_byte) : seconds_per_byte_(seconds_per_byte) {}
  void operator()(std::span<const std::byte> bytes, std::uint32_t extent);
  std::uint64_t checksum() const { return checksum_; }  // keeps the reads from being optimised out

 private:
  double seconds_per_byte_;
  std::uint64_t checksum_ = 0;
};

}  // namespace sluice::prefetch
