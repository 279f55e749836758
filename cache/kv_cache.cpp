#include "cache/kv_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <future>
#include <stdexcept>
#include <vector>

#include "common/assert.hpp"
#include "common/units.hpp"

namespace sluice::cache {
namespace {

class ResidentKvCache final : public KvCache {
 public:
  explicit ResidentKvCache(const KvShape& shape) : KvCache(shape) {
    (void)shape.row_bytes();  // throws for a q8_0 row that is not whole blocks
    storage_.assign(shape.total_bytes(), std::byte{0});
  }
  void begin_layer(std::int64_t) override {}
  compute::KvLayerView view(std::int64_t il, std::int32_t seq) override {
    const std::uint64_t plane = std::uint64_t(shape_.n_ctx) * std::uint64_t(shape_.row_bytes());
    std::byte* base = storage_.data() + std::uint64_t(il) * shape_.layer_bytes() + std::uint64_t(seq) * 2 * plane;
    return {base, base + plane, shape_.n_ctx, shape_.type, shape_.row_bytes()};
  }
  void end_layer(std::int64_t, std::span<const KvWrite>) override {}
  void clear(std::int32_t) override {}  // positions are always written before they are read
  std::uint64_t memory_bytes() const override { return storage_.size(); }
  bool spilled() const override { return false; }

 private:
  std::vector<std::byte> storage_;
};

// An anonymous mapping: page-aligned, as O_DIRECT needs, and returned to the kernel on free.
struct Mapping {
  std::byte* data = nullptr;
  std::size_t bytes = 0;
  explicit Mapping(std::size_t n) : bytes(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error(fmt::format("cannot map {} for the KV cache: {}", format_bytes(n), std::strerror(errno)));
    data = static_cast<std::byte*>(p);
  }
  ~Mapping() {
    if (data) munmap(data, bytes);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

// Scratch-file layout: layer-major, then sequence, then K and V, each plane n_ctx rows padded
// to 4096 bytes so every read and write-back can go through O_DIRECT (no page cache to count
// against a memory cap). A layer's planes are contiguous in the file and in the buffer.
class SpilledKvCache final : public KvCache {
 public:
  SpilledKvCache(const KvShape& shape, const std::string& dir)
      : KvCache(shape),
        plane_bytes_(align_up(std::uint64_t(shape.n_ctx) * std::uint64_t(shape.row_bytes()), kDirectAlign)),
        layer_span_(plane_bytes_ * 2 * std::uint64_t(shape.n_seq)),
        written_(std::size_t(shape.n_layer) * std::size_t(shape.n_seq), 0) {
    path_ = dir + "/sluice-kv-XXXXXX";
    std::vector<char> name(path_.begin(), path_.end());
    name.push_back('\0');
    fd_ = mkstemp(name.data());
    if (fd_ < 0) throw std::runtime_error(fmt::format("cannot create the KV spill file in {}: {}", dir, std::strerror(errno)));
    path_ = name.data();
    unlink(path_.c_str());  // the file lives as long as the descriptor: nothing left after a crash
    if (ftruncate(fd_, off_t(layer_span_ * std::uint64_t(shape.n_layer))) != 0) {
      const int err = errno;
      close(fd_);
      throw std::runtime_error(fmt::format("cannot size the KV spill file {} to {}: {}", path_,
                                           format_bytes(layer_span_ * std::uint64_t(shape.n_layer)), std::strerror(err)));
    }
    const int flags = fcntl(fd_, F_GETFL);
    direct_ = flags >= 0 && fcntl(fd_, F_SETFL, flags | O_DIRECT) == 0;
    for (auto& b : buffers_) b = std::make_unique<Mapping>(layer_span_);
  }

  ~SpilledKvCache() override {
    if (pending_.valid()) pending_.wait();
    close(fd_);
  }

  void begin_layer(std::int64_t il) override {
    SLUICE_ASSERT(il >= 0 && il < shape_.n_layer && active_ < 0);
    if (pending_.valid()) {
      auto started = std::chrono::steady_clock::now();
      pending_.get();  // rethrows a read error
      read_wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    }
    int b = holds_[0] == il ? 0 : holds_[1] == il ? 1 : -1;
    if (b < 0) {  // first layer ever, or a pass that was abandoned half-way
      b = last_ == 0 ? 1 : 0;
      holds_[b] = -1;
      read_layer(il, b);
      holds_[b] = il;
    }
    active_ = b;
    // Read the next layer into the other buffer while this one computes. Its newest positions
    // were written back when it last ended, before this begin: the read cannot be stale.
    const std::int64_t next = (il + 1) % shape_.n_layer;
    const int other = 1 - b;
    if (next != il) {
      holds_[other] = -1;
      pending_ = std::async(std::launch::async, [this, next, other] {
        read_layer(next, other);
        holds_[other] = next;
      });
    }
  }

  compute::KvLayerView view(std::int64_t il, std::int32_t seq) override {
    SLUICE_ASSERT(active_ >= 0 && holds_[active_] == il);
    std::byte* base = buffers_[active_]->data + std::uint64_t(seq) * 2 * plane_bytes_;
    return {base, base + plane_bytes_, shape_.n_ctx, shape_.type, shape_.row_bytes()};
  }

  void end_layer(std::int64_t il, std::span<const KvWrite> writes) override {
    SLUICE_ASSERT(active_ >= 0 && holds_[active_] == il);
    const std::uint64_t rb = std::uint64_t(shape_.row_bytes());
    for (const KvWrite& w : writes) {
      if (w.n <= 0) continue;
      // The 4096-aligned window around the new rows: bytes before them are valid (earlier
      // positions), bytes after are beyond what any pass reads.
      const std::uint64_t from = std::uint64_t(w.pos0) * rb / kDirectAlign * kDirectAlign;
      const std::uint64_t to = std::min(plane_bytes_, align_up(std::uint64_t(w.pos0 + w.n) * rb, kDirectAlign));
      for (int plane = 0; plane < 2; ++plane) {
        const std::uint64_t at = (std::uint64_t(w.seq) * 2 + std::uint64_t(plane)) * plane_bytes_;
        transfer(true, buffers_[active_]->data + at + from, to - from, file_offset(il) + at + from);
      }
      std::int64_t& filled = written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(w.seq)];
      filled = std::max(filled, w.pos0 + w.n);
    }
    last_ = active_;
    active_ = -1;
  }

  void clear(std::int32_t seq) override {
    if (pending_.valid()) pending_.wait();  // the background read uses written_
    for (std::int64_t il = 0; il < shape_.n_layer; ++il) written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(seq)] = 0;
  }
  std::uint64_t memory_bytes() const override { return 2 * layer_span_; }
  bool spilled() const override { return true; }
  KvStats stats() const override {
    KvStats s;
    s.bytes_read = bytes_read_.load();
    s.bytes_written = bytes_written_.load();
    s.read_wait_seconds = read_wait_seconds_;
    return s;
  }

