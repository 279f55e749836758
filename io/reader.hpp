// io::Reader: the read policy over any Backend. It keeps many reads in flight, matches
// completions by user_data, advances and resubmits short reads, retries transient errnos a
// bounded number of times, reads a file's unaligned tail, and reports every failure with the
// path, offset and length. The prefetcher, benchmarks and tools read files only through it, and
// io::File (io/file.hpp) through it for synchronous reads (packs' frames, the KV spill).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/backend.hpp"

namespace sluice::io {

struct ReadRequest {
  std::byte* dest = nullptr;  // direct I/O: 4096-aligned
  std::uint64_t offset = 0;   // direct I/O: 4096-aligned
  std::uint32_t length = 0;   // direct I/O: multiple of 4096; may run past EOF (the tail)
  int buffer_index = -1;      // registered buffer holding dest, or -1
  std::uint64_t user_data = 0;
};

struct ReadCompletion {
  std::uint64_t user_data = 0;
  std::uint64_t bytes = 0;  // bytes of file data now in dest: min(length, file_size - offset)
  Status status;            // failure: ErrorKind::io with errno, path, offset and length
};

struct RetryPolicy {
  // EAGAIN/EINTR/ECANCELED are transient; 8 tries ride out a busy device without hiding a dead one.
  unsigned max_retries = 8;
  // A short read that makes progress is resubmitted; this bounds a device that keeps returning
  // tiny reads so a pass can never spin forever.
  unsigned max_short_resubmits = 64;
  // Pause before retrying EAGAIN (the kernel asked us to come back later), times the attempt.
  std::chrono::microseconds eagain_backoff{50};
};

// True for the errnos worth a bounded retry (EINTR, EAGAIN, ECANCELED: reader.cpp says why for
// each); every other errno fails the read or write at once. Shared by Reader and io::File.
bool transient_errno(int err);

struct ReaderStats {
  std::uint64_t reads_completed = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t retries = 0;
  std::uint64_t short_reads = 0;
  std::uint64_t errors = 0;
  std::chrono::nanoseconds busy{0};  // wall time with at least one read in flight
};

struct ReaderOptions {
  BackendOptions backend;
  RetryPolicy retry;
};

// Thread safety: one thread submits and waits (the prefetcher's I/O thread).
class Reader {
 public:
  Reader(std::unique_ptr<Backend> backend, std::string path, std::uint64_t file_size, RetryPolicy retry = {});
  // Opens a file (see open_backend), reading through `wrap`'s layer when one is given. Throws
  // std::runtime_error naming the path on failure.
  static std::unique_ptr<Reader> open(const std::string& path, const ReaderOptions& options = {},
                                      const BackendWrapper& wrap = {});

  const std::string& path() const { return path_; }
  std::uint64_t file_size() const { return file_size_; }
  bool direct() const { return backend_->direct(); }
  const char* backend_name() const { return backend_->name(); }
  unsigned queue_depth() const { return backend_->queue_depth(); }
  unsigned in_flight() const { return in_flight_; }
  bool can_submit() const { return in_flight_ < queue_depth(); }
  const std::string& fallback_note() const { return fallback_note_; }
  const ReaderStats& stats() const { return stats_; }
  // When reads are in flight: the start of the current busy period (stats().busy does not yet
  // include it); otherwise the epoch.
  std::chrono::steady_clock::time_point busy_since() const { return in_flight_ > 0 ? busy_since_ : std::chrono::steady_clock::time_point{}; }
  Backend& backend() { return *backend_; }

  // Registers the regions that ReadRequest::buffer_index refers to. Only while nothing is in flight.
  Status register_buffers(std::span<const iovec> regions) { return backend_->register_buffers(regions); }

  // Queues a read (the kernel sees it at the next flush/wait). Requires can_submit().
  void submit(const ReadRequest& request);
  // Hands queued reads to the kernel without waiting.
  Status flush();
  // Waits until at least min(min_complete, in_flight()) requests have finished, returns up to
  // out.size() finished ones. A failed read is a completion with an error status, not a failed
  // wait; the wait itself fails only when the backend does.
  Result<std::size_t> wait(std::span<ReadCompletion> out, std::size_t min_complete = 1);
  // Convenience: a blocking read of [offset, offset+length) into dest (alignment rules above).
  Status read_sync(std::byte* dest, std::uint64_t offset, std::uint32_t length, std::uint64_t* bytes = nullptr);

  void set_fallback_note(std::string note) { fallback_note_ = std::move(note); }

 private:
  struct Op {
    ReadRequest request;
    std::uint64_t end = 0;    // file offset where this request's data ends (EOF-clamped)
    std::uint64_t valid = 0;  // file offset up to which dest holds good data
    unsigned retries = 0;
    unsigned short_resubmits = 0;
    bool active = false;
  };

  void issue(std::uint32_t slot, std::uint64_t start);
  // Handles one raw completion: finishes the op (returns true) or resubmits it.
  bool handle(const RawCompletion& raw, ReadCompletion& finished);
  void finish_op(std::uint32_t slot);
  void note_in_flight_change(int delta);
  // The open file's size now (fstat), or nullopt when fstat fails.
  std::optional<std::uint64_t> current_file_size() const;

  std::unique_ptr<Backend> backend_;
  std::string path_;
  std::uint64_t file_size_;
  RetryPolicy retry_;
  std::string fallback_note_;
  std::vector<Op> ops_;
  std::vector<std::uint32_t> free_slots_;
  std::deque<ReadCompletion> ready_;  // finished without touching the backend (bad requests)
  std::vector<RawCompletion> raw_;
  unsigned in_flight_ = 0;
  unsigned raw_in_flight_ = 0;
  std::chrono::steady_clock::time_point busy_since_;
  ReaderStats stats_;
};

}  // namespace sluice::io
