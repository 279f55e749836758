// Raw asynchronous file-read backends: one interface, two implementations (io_uring, pread) and
// a fault-injecting wrapper (io/fault_backend.hpp). A backend performs single read operations
// and reports each result as the kernel did (bytes or -errno); it never retries. Retry,
// short-read and error-context policy live one layer up, in io::Reader, so every backend gets the
// same behaviour and the fault wrapper exercises it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/result.hpp"

namespace sluice::io {

enum class BackendKind { automatic, uring, pread };
const char* to_string(BackendKind kind);

struct RawRead {
  std::byte* dest = nullptr;  // for direct I/O: 4096-aligned
  std::uint64_t offset = 0;   // for direct I/O: 4096-aligned
  std::uint32_t length = 0;   // for direct I/O: a multiple of 4096
  int buffer_index = -1;      // index into the registered buffers, or -1 (not registered)
  std::uint64_t tag = 0;      // returned unchanged in the completion
};

struct RawCompletion {
  std::uint64_t tag = 0;
  std::int32_t result = 0;  // bytes read (>= 0) or -errno
};

// Thread safety: a backend is used by one thread at a time (the thread that owns the reads).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual bool direct() const = 0;          // file opened with O_DIRECT
  // The open file (owned by the backend): the reader fstats it to tell a file that ended early
  // from a device that keeps returning short reads.
  virtual int fd() const = 0;
  virtual unsigned queue_depth() const = 0;  // most reads in flight at once
  // Registers memory regions for fixed-buffer reads (io_uring_register_buffers). Call only when
  // no read is in flight. An error here is not fatal: reads fall back to unregistered buffers.
  virtual Status register_buffers(std::span<const iovec> regions) = 0;
  virtual bool buffers_registered() const = 0;
  // Queues one read. The caller keeps at most queue_depth() reads prepared or in flight.
  virtual void prepare(const RawRead& read) = 0;
  // Hands every prepared read to the kernel.
  virtual Status submit() = 0;
  // Blocks until at least `min_complete` completions are available (0: never blocks), then
  // returns up to out.size() of them.
  virtual Result<std::size_t> reap(std::span<RawCompletion> out, std::size_t min_complete) = 0;
};

struct BackendOptions {
  BackendKind kind = BackendKind::automatic;
  bool direct = true;  // O_DIRECT; silently buffered where the filesystem refuses it (tmpfs)
  // 32 reads of ~1 MiB in flight keep an NVMe queue busy without hoarding memory; see bench_io.
  unsigned queue_depth = 32;
};

// Puts a layer over the backend a reader opens (tests: io::fault_wrapper in fault_backend.hpp);
// an empty wrapper adds none. Kept out of the options structs so production options carry no
// test hook.
using BackendWrapper = std::function<std::unique_ptr<Backend>(std::unique_ptr<Backend>)>;

struct OpenedBackend {
  std::unique_ptr<Backend> backend;
  std::string fallback_note;  // why the requested backend/mode was not used; empty if it was
};

// Opens `path` read-only with the requested backend. automatic = io_uring, falling back to pread
// when io_uring_queue_init fails (EPERM under seccomp, ENOSYS on old kernels). Throws
// std::runtime_error naming the path when the file cannot be opened.
OpenedBackend open_backend(const std::string& path, const BackendOptions& options);

std::unique_ptr<Backend> make_pread_backend(int fd, bool direct, unsigned queue_depth);
// Returns null and sets `error` (an errno) when io_uring cannot be initialised.
std::unique_ptr<Backend> make_uring_backend(int fd, bool direct, unsigned queue_depth, int& error);

}  // namespace sluice::io
