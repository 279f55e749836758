// OutputFile: temp name, write, flush behind, fsync, rename, fsync the directory.
#include "model/output_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace sluice {
namespace {

// Dirty bytes allowed to pile up before writeback is started, and the size of the range that is
// being written back while the next one fills: two windows of dirty pages at most, 16 MiB, which
// keeps a 100 GB conversion as lean as a 1 GB one and still hands the disk large writes.
constexpr std::uint64_t kWritebackWindowBytes = 8ull << 20;

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

}  // namespace

std::string temp_path_for(const std::string& path) {
  // append, not operator+: GCC 12 warns (-Wrestrict, a false positive) on string + literal here.
  std::string temp = path;
  temp.append(".tmp");
  return temp;
}

void refuse_output_that_is_input(const std::string& what, const std::string& input, const std::string& output) {
  struct stat in {};
  // An input that cannot be stat'ed cannot be overwritten either; opening it reports the error.
  if (::stat(input.c_str(), &in) != 0) return;
  struct stat out {};
  if (::stat(output.c_str(), &out) == 0 && same_file(in, out)) {
    throw std::runtime_error(fmt::format(
        "{}: output {} is the input {} (the same file, a symlink or a hard link to it); refusing to replace the "
        "input: choose another output name",
        what, output, input));
  }
  const std::string temp = temp_path_for(output);
  if (::stat(temp.c_str(), &out) == 0 && same_file(in, out)) {
    throw std::runtime_error(fmt::format(
        "{}: the input {} is {}, the temporary name the output {} is written under; refusing to replace the "
        "input: rename the input or choose another output name",
        what, input, temp, output));
  }
}

OutputFile::OutputFile(std::string path, std::string label)
    : path_(std::move(path)), temp_path_(temp_path_for(path_)), label_(std::move(label)) {
  // A temp file left by a killed run holds an unknown prefix of an old output: start afresh.
  // unlink + O_EXCL (not O_TRUNC): if the name is a hard link to some other file, that file is
  // left alone instead of being truncated.
  const int unlink_err = ::unlink(temp_path_.c_str()) == 0 ? 0 : errno;
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    // EEXIST: the stale file is still there because unlink failed (a directory, no permission):
    // that is the error worth reporting. Anything else (ENOENT, ENOTDIR: no such directory)
    // open explains best.
    const std::string why = err == EEXIST && unlink_err != 0
                                ? fmt::format("a stale file is in the way and cannot be removed: {}", std::strerror(unlink_err))
                                : std::string(std::strerror(err));
    throw std::runtime_error(fmt::format("{} {}: cannot create {}: {}", label_, path_, temp_path_, why));
  }
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (temp_exists_) ::unlink(temp_path_.c_str());
  temp_exists_ = false;
}

void OutputFile::fail(const std::string& what, int err) const {
  throw std::runtime_error(fmt::format("{} {}: {} failed: {} (the output is not written)", label_, path_, what,
                                       std::strerror(err)));
}

void OutputFile::pwrite_all(std::span<const std::byte> bytes, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      // A signal arrived before any byte was written: nothing happened, try again.
      if (errno == EINTR) continue;
      // ENOSPC, EDQUOT, EIO, EFBIG: nothing we can retry; the temp file goes with the caller's unwind.
      fail(fmt::format("write of {} bytes at offset {}", bytes.size() - done, offset + done), errno);
    }
    if (n == 0) {
      // pwrite returning 0 for a non-empty buffer means no progress is possible.
      fail(fmt::format("write at offset {} (no progress)", offset + done), ENOSPC);
    }
    // Short write (a signal, a nearly full disk): continue with the rest; the next call reports
    // the error if there is one.
    done += static_cast<std::size_t>(n);
  }
}

void OutputFile::write(std::span<const std::byte> bytes) {
  pwrite_all(bytes, write_offset_);
  write_offset_ += bytes.size();
}

void OutputFile::truncate(std::uint64_t bytes) {
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) fail(fmt::format("ftruncate to {} bytes", bytes), errno);
}

void OutputFile::written_through(std::uint64_t end) {
  if (end < writeback_started_to_ + kWritebackWindowBytes) return;
  // Start writing the new window back without waiting for it.
  if (::sync_file_range(fd_, static_cast<off_t>(writeback_started_to_), static_cast<off_t>(end - writeback_started_to_),
                        SYNC_FILE_RANGE_WRITE) != 0) {
    // EINVAL/ESPIPE/ENOSYS: the filesystem cannot do it (tmpfs pages never go to disk anyway);
    // fsync at commit still makes the file durable. Anything else (EIO) is a failed write.
    if (errno != EINVAL && errno != ESPIPE && errno != ENOSYS) fail("writeback (sync_file_range)", errno);
  }
  // The previous window has had a whole window's time to reach the disk: wait for it, then drop
  // it from the page cache so the cgroup's charge for this file stays two windows.
  if (writeback_started_to_ > dropped_to_) {
    const auto offset = static_cast<off_t>(dropped_to_);
    const auto length = static_cast<off_t>(writeback_started_to_ - dropped_to_);
    if (::sync_file_range(fd_, offset, length,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
      if (errno != EINVAL && errno != ESPIPE && errno != ENOSYS) fail("writeback (sync_file_range)", errno);
    }
    // Only a hint: a kernel that refuses it leaves clean pages the cgroup can reclaim anyway.
    (void)::posix_fadvise(fd_, offset, length, POSIX_FADV_DONTNEED);
    dropped_to_ = writeback_started_to_;
  }
  writeback_started_to_ = end;
}

void OutputFile::sync() {
  if (::fsync(fd_) != 0) fail("fsync", errno);
  const int fd = std::exchange(fd_, -1);
  // close() reports delayed write errors (NFS, quota): a file that did not land is an error.
  if (::close(fd) != 0) fail("close", errno);  // the destructor removes the temp file
}

void OutputFile::commit() {
  if (fd_ >= 0) sync();
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail(fmt::format("rename of {} onto it", temp_path_), errno);
  temp_exists_ = false;
  // The rename is durable once the directory is: without this a power cut can bring back the
  // old name (or none) even though the data blocks were flushed.
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = std::filesystem::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // A directory we may not open (no read permission) still holds the renamed file; the rename
  // is as durable as the filesystem makes it without the explicit flush.
  if (dir_fd < 0) return;
  const int rc = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  // EINVAL: the filesystem does not fsync directories (some FUSE, tmpfs on old kernels).
  if (rc != 0 && err != EINVAL) {
    throw std::runtime_error(fmt::format("{} {}: written and renamed, but flushing the directory {} failed: {}", label_,
                                         path_, dir.string(), std::strerror(err)));
  }
}

}  // namespace sluice
