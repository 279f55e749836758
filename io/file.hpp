// io::File: synchronous positional reads and writes of one file, for the readers that fetch a
// few bytes at a time rather than stream (a pack's header, manifest and embedding-row frames;
// the KV spill's scratch file). Reads go through io::Reader over the pread backend, so they get
// the Reader's policy: short reads advanced and resubmitted, EINTR/EAGAIN/ECANCELED retried a
// bounded number of times, every failure naming the path, offset and length. Writes follow the
// same policy (transient_errno, RetryPolicy) here. With FileOptions::fault set, reads and writes
// are numbered by one FaultBackend (io/fault_backend.hpp), so fault sweeps cover this path too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "common/result.hpp"
#include "io/fault_backend.hpp"
#include "io/reader.hpp"

namespace sluice::io {

struct FileOptions {
  bool writable = false;  // open read-write (the file must exist); read-only otherwise
  // O_DIRECT: every offset, length and buffer must then be 4096-aligned. Where the filesystem
  // refuses it (at open or, for some, at the first read or write: EINVAL), the file quietly
  // falls back to buffered I/O.
  bool direct = false;
  RetryPolicy retry;
  const FaultPlan* fault = nullptr;  // tests: number every read and write with this plan
};

struct FileStats {
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t write_retries = 0;  // read retries are in reader_stats()
  std::uint64_t short_writes = 0;
};

// Thread safety: every method may be called from any thread; reads and writes are serialised by
// an internal mutex (the callers read a frame or a layer at a time, so there is little to gain
// from running two at once on one descriptor).
class File {
 public:
  // Opens `path`. Throws std::runtime_error naming the path when it cannot be opened.
  static std::unique_ptr<File> open(const std::string& path, const FileOptions& options = {});
  // Takes ownership of an open descriptor (a scratch file made with mkstemp, perhaps unlinked);
  // `path` names it in messages. options.writable and options.direct describe how it was opened
  // (direct: O_DIRECT is set on it now, if the filesystem takes it). Its size is read now.
  static std::unique_ptr<File> adopt(int fd, std::string path, const FileOptions& options = {});
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }  // owned by the File; valid while it lives
  // The size when opened: reads and writes must lie within it (a file is sized first, with
  // ftruncate, and then written).
  std::uint64_t size() const { return size_; }
  bool direct() const;

  // Reads exactly dest.size() bytes at `offset`. Error (ErrorKind::io, the errno) naming the
  // path, offset and length on failure, including a range past the end of the file.
  Status read_at(std::span<std::byte> dest, std::uint64_t offset);
  // Writes exactly src.size() bytes at `offset`, within size(). Same errors.
  Status write_at(std::span<const std::byte> src, std::uint64_t offset);

  FileStats stats() const;
  ReaderStats reader_stats() const;

 private:
  File(int fd, std::string path, std::uint64_t size, const FileOptions& options);
  Status read_chunk(std::byte* dest, std::uint64_t offset, std::uint32_t length);
  Status write_chunk(const std::byte* src, std::uint64_t offset, std::uint32_t length);
  Status out_of_range(const char* what, std::uint64_t offset, std::uint64_t length) const;
  // EINVAL from an O_DIRECT descriptor: a filesystem that took O_DIRECT at open but refuses it
  // for I/O. Drops O_DIRECT and returns true (the caller tries again), once.
  bool drop_direct(int err);

  mutable std::mutex mutex_;
  int fd_ = -1;  // owned by reader_'s backend, which closes it
  std::string path_;
  std::uint64_t size_ = 0;
  bool writable_ = false;
  bool direct_ = false;
  RetryPolicy retry_;
  std::unique_ptr<Reader> reader_;
  FaultBackend* fault_ = nullptr;  // inside reader_, when a plan was given
  FileStats stats_;
};

}  // namespace sluice::io
