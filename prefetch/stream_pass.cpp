#include "prefetch/stream_pass.hpp"

#include <algorithm>
#include <cstring>

namespace sluice::prefetch {

using Clock = std::chrono::steady_clock;

double PassStats::overlap() const {
  auto bound = std::max(io_busy, compute_busy);
  return bound.count() > 0 ? double(wall.count()) / double(bound.count()) : 0.0;
}

Result<PassStats, PrefetchError> stream_pass(Prefetcher& prefetcher, const ComputeStage& compute) {
  PassStats pass;
  PrefetchStats before = prefetcher.stats();
  auto started = Clock::now();
  while (!prefetcher.done()) {
    auto next = prefetcher.next();
    if (!next) return next.error();
    ExtentHandle handle = std::move(next).value();
    auto compute_started = Clock::now();
    if (compute) compute(handle.bytes(), handle.extent());
    pass.compute_busy += Clock::now() - compute_started;
    ++pass.extents;
  }
  pass.wall = Clock::now() - started;
  PrefetchStats after = prefetcher.stats();
  pass.io_busy = after.io_busy - before.io_busy;
  pass.decode_busy = (after.decode_busy - before.decode_busy) + (after.verify_busy - before.verify_busy) +
                     (after.copy_busy - before.copy_busy);
  pass.verify_busy = after.verify_busy - before.verify_busy;
  pass.consumer_wait = after.consumer_wait - before.consumer_wait;
  pass.bytes_read = after.bytes_read - before.bytes_read;
  pass.bytes_decoded = after.bytes_decoded - before.bytes_decoded;
  return pass;
}

void SyntheticCompute::operator()(std::span<const std::byte> bytes, std::uint32_t extent) {
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(seconds_per_byte_ * double(bytes.size())));
  std::uint64_t sum = extent;
  constexpr std::size_t kPage = 4096;
  for (std::size_t i = 0; i + sizeof(std::uint64_t) <= bytes.size(); i += kPage) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, sizeof(word));
    sum = sum * 31 + word;
  }
  checksum_ += sum;
  while (Clock::now() < deadline) {
    // Spin: the stage stands for a core busy with matrix work, not a sleeping thread.
  }
}

}  // namespace sluice::prefetch
