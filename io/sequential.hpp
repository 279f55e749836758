// Whole-file sequential reads used as the yardstick for streaming: the raw O_DIRECT bandwidth
// the prefetcher is compared with (bench_io, `sluice demo`), and the buffered equivalent.
#pragma once

#include <chrono>
#include <string>

#include "io/reader.hpp"

namespace sluice::io {

struct SequentialRead {
  std::uint64_t bytes = 0;
  std::chrono::nanoseconds wall{0};
  std::uint64_t buffer_bytes = 0;  // the memory the reads landed in (also the most bytes in flight)
  double gbps() const { return wall.count() > 0 ? double(bytes) / double(wall.count()) : 0.0; }  // GB/s
};

// Reads `path` (its first `limit` bytes when limit > 0) in `request_bytes` requests with
// queue_depth of them in flight, into a private set of aligned buffers (data discarded). Fails
// with the first read error. The buffers are queue_depth requests' worth, reused as reads
// finish, or `pool_bytes` (rounded down to whole requests, at least one) cycled in order the way
// the prefetcher's ring is: on a virtual disk the host's copy into guest memory can be faster
// into a few MiB that stay in its caches than into hundreds of MiB (`sluice bench --raw-read`
// reads both ways). A pool smaller than queue_depth requests also caps the reads in flight, as
// the ring's size caps its own.
Result<SequentialRead> read_file_sequential(const std::string& path, const BackendOptions& options,
                                            std::uint32_t request_bytes, std::uint64_t limit = 0,
                                            std::uint64_t pool_bytes = 0);

// Evicts the file's clean pages from the page cache (posix_fadvise DONTNEED), so the next read
// comes from the device. Returns false when the kernel refused.
bool drop_file_cache(const std::string& path);

}  // namespace sluice::io
