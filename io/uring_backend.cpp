// io_uring backend (liburing): O_DIRECT reads with the file registered (IOSQE_FIXED_FILE) and,
// when the caller registers its buffers, READ_FIXED so the kernel skips per-I/O page pinning.
// Many reads are in flight at once; completions come back in any order, matched by tag.
#include <liburing.h>

#include <chrono>
#include <thread>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "common/assert.hpp"
#include "io/backend.hpp"

namespace sluice::io {
namespace {

class UringBackend final : public Backend {
 public:
  UringBackend(int fd, bool direct, unsigned queue_depth) : fd_(fd), direct_(direct), queue_depth_(queue_depth) {}

  int init() {
    int rc = io_uring_queue_init(queue_depth_, &ring_, 0);
    if (rc < 0) {
      owns_fd_ = false;
      return -rc;
    }
    ring_ready_ = true;
    // A registered file saves an fget/fput per I/O; failure only costs that, so it is not fatal.
    if (io_uring_register_files(&ring_, &fd_, 1) == 0) file_registered_ = true;
    return 0;
  }

  ~UringBackend() override {
    if (ring_ready_) {
      // A submitted read writes into its destination until it completes (a buffered read through
      // an io-wq worker copies then, into whatever is mapped there by that time): wait for each,
      // so the caller may free its buffers once the backend is gone. Unsubmitted entries are
      // dropped with the ring.
      while (in_flight_ > unsubmitted_) {
        io_uring_cqe* cqe = nullptr;
        const int rc = io_uring_wait_cqe(&ring_, &cqe);
        if (rc == -EINTR) continue;
        if (rc < 0) break;  // the ring itself failed: nothing more will arrive
        io_uring_cqe_seen(&ring_, cqe);
        --in_flight_;
      }
      io_uring_queue_exit(&ring_);  // also unregisters files and buffers
    }
    if (owns_fd_) ::close(fd_);
  }

  const char* name() const override { return "io_uring"; }
  bool direct() const override { return direct_; }
  int fd() const override { return fd_; }
  unsigned queue_depth() const override { return queue_depth_; }
  bool buffers_registered() const override { return buffers_registered_; }

  Status register_buffers(std::span<const iovec> regions) override {
    SLUICE_ASSERT_MSG(in_flight_ == 0, "register_buffers with reads in flight");
    if (buffers_registered_) {
      io_uring_unregister_buffers(&ring_);
      buffers_registered_ = false;
    }
    if (regions.empty()) return {};
    int rc = io_uring_register_buffers(&ring_, regions.data(), static_cast<unsigned>(regions.size()));
    if (rc < 0) {
      // ENOMEM here usually means RLIMIT_MEMLOCK is too small for the pinned pages.
      return Error{ErrorKind::io, -rc,
                   fmt::format("io_uring_register_buffers({} regions) failed: {}", regions.size(), std::strerror(-rc))};
    }
    buffers_registered_ = true;
    return {};
  }

  void prepare(const RawRead& read) override {
    SLUICE_ASSERT_MSG(in_flight_ < queue_depth_, "io_uring backend: queue depth exceeded");
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    SLUICE_ASSERT_MSG(sqe != nullptr, "io_uring SQ full despite queue-depth accounting");
    int file = file_registered_ ? 0 : fd_;
    if (buffers_registered_ && read.buffer_index >= 0) {
      io_uring_prep_read_fixed(sqe, file, read.dest, read.length, read.offset, read.buffer_index);
    } else {
      io_uring_prep_read(sqe, file, read.dest, read.length, read.offset);
    }
    if (file_registered_) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, read.tag);
    ++in_flight_;
    ++unsubmitted_;
  }

  Status submit() override {
    int busy_tries = 0;
    while (unsubmitted_ > 0) {
      int rc = io_uring_submit(&ring_);
      if (rc == -EINTR) continue;  // a signal arrived before anything was submitted: try again
      if (rc == -EAGAIN || rc == -EBUSY) {
        // EAGAIN: the kernel is short of memory for requests; EBUSY: the completion queue is
        // full (overflowed) and takes no more until completions are reaped. With submitted reads
        // outstanding, leave the rest queued: reap() frees room and submits them first. With none,
        // waiting is the only cure, and it is bounded.
        if (in_flight_ > unsubmitted_) break;
        if (++busy_tries > kMaxBusyRetries) {
          return Error{ErrorKind::io, -rc, fmt::format("io_uring_submit kept failing: {}", std::strerror(-rc))};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (rc < 0) return Error{ErrorKind::io, -rc, fmt::format("io_uring_submit failed: {}", std::strerror(-rc))};
      unsubmitted_ -= std::min<unsigned>(unsubmitted_, static_cast<unsigned>(rc));
      if (rc == 0) break;  // nothing accepted; the SQ entries stay queued for the next submit
    }
    return {};
  }

  Result<std::size_t> reap(std::span<RawCompletion> out, std::size_t min_complete) override {
    std::size_t n = 0;
    // Entries a busy kernel left queued go first, so a wait below is never for a read that was
    // not submitted.
    if (unsubmitted_ > 0) {
      if (Status s = submit(); !s) return s.error();
    }
    while (n < out.size()) {
      io_uring_cqe* cqe = nullptr;
      int rc = 0;
      if (n < min_complete) {
        rc = io_uring_wait_cqe(&ring_, &cqe);
        if (rc == -EINTR) continue;  // a signal woke us; the completions are still coming
      } else {
        rc = io_uring_peek_cqe(&ring_, &cqe);
        if (rc == -EAGAIN) break;  // nothing more ready now
      }
      if (rc < 0) return Error{ErrorKind::io, -rc, fmt::format("io_uring wait failed: {}", std::strerror(-rc))};
      out[n++] = RawCompletion{io_uring_cqe_get_data64(cqe), cqe->res};
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
    }
    return n;
  }

 private:
  int fd_;
  bool direct_;
  unsigned queue_depth_;
  io_uring ring_{};
  bool ring_ready_ = false;
  bool owns_fd_ = true;  // false after a failed init: the caller falls back with the same fd
  bool file_registered_ = false;
  bool buffers_registered_ = false;
  // About a second of 1 ms waits for a kernel short of memory with nothing in flight.
  static constexpr int kMaxBusyRetries = 1000;
  unsigned in_flight_ = 0;
  unsigned unsubmitted_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_uring_backend(int fd, bool direct, unsigned queue_depth, int& error) {
  auto backend = std::make_unique<UringBackend>(fd, direct, queue_depth);
  error = backend->init();
  if (error != 0) return nullptr;  // fd stays open for the caller's fallback
  return backend;
}

}  // namespace sluice::io
