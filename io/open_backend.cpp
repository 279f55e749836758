// Opening a file for streaming reads: O_DIRECT where the filesystem allows it, io_uring where the
// kernel allows it, and a note saying why whenever we had to fall back.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <stdexcept>

#include "io/backend.hpp"

namespace sluice::io {

const char* to_string(BackendKind kind) {
  switch (kind) {
    case BackendKind::automatic: return "auto";
    case BackendKind::uring: return "io_uring";
    case BackendKind::pread: return "pread";
  }
  return "?";
}

OpenedBackend open_backend(const std::string& path, const BackendOptions& options) {
  OpenedBackend opened;
  bool direct = options.direct;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
  if (fd < 0 && direct && errno == EINVAL) {
    // tmpfs and some FUSE filesystems refuse O_DIRECT; buffered reads still work there.
    opened.fallback_note = fmt::format("{}: O_DIRECT not supported by this filesystem; using buffered reads", path);
    direct = false;
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));

  unsigned depth = options.queue_depth == 0 ? 1 : options.queue_depth;
  if (options.kind != BackendKind::pread) {
    int error = 0;
    opened.backend = make_uring_backend(fd, direct, depth, error);
    if (opened.backend) return opened;
    if (options.kind == BackendKind::uring) {
      ::close(fd);
      throw std::runtime_error(fmt::format("{}: io_uring requested but io_uring_queue_init failed: {}", path,
                                           std::strerror(error)));
    }
    // EPERM: blocked by seccomp (containers); ENOSYS: kernel without io_uring. pread still works.
    if (!opened.fallback_note.empty()) opened.fallback_note += "; ";
    opened.fallback_note += fmt::format("io_uring unavailable ({}); using the pread backend", std::strerror(error));
  }
  opened.backend = make_pread_backend(fd, direct, depth);
  return opened;
}

}  // namespace sluice::io
