// The backend-selection surface of compute/cuda/cuda_backend.hpp, in whichever build this is:
// with the toolkit (real backend; a machine without a GPU must answer "unavailable" with a
// reason, never crash) or without it (the stub). Runs everywhere, no device needed.
#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "compute/cpu/kernels.hpp"
#include "compute/cpu/quants.hpp"
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

// What matmul would do with a (type, batch), computed in every build: the GEMV/GEMM switch at
// kMaxGemvBatch (tested here without a device, since choose_matmul_path is shared by both builds)
// and matmul_path agreeing with it and with supports_weight_type for every type. (This test used
// to compare the stub's constants with each other: supports_weight_type(t) == built_with_cuda
// and matmul_path(t, 1) == unsupported are both hard-coded `false`/`unsupported` without CUDA.)
TEST(CudaBackendQuery, MatmulPathFollowsTheBatchAndTheSupportedTypes) {
  EXPECT_EQ(choose_matmul_path(true, 1), MatmulPath::fused_gemv);
  EXPECT_EQ(choose_matmul_path(true, kMaxGemvBatch), MatmulPath::fused_gemv);
  EXPECT_EQ(choose_matmul_path(true, kMaxGemvBatch + 1), MatmulPath::dequant_gemm);
  EXPECT_EQ(choose_matmul_path(true, 512), MatmulPath::dequant_gemm);
  for (std::int64_t batch : {std::int64_t{1}, std::int64_t{kMaxGemvBatch}, std::int64_t{kMaxGemvBatch + 1}}) {
    EXPECT_EQ(choose_matmul_path(false, batch), MatmulPath::unsupported) << batch;
  }
  for (int slot = 0; slot < cpu::kTypeSlots; ++slot) {
    const auto t = static_cast<GgmlType>(slot);
    SCOPED_TRACE(slot);
    for (std::int64_t batch : {std::int64_t{1}, std::int64_t{kMaxGemvBatch}, std::int64_t{kMaxGemvBatch + 1}}) {
      EXPECT_EQ(matmul_path(t, batch), choose_matmul_path(supports_weight_type(t), batch)) << batch;
    }
    // The device kernels are tested against compute/cpu: a type without a CPU reference cannot
    // be one the device claims.
    if (supports_weight_type(t)) {
      EXPECT_TRUE(cpu::is_weight_type(t));
    }
  }
  // With the toolkit, the kernels this binary has cover every type we run models in.
  if (query_backend().built_with_cuda) {
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                       GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                       GgmlType::Q6_K}) {
      EXPECT_TRUE(supports_weight_type(t)) << static_cast<int>(t);
    }
  }
  // Activation-only types are never weights.
  EXPECT_FALSE(supports_weight_type(GgmlType::Q8_K));
  EXPECT_FALSE(supports_weight_type(GgmlType::Q8_1));
  EXPECT_EQ(matmul_path(GgmlType::Q8_K, 1), MatmulPath::unsupported);
  EXPECT_STREQ(to_string(MatmulPath::fused_gemv), "fused_gemv");
  EXPECT_STREQ(to_string(MatmulPath::dequant_gemm), "dequant_gemm");
  EXPECT_STREQ(to_string(MatmulPath::unsupported), "unsupported");
}

}  // namespace
}  // namespace sluice::cuda