 private:
  std::uint64_t file_offset(std::int64_t il) const { return std::uint64_t(il) * layer_span_; }

  // Reads the written prefix of every sequence's K and V planes of layer il into buffer b.
  void read_layer(std::int64_t il, int b) {
    const std::uint64_t rb = std::uint64_t(shape_.row_bytes());
    for (std::int32_t s = 0; s < shape_.n_seq; ++s) {
      const std::int64_t filled = written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(s)];
      if (filled == 0) continue;
      const std::uint64_t len = std::min(plane_bytes_, align_up(std::uint64_t(filled) * rb, kDirectAlign));
      for (int plane = 0; plane < 2; ++plane) {
        const std::uint64_t at = (std::uint64_t(s) * 2 + std::uint64_t(plane)) * plane_bytes_;
        transfer(false, buffers_[b]->data + at, len, file_offset(il) + at);
      }
    }
  }

  void transfer(bool write, std::byte* buf, std::uint64_t len, std::uint64_t offset) {
    std::uint64_t done = 0;
    while (done < len) {
      const ssize_t n = write ? pwrite(fd_, buf + done, len - done, off_t(offset + done))
                              : pread(fd_, buf + done, len - done, off_t(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EINVAL && direct_) {  // a filesystem that takes O_DIRECT at open but not here
        direct_ = false;
        fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) & ~O_DIRECT);
        continue;
      }
      if (n <= 0) {
        throw std::runtime_error(fmt::format("KV spill file {} (unlinked): {} of {} at offset {} failed: {}", path_,
                                             write ? "write" : "read", format_bytes(len - done), offset + done,
                                             n < 0 ? std::strerror(errno) : "unexpected end of file"));
      }
      done += std::uint64_t(n);
    }
    (write ? bytes_written_ : bytes_read_) += len;
  }

  std::uint64_t plane_bytes_, layer_span_;
  std::vector<std::int64_t> written_;  // [layer][seq]: positions persisted
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> direct_{false};
  std::unique_ptr<Mapping> buffers_[2];
  std::int64_t holds_[2] = {-1, -1};  // layer each buffer holds (-1: none or being read)
  int active_ = -1, last_ = -1;
  std::future<void> pending_;
  std::atomic<std::uint64_t> bytes_read_{0}, bytes_written_{0};  // the reader thread adds too
  double read_wait_seconds_ = 0;
};

}  // namespace

std::unique_ptr<KvCache> make_resident_kv_cache(const KvShape& shape) { return std::make_unique<ResidentKvCache>(shape); }

std::unique_ptr<KvCache> make_spilled_kv_cache(const KvShape& shape, const std::string& dir) {
  (void)shape.row_bytes();
  return std::make_unique<SpilledKvCache>(shape, dir);
}

std::uint64_t spilled_kv_memory_bytes(const KvShape& shape) {
  return 2 * align_up(std::uint64_t(shape.n_ctx) * std::uint64_t(shape.row_bytes()), kDirectAlign) * 2 * std::uint64_t(shape.n_seq);
}

}  // namespace sluice::cache
