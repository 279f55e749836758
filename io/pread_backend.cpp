// pread backend: the fallback when io_uring is unavailable (seccomp, old kernels) and a
// second implementation that the shared io suite checks against io_uring. Reads are executed
// synchronously in reap(), in submission order; "in flight" only means "prepared".
#include <unistd.h>

#include <cerrno>
#include <deque>

#include "common/assert.hpp"
#include "io/backend.hpp"

namespace sluice::io {
namespace {

class PreadBackend final : public Backend {
 public:
  PreadBackend(int fd, bool direct, unsigned queue_depth)
      : fd_(fd), direct_(direct), queue_depth_(queue_depth) {}
  ~PreadBackend() override { ::close(fd_); }

  const char* name() const override { return "pread"; }
  bool direct() const override { return direct_; }
  int fd() const override { return fd_; }
  unsigned queue_depth() const override { return queue_depth_; }
  Status register_buffers(std::span<const iovec>) override { return {}; }
  bool buffers_registered() const override { return false; }

  void prepare(const RawRead& read) override {
    SLUICE_ASSERT_MSG(pending_.size() < queue_depth_, "pread backend: queue depth exceeded");
    pending_.push_back(read);
  }
  Status submit() override { return {}; }

  Result<std::size_t> reap(std::span<RawCompletion> out, std::size_t min_complete) override {
    // Every prepared read completes as soon as it is performed, so we perform as many as the
    // caller can take; min_complete is met whenever that many reads were prepared.
    (void)min_complete;
    std::size_t n = 0;
    while (n < out.size() && !pending_.empty()) {
      RawRead read = pending_.front();
      pending_.pop_front();
      ssize_t got = ::pread(fd_, read.dest, read.length, static_cast<off_t>(read.offset));
      out[n++] = RawCompletion{read.tag, got < 0 ? -errno : static_cast<std::int32_t>(got)};
    }
    return n;
  }

 private:
  int fd_;
  bool direct_;
  unsigned queue_depth_;
  std::deque<RawRead> pending_;
};

}  // namespace

std::unique_ptr<Backend> make_pread_backend(int fd, bool direct, unsigned queue_depth) {
  return std::make_unique<PreadBackend>(fd, direct, queue_depth);
}

}  // namespace sluice::io
