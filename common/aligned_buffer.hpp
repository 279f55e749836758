// A byte buffer aligned for O_DIRECT whose bytes are not zeroed on allocation. Resident weights
// are read straight into one: zeroing first would touch every page twice, and in a VM the first
// touch of fresh memory is the slow part (1.2 GB/s here, against 16 GB/s for a second touch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>

namespace sluice {

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlign = 4096;

  AlignedBuffer() = default;
  // size() is `size`; the allocation is rounded up to kAlign, so a direct read may fill the last
  // page past size() (capacity()).
  explicit AlignedBuffer(std::size_t size) : size_(size), capacity_((size + kAlign - 1) / kAlign * kAlign) {
    if (capacity_ == 0) return;
    data_.reset(static_cast<std::byte*>(std::aligned_alloc(kAlign, capacity_)));
    if (!data_) throw std::bad_alloc();
  }

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  std::span<std::byte> span() { return {data_.get(), size_}; }
  std::span<const std::byte> span() const { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t size_ = 0, capacity_ = 0;
};

}  // namespace sluice
