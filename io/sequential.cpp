#include "io/sequential.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "common/units.hpp"

namespace sluice::io {

Result<SequentialRead> read_file_sequential(const std::string& path, const BackendOptions& options,
                                            std::uint32_t request_bytes) {
  auto reader = Reader::open(path, ReaderOptions{options, {}});
  unsigned depth = reader->queue_depth();
  std::size_t buffer_bytes = std::size_t(depth) * request_bytes;
  void* raw = nullptr;
  if (::posix_memalign(&raw, kDirectAlign, buffer_bytes) != 0) {
    return Error{ErrorKind::io, ENOMEM, "cannot allocate read buffers for " + path};
  }
  std::unique_ptr<std::byte, decltype(&std::free)> buffers(static_cast<std::byte*>(raw), &std::free);
  iovec region{buffers.get(), buffer_bytes};
  (void)reader->register_buffers(std::span(&region, 1));  // unregistered reads work too

  std::vector<unsigned> free_buffers;
  for (unsigned i = 0; i < depth; ++i) free_buffers.push_back(i);
  std::vector<ReadCompletion> done(depth);
  std::uint64_t size = reader->file_size(), next = 0;
  SequentialRead result;
  auto started = std::chrono::steady_clock::now();
  while (next < size || reader->in_flight() > 0) {
    while (next < size && !free_buffers.empty()) {
      unsigned b = free_buffers.back();
      free_buffers.pop_back();
      reader->submit(ReadRequest{buffers.get() + std::size_t(b) * request_bytes, next, request_bytes, 0, b});
      next += request_bytes;
    }
    auto got = reader->wait(done, 1);
    if (!got) return got.error();
    for (std::size_t i = 0; i < got.value(); ++i) {
      if (!done[i].status) return done[i].status.error();
      result.bytes += done[i].bytes;
      free_buffers.push_back(static_cast<unsigned>(done[i].user_data));
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
