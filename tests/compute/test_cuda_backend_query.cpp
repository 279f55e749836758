// The backend-selection surface of compute/cuda/cuda_backend.hpp, in whichever build this is:
// with the toolkit (real backend; a machine without a GPU must answer "unavailable" with a
// reason, never crash) or without it (the stub). Runs everywhere, no device needed.
#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "compute/cuda/cuda_backend.hpp"

namespace sluice::cuda {
namespace {

TEST(CudaBackendQuery, AnswersWithOrWithoutDevice) {
  const BackendInfo info = query_backend();
  std::printf("CUDA backend: built_with_cuda=%d available=%d devices=%zu reason='%s'\n", info.built_with_cuda,
              info.available, info.devices.size(), info.reason.c_str());
  EXPECT_EQ(cuda_available(), info.available);
  if (info.available) {
    EXPECT_TRUE(info.built_with_cuda);
    EXPECT_TRUE(info.reason.empty());
    ASSERT_FALSE(info.devices.empty());
    for (const DeviceInfo& d : info.devices) {
      EXPECT_FALSE(d.name.empty());
      EXPECT_GE(d.compute_major, 9);
      EXPECT_GT(d.memory_total_bytes, 0u);
    }
  } else {
    EXPECT_FALSE(info.reason.empty()) << "an unavailable backend must say why";
    EXPECT_TRUE(info.devices.empty());
  }
}

TEST(CudaBackendQuery, CreateFailsCleanlyWithoutDevice) {
  if (cuda_available()) GTEST_SKIP() << "a device is present; test_cuda_device covers creation";
  std::string reason;
  EXPECT_EQ(CudaKernels::create(0, &reason), nullptr);
  EXPECT_FALSE(reason.empty());
  EXPECT_THROW(DeviceBuffer::allocate(1024), std::runtime_error);
  EXPECT_THROW(Stream::create(), std::runtime_error);
  EXPECT_EQ(DeviceBuffer::allocate(0).data(), nullptr);  // nothing to allocate: no device needed
}

TEST(CudaBackendQuery, SupportedTypesAndPaths) {
  const BackendInfo info = query_backend();
  const GgmlType all[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                          GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
                          GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  for (GgmlType t : all) {
    EXPECT_EQ(supports_weight_type(t), info.built_with_cuda) << static_cast<int>(t);
    if (info.built_with_cuda) {
      EXPECT_EQ(matmul_path(t, 1), MatmulPath::fused_gemv);
      EXPECT_EQ(matmul_path(t, kMaxGemvBatch), MatmulPath::fused_gemv);
      EXPECT_EQ(matmul_path(t, kMaxGemvBatch + 1), MatmulPath::dequant_gemm);
    } else {
      EXPECT_EQ(matmul_path(t, 1), MatmulPath::unsupported);
    }
  }
  // Activation-only types are never weights.
  EXPECT_FALSE(supports_weight_type(GgmlType::Q8_K));
  EXPECT_FALSE(supports_weight_type(GgmlType::Q8_1));
  EXPECT_STREQ(to_string(MatmulPath::dequant_gemm), "dequant_gemm");
}

}  // namespace
}  // namespace sluice::cuda
