// io::File (see file.hpp): reads through io::Reader, writes with the same policy.
#include "io/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <stdexcept>
#include <thread>

#include "common/units.hpp"

namespace sluice::io {
namespace {
// Largest single read or write handed down: Reader lengths are 32-bit, and Linux moves at most
// 0x7ffff000 bytes per call anyway. 1 GiB is 4096-aligned, so O_DIRECT chunks stay aligned.
constexpr std::uint64_t kMaxChunkBytes = 1ull << 30;
}  // namespace

std::unique_ptr<File> File::open(const std::string& path, const FileOptions& options) {
  const int mode = (options.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  FileOptions opened = options;
  int fd = ::open(path.c_str(), mode | (options.direct ? O_DIRECT : 0));
  if (fd < 0 && options.direct && errno == EINVAL) {
    // tmpfs and some FUSE filesystems refuse O_DIRECT; buffered I/O still works there.
    opened.direct = false;
    fd = ::open(path.c_str(), mode);
  }
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  return adopt(fd, path, opened);
}

std::unique_ptr<File> File::adopt(int fd, std::string path, const FileOptions& options) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("cannot stat {}: {}", path, std::strerror(err)));
  }
  return std::unique_ptr<File>(new File(fd, std::move(path), static_cast<std::uint64_t>(st.st_size), options));
}

File::File(int fd, std::string path, std::uint64_t size, const FileOptions& options)
    : fd_(fd), path_(std::move(path)), size_(size), writable_(options.writable), direct_(options.direct),
      retry_(options.retry) {
  // One read at a time: File is synchronous, and the pread backend performs each read in reap().
  std::unique_ptr<Backend> backend = make_pread_backend(fd, options.direct, 1);
  if (options.fault != nullptr) {
    auto wrapped = std::make_unique<FaultBackend>(std::move(backend), *options.fault);
    fault_ = wrapped.get();
    backend = std::move(wrapped);
  }
  reader_ = std::make_unique<Reader>(std::move(backend), path_, size_, retry_);
}

File::~File() = default;  // reader_'s backend closes fd_

bool File::direct() const {
  std::lock_guard lock(mutex_);
  return direct_;
}

FileStats File::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

ReaderStats File::reader_stats() const {
  std::lock_guard lock(mutex_);
  return reader_->stats();
}

Status File::out_of_range(const char* what, std::uint64_t offset, std::uint64_t length) const {
  return Error{ErrorKind::io, 0,
               fmt::format("{} of {} at offset {} length {} failed: past the end of the file (size {})", what, path_,
                           offset, length, size_)};
}

bool File::drop_direct(int err) {
  if (err != EINVAL || !direct_) return false;
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) return false;
  direct_ = false;
  return true;
}

Status File::read_at(std::span<std::byte> dest, std::uint64_t offset) {
  // Overflow-safe: offset + size can wrap for an offset taken from a corrupt file.
  if (offset > size_ || dest.size() > size_ - offset) return out_of_range("read", offset, dest.size());
  std::lock_guard lock(mutex_);
  for (std::uint64_t done = 0; done < dest.size();) {
    const auto length = static_cast<std::uint32_t>(std::min<std::uint64_t>(dest.size() - done, kMaxChunkBytes));
    if (Status st = read_chunk(dest.data() + done, offset + done, length); !st) return st;
    done += length;
  }
  ++stats_.reads;
  return {};
}

Status File::read_chunk(std::byte* dest, std::uint64_t offset, std::uint32_t length) {
  std::uint64_t bytes = 0;
  Status st = reader_->read_sync(dest, offset, length, &bytes);
  if (!st && drop_direct(st.error().sys_errno)) st = reader_->read_sync(dest, offset, length, &bytes);
  if (!st) return st;
  if (bytes < length) {
    // The range was inside the size seen at open: the file shrank since.
    return Error{ErrorKind::io, 0,
                 fmt::format("read of {} at offset {} length {} failed: end of file after {} bytes (file size was {} "
                             "when opened; truncated since?)",
                             path_, offset, length, bytes, size_)};
  }
  return {};
}

Status File::write_at(std::span<const std::byte> src, std::uint64_t offset) {
  SLUICE_ASSERT_MSG(writable_, "io::File::write_at on a file opened read-only");
  if (offset > size_ || src.size() > size_ - offset) return out_of_range("write", offset, src.size());
  std::lock_guard lock(mutex_);
  for (std::uint64_t done = 0; done < src.size();) {
    const auto length = static_cast<std::uint32_t>(std::min<std::uint64_t>(src.size() - done, kMaxChunkBytes));
    if (Status st = write_chunk(src.data() + done, offset + done, length); !st) return st;
    done += length;
  }
  ++stats_.writes;
  return {};
}

// The write side of the Reader's policy (reader.cpp handle()), errno by errno.
Status File::write_chunk(const std::byte* src, std::uint64_t offset, std::uint32_t length) {
  std::uint64_t done = 0;  // bytes at the start of [offset, offset + length) known written
  unsigned retries = 0, short_writes = 0;
  auto fail = [&](int err, const std::string& what) -> Status {
    return Error{ErrorKind::io, err,
                 fmt::format("write of {} at offset {} length {} failed: {}", path_, offset, length, what)};
  };
  while (done < length) {
    // O_DIRECT needs aligned offsets: resume from the boundary below (rewriting a few bytes is
    // harmless). Offset, length and buffer are aligned, so the rest is too.
    const std::uint64_t from = direct_ ? done / kDirectAlign * kDirectAlign : done;
    const std::uint64_t want = length - from;
    std::int64_t result = fault_ ? fault_->decide_write(want) : static_cast<std::int64_t>(want);
    if (result >= 0) {
      const ssize_t n = ::pwrite(fd_, src + from, want, static_cast<off_t>(offset + from));
      // An injected short write reports fewer bytes than were written, like a short read.
      result = n < 0 ? -errno : std::min<std::int64_t>(n, result);
    }
    if (result < 0) {
      const int err = static_cast<int>(-result);
      const bool transient = transient_errno(err);
      if (transient && retries < retry_.max_retries) {
        ++retries;
        ++stats_.write_retries;
        if (err == EAGAIN) std::this_thread::sleep_for(retry_.eagain_backoff * retries);
        continue;
      }
      if (drop_direct(err)) continue;
      // EIO (media error), ENOSPC/EDQUOT (full), EBADF, EFAULT and anything else will not get
      // better by asking again.
      std::string what = fmt::format("{} (errno {})", std::strerror(err), err);
      if (transient) what += fmt::format(" after {} retries", retries);
      return fail(err, what);
    }
    if (result == 0) {
      // No progress and no errno: asking again would spin.
      return fail(0, fmt::format("nothing written at offset {}", offset + from));
    }
    done = std::max(done, from + static_cast<std::uint64_t>(result));
    if (done < length) {
      // Short write (a full disk nearly reached, a signal after some bytes): keep what went out
      // and write the rest, a bounded number of times.
      ++stats_.short_writes;
      if (++short_writes > retry_.max_short_resubmits) {
        return fail(0, fmt::format("{} short writes in a row, stuck at offset {}", short_writes - 1, offset + done));
      }
    }
  }
  return {};
}

}  // namespace sluice::io
