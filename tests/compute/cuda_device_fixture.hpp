// Fixture of the device tests (test_cuda_device): skips with "SKIPPED: no CUDA device" when the
// machine has none, otherwise holds a CudaKernels and moves arrays to and from the device on its
// stream. Every test of test_cuda_device derives from it, so a machine without a GPU reports
// each test as skipped (ctest: "Skipped"), never as passed.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "compute/cuda/cuda_backend.hpp"

namespace sluice::cuda::test {

class CudaDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const BackendInfo info = query_backend();
    if (!info.available) GTEST_SKIP() << "SKIPPED: no CUDA device (" << info.reason << ")";
    std::string reason;
    kernels_ = CudaKernels::create(info.devices.front().index, &reason);
    ASSERT_NE(kernels_, nullptr) << "CudaKernels::create: " << reason;
  }

  CudaKernels& k() { return *kernels_; }
  StreamRef stream() { return kernels_->stream().ref(); }

  // A device copy of `bytes` host bytes (synchronous: the host vector may go away after).
  DeviceBuffer upload(const void* data, std::size_t bytes) {
    DeviceBuffer buffer = DeviceBuffer::allocate(bytes);
    if (bytes > 0) {
      EXPECT_TRUE(copy_to_device(buffer.data(), data, bytes, kernels_->stream()).ok());
      sync();
    }
    return buffer;
  }
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& v) {
    return upload(v.data(), v.size() * sizeof(T));
  }
  DeviceBuffer zeros(std::size_t bytes) {
    DeviceBuffer buffer = DeviceBuffer::allocate(bytes);
    if (bytes > 0) {
      EXPECT_TRUE(fill_zero(buffer.data(), bytes, kernels_->stream()).ok());
    }
    return buffer;
  }
  template <typename T>
  std::vector<T> download(const DeviceBuffer& buffer, std::size_t count) {
    std::vector<T> out(count);
    sync();
    if (count > 0) {
      EXPECT_TRUE(copy_to_host(out.data(), buffer.data(), count * sizeof(T), kernels_->stream()).ok());
    }
    sync();
    return out;
  }
  void sync() {
    const CudaStatus s = kernels_->synchronize();
    ASSERT_TRUE(s.ok()) << s.message();
  }

 private:
  std::unique_ptr<CudaKernels> kernels_;
};

// Checks a CudaStatus inside a test, with its message.
#define SLUICE_EXPECT_OK(expr)                          \
  do {                                                  \
    const ::sluice::cuda::CudaStatus status_ = (expr);  \
    ASSERT_TRUE(status_.ok()) << #expr << ": " << status_.message(); \
  } while (0)

}  // namespace sluice::cuda::test
