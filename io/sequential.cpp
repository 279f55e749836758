#include "io/sequential.hpp"

#include <algorithm>
#include <fcntl.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <unistd.h>

#include <deque>
#include <vector>

#include "common/units.hpp"

namespace sluice::io {

Result<SequentialRead> read_file_sequential(const std::string& path, const BackendOptions& options,
                                            std::uint32_t request_bytes, std::uint64_t limit, std::uint64_t pool_bytes) {
  auto reader = Reader::open(path, ReaderOptions{options, {}});
  const unsigned depth = reader->queue_depth();
  // A pool is the destination, whatever its size: more buffers than it holds would read into
  // memory the ring does not have (and let more bytes be in flight than the ring can).
  const std::size_t n_buffers = pool_bytes > 0 ? std::max<std::size_t>(1, pool_bytes / request_bytes) : depth;
  const std::size_t buffer_bytes = n_buffers * request_bytes;
  // Huge-page-backed buffers, like the prefetcher's ring (numa::PinnedBuffer): on virtio disks
  // 4 KiB-page destinations cost up to half the bandwidth, and this is the yardstick.
  constexpr std::size_t kHugePage = std::size_t{2} << 20;
  const std::size_t mapped = buffer_bytes + kHugePage;
  void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return Error{ErrorKind::io, errno, "cannot allocate read buffers for " + path};
  struct Unmap {
    void* base;
    std::size_t bytes;
    ~Unmap() { ::munmap(base, bytes); }
  } unmap{base, mapped};
  // Declared after `unmap`, so it runs first: the reader (and reads still in flight on an error
  // return) is gone before the buffers are unmapped.
  struct CloseReaderFirst {
    decltype(reader)& r;
    ~CloseReaderFirst() { r.reset(); }
  } close_reader_first{reader};
  auto* buffers = reinterpret_cast<std::byte*>(align_up(reinterpret_cast<std::uintptr_t>(base), kHugePage));
  ::madvise(buffers, buffer_bytes, MADV_HUGEPAGE);  // advisory
  iovec region{buffers, buffer_bytes};
  (void)reader->register_buffers(std::span(&region, 1));  // unregistered reads work too

  // First in, first out: with more buffers than reads in flight, each is reused only after all
  // the others, as the ring's slots are.
  std::deque<std::size_t> free_buffers;
  for (std::size_t i = 0; i < n_buffers; ++i) free_buffers.push_back(i);
  std::vector<ReadCompletion> done(depth);
  std::uint64_t size = reader->file_size(), next = 0;
  if (limit > 0) size = std::min(size, limit);
  SequentialRead result;
  result.buffer_bytes = buffer_bytes;
  auto started = std::chrono::steady_clock::now();
  while (next < size || reader->in_flight() > 0) {
    while (next < size && reader->can_submit() && !free_buffers.empty()) {
      const std::size_t b = free_buffers.front();
      free_buffers.pop_front();
      reader->submit(ReadRequest{buffers + b * request_bytes, next, request_bytes, 0, b});
      next += request_bytes;
    }
    auto got = reader->wait(done, 1);
    if (!got) return got.error();
    for (std::size_t i = 0; i < got.value(); ++i) {
      if (!done[i].status) return done[i].status.error();
      result.bytes += done[i].bytes;
      free_buffers.push_back(static_cast<std::size_t>(done[i].user_data));
    }
  }
  result.wall = std::chrono::steady_clock::now() - started;
  return result;
}

bool drop_file_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ::fdatasync(fd);  // dirty pages cannot be dropped; a freshly written pack has some
  bool ok = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

}  // namespace sluice::io
