// Device tests of the quantized-weight kernels against compute/cpu: fp16 conversion of every half,
// dequantization and activation quantization bit for bit, the fused GEMV bit for bit against its
// host emulation (the same unit terms in the warp order) and within gemv_dot_bound of the CPU
// matmul, and the cuBLAS path within a bound built from the activation and weight roundings.
// Each test skips with "SKIPPED: no CUDA device" on a machine without one.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/matmul.hpp"
#include "compute/cpu/quants.hpp"
#include "compute/cuda/kernels.hpp"
#include "compute/cuda/quant_traits.cuh"
#include "tests/compute/cuda_device_fixture.hpp"
#include "tests/compute/cuda_test_util.hpp"
#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cuda {
namespace {

using cpu::test::random_row;
using test::CudaDeviceTest;
using test::kCudaWeightTypes;
using test::random_blocks;
using test::type_name;

constexpr std::uint64_t kSeeds[] = {21, 22};

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::string label(GgmlType t, std::int64_t n, std::uint64_t seed) {
  return std::string(type_name(t)) + " n=" + std::to_string(n) + " seed=" + std::to_string(seed);
}

// Column counts at block edges for a type (one block; odd block counts; past 4096).
std::vector<std::int64_t> col_counts(GgmlType t) {
  const std::uint32_t block = cpu::block_elements(t);
  if (block == 1) return {1, 33, 4099};
  if (block == 32) return {32, 32 * 37, 4096 + 32 * 5};
  return {256, 256 * 3, 4096 + 256};
}

// rows x cols weights of `t`: rows alternate between reference-quantized and random raw blocks.
std::vector<std::uint8_t> weight_matrix(GgmlType t, std::int64_t rows, std::int64_t cols, std::mt19937_64& rng) {
  const std::size_t row_bytes = cpu::row_bytes(t, cols);
  std::vector<std::uint8_t> w(row_bytes * static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<std::uint8_t> row =
        r % 2 == 0 ? cpu::test::quantize(t, random_row(rng, cols, 0.02f)) : random_blocks(t, cols, rng);
    std::memcpy(w.data() + static_cast<std::size_t>(r) * row_bytes, row.data(), row_bytes);
  }
  return w;
}

std::vector<float> activations(std::int64_t batch, std::int64_t cols, std::mt19937_64& rng) {
  std::vector<float> x;
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::vector<float> row = random_row(rng, cols, 1.0f);
    x.insert(x.end(), row.begin(), row.end());
  }
  return x;
}

// ---- conversions and (de)quantization -------------------------------------------------------------

class CudaDeviceQuant : public CudaDeviceTest {};

TEST_F(CudaDeviceQuant, Fp16ToFp32EveryHalf) {
  std::vector<std::uint16_t> halves(65536);
  for (std::uint32_t h = 0; h < 65536; ++h) halves[h] = static_cast<std::uint16_t>(h);
  DeviceBuffer src = upload(halves);
  DeviceBuffer dst = zeros(65536 * sizeof(float));
  SLUICE_EXPECT_OK(dequantize(GgmlType::F16, src.data(), 65536, OutputFormat::f32, dst.data(), stream()));
  const std::vector<float> got = download<float>(dst, 65536);
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float want = cpu::fp16_to_fp32(static_cast<std::uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got[h])) << "half 0x" << std::hex << h;  // payloads may differ
    } else {
      ASSERT_EQ(bits(got[h]), bits(want)) << "half 0x" << std::hex << h;
    }
  }
}

TEST_F(CudaDeviceQuant, QuantizeActivationsBitExact) {
  for (GgmlType act : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    for (std::uint64_t seed : kSeeds) {
      constexpr std::int64_t kRows = 5;
      constexpr std::int64_t kCols = 4096 + 256;
      SCOPED_TRACE(label(act, kCols, seed));
      std::mt19937_64 rng(seed);
      std::vector<float> x = activations(kRows, kCols, rng);
      for (int i = 0; i < 256; ++i) x[static_cast<std::size_t>(kCols + i)] = 0.0f;  // a zero block in row 1
      x[2 * kCols + 300] = -7.5f;  // a +-amax tie in row 2: the first (negative) sets Q8_K's sign
      x[2 * kCols + 301] = 7.5f;
      const std::size_t row_bytes = cpu::row_bytes(act, kCols);
      std::vector<std::uint8_t> want(row_bytes * kRows);
      for (std::int64_t r = 0; r < kRows; ++r) {
        cpu::quantize_activation_row(act, x.data() + r * kCols, want.data() + r * row_bytes, kCols);
      }
      DeviceBuffer dx = upload(x);
      DeviceBuffer dq = zeros(want.size());
      SLUICE_EXPECT_OK(quantize_activations(act, dx.as<float>(), kRows, kCols, dq.data(), stream()));
      const std::vector<std::uint8_t> got = download<std::uint8_t>(dq, want.size());
      for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "byte " << i << " (row " << i / row_bytes << ")";
    }
  }
}

TEST_F(CudaDeviceQuant, DequantizeBitExact) {
  std::vector<GgmlType> types(std::begin(kCudaWeightTypes), std::end(kCudaWeightTypes));
  types.insert(types.end(), {GgmlType::Q8_1, GgmlType::Q8_K});
  for (GgmlType t : types) {
    for (std::uint64_t seed : kSeeds) {
      constexpr std::int64_t kRows = 3;
      const std::int64_t cols = col_counts(t).back();
      SCOPED_TRACE(label(t, cols, seed));
      std::mt19937_64 rng(seed);
      const bool weight = cpu::is_weight_type(t);
      const std::vector<std::uint8_t> w = weight ? weight_matrix(t, kRows, cols, rng) : random_blocks(t, kRows * cols, rng);
      const std::int64_t n = kRows * cols;
      std::vector<float> want(static_cast<std::size_t>(n));
      cpu::dequantize_row(t, w.data(), want.data(), n);
      DeviceBuffer dw = upload(w);
      DeviceBuffer d32 = zeros(static_cast<std::size_t>(n) * 4);
      DeviceBuffer d16 = zeros(static_cast<std::size_t>(n) * 2);
      SLUICE_EXPECT_OK(dequantize(t, dw.data(), n, OutputFormat::f32, d32.data(), stream()));
      SLUICE_EXPECT_OK(k().dequantize(t, dw.data(), n, OutputFormat::f16, d16.data()));
      const std::vector<float> got32 = download<float>(d32, static_cast<std::size_t>(n));
      const std::vector<std::uint16_t> got16 = download<std::uint16_t>(d16, static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(bits(got32[i]), bits(want[i])) << "element " << i << ": " << got32[i] << " vs " << want[i];
        ASSERT_EQ(got16[i], cpu::fp32_to_fp16(want[i])) << "element " << i;
      }
    }
  }
}

// ---- fused GEMV ------------------------------------------------------------------------------------

// y[b][r] as the GEMV computes it, on the host: the unit terms of row r against activation row b
// (quantized by the CPU, which the device matches byte for byte) in the warp order.
struct EmulateGemv {
  const std::uint8_t* w;
  std::int64_t rows;
  std::int64_t cols;
  const std::uint8_t* acts;
  std::int64_t batch;
  std::vector<float>* y;
  template <GgmlType T>
  void run() {
    using Tr = quant::TypeTraits<T>;
    const std::size_t w_row = cpu::row_bytes(T, cols);
    const std::size_t a_row = T == GgmlType::F32 ? static_cast<std::size_t>(cols) * 4 : cpu::row_bytes(Tr::kActType, cols);
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const auto* x = reinterpret_cast<const typename Tr::Block*>(w + r * w_row);
        const auto* a = reinterpret_cast<const typename Tr::ActBlock*>(acts + b * a_row);
        std::vector<float> terms;
        for (std::int64_t u = 0; u < cols / Tr::kUnitElems; ++u) {
          terms.push_back(quant::unit_dot(x[u / Tr::kUnitsPerBlock], a[u / Tr::kUnitsPerBlock], static_cast<int>(u % Tr::kUnitsPerBlock)));
        }
        (*y)[static_cast<std::size_t>(b * rows + r)] = test::warp_order_sum(terms);
      }
    }
  }
};

TEST_F(CudaDeviceQuant, GemvMatchesEmulationAndCpu) {
  constexpr std::int64_t kRows = 67;  // not a multiple of the 4 rows per thread block
  for (GgmlType t : kCudaWeightTypes) {
    for (std::int64_t cols : col_counts(t)) {
      for (std::int64_t batch : {1, 3, kMaxGemvBatch}) {
        const std::uint64_t seed = kSeeds[0] + static_cast<std::uint64_t>(cols * 10 + batch);
        SCOPED_TRACE(label(t, cols, seed) + " batch=" + std::to_string(batch));
        std::mt19937_64 rng(seed);
        const std::vector<std::uint8_t> w = weight_matrix(t, kRows, cols, rng);
        const std::vector<float> x = activations(batch, cols, rng);
        ASSERT_EQ(matmul_path(t, batch), MatmulPath::fused_gemv);

        DeviceBuffer dw = upload(w);
        DeviceBuffer dx = upload(x);
        DeviceBuffer dy = zeros(static_cast<std::size_t>(batch * kRows) * 4);
        SLUICE_EXPECT_OK(k().matmul(t, dw.data(), kRows, cols, dx.as<float>(), batch, dy.as<float>()));
        const std::vector<float> got = download<float>(dy, static_cast<std::size_t>(batch * kRows));

        const GgmlType act = cpu::vec_dot_type(t);
        const std::size_t a_row = act == GgmlType::F32 ? static_cast<std::size_t>(cols) * 4 : cpu::row_bytes(act, cols);
        std::vector<std::uint8_t> acts(a_row * static_cast<std::size_t>(batch));
        for (std::int64_t b = 0; b < batch; ++b) {
          if (act == GgmlType::F32) std::memcpy(acts.data() + b * a_row, x.data() + b * cols, a_row);
          else cpu::quantize_activation_row(act, x.data() + b * cols, acts.data() + b * a_row, cols);
        }
        std::vector<float> emulated(static_cast<std::size_t>(batch * kRows));
        ASSERT_TRUE(quant::dispatch_weight_type(t, EmulateGemv{w.data(), kRows, cols, acts.data(), batch, &emulated}));
        std::vector<float> want(static_cast<std::size_t>(batch * kRows));
        cpu::matmul(t, w.data(), kRows, cols, x.data(), batch, want.data(), cpu::CpuIsa::scalar);

        const std::size_t w_row = cpu::row_bytes(t, cols);
        for (std::int64_t b = 0; b < batch; ++b) {
          for (std::int64_t r = 0; r < kRows; ++r) {
            const std::size_t i = static_cast<std::size_t>(b * kRows + r);
            ASSERT_EQ(bits(got[i]), bits(emulated[i])) << "b=" << b << " r=" << r << ": " << got[i] << " vs emulated " << emulated[i];
            const double magnitude = test::dot_terms_magnitude(t, w.data() + r * w_row, act, acts.data() + b * a_row, cols);
            ASSERT_LE(std::fabs(double(got[i]) - want[i]), test::gemv_dot_bound(cols, magnitude))
                << "b=" << b << " r=" << r << ": " << got[i] << " vs cpu " << want[i];
          }
        }
      }
    }
  }
}

// ---- cuBLAS path ------------------------------------------------------------------------------------

TEST_F(CudaDeviceQuant, GemmPathWithinBound) {
  struct Shape {
    std::int64_t rows;
    std::int64_t batch;
  };
  const Shape shapes[] = {{37, kMaxGemvBatch + 1}, {130, 33}};
  for (GgmlType t : kCudaWeightTypes) {
    const std::int64_t cols = col_counts(t).back();
    for (const Shape& s : shapes) {
      const std::uint64_t seed = kSeeds[1] + static_cast<std::uint64_t>(s.batch);
      SCOPED_TRACE(label(t, cols, seed) + " rows=" + std::to_string(s.rows) + " batch=" + std::to_string(s.batch));
      std::mt19937_64 rng(seed);
      const std::vector<std::uint8_t> w = weight_matrix(t, s.rows, cols, rng);
      const std::vector<float> x = activations(s.batch, cols, rng);
      ASSERT_EQ(matmul_path(t, s.batch), MatmulPath::dequant_gemm);
      SLUICE_EXPECT_OK(k().reserve(t, s.rows, cols, s.batch));
      const std::size_t reserved = k().workspace_bytes();
      DeviceBuffer dw = upload(w);
      DeviceBuffer dx = upload(x);
      DeviceBuffer dy = zeros(static_cast<std::size_t>(s.batch * s.rows) * 4);
      SLUICE_EXPECT_OK(k().matmul(t, dw.data(), s.rows, cols, dx.as<float>(), s.batch, dy.as<float>()));
      EXPECT_EQ(k().workspace_bytes(), reserved) << "reserve() should have covered the call";
      const std::vector<float> got = download<float>(dy, static_cast<std::size_t>(s.batch * s.rows));
      std::vector<float> want(got.size());
      cpu::matmul(t, w.data(), s.rows, cols, x.data(), s.batch, want.data());
      const std::size_t w_row = cpu::row_bytes(t, cols);
      for (std::int64_t b = 0; b < s.batch; ++b) {
        for (std::int64_t r = 0; r < s.rows; ++r) {
          const std::size_t i = static_cast<std::size_t>(b * s.rows + r);
          // Tight: the same fp16 operands in exact arithmetic (catches layout and stripe bugs).
          double magnitude = 0.0;
          const double exact = test::gemm_fp16_reference(t, w.data() + r * w_row, x.data() + b * cols, cols, &magnitude);
          ASSERT_LE(std::fabs(got[i] - exact), test::gemm_accumulation_bound(cols, magnitude))
              << "b=" << b << " r=" << r << ": " << got[i] << " vs fp16 reference " << exact;
          // Loose: the CPU's Q8 activations against the GPU's fp16 ones (worst case).
          ASSERT_LE(std::fabs(double(got[i]) - want[i]), test::gemm_bound(t, w.data() + r * w_row, x.data() + b * cols, cols))
              << "b=" << b << " r=" << r << ": " << got[i] << " vs cpu " << want[i];
        }
      }
    }
  }
}

// More rows than one dequantized stripe holds (kGemmStripeBytes): the stripes must tile the output.
TEST_F(CudaDeviceQuant, GemmPathAcrossStripes) {
  constexpr GgmlType t = GgmlType::Q4_0;
  constexpr std::int64_t kCols = 16384;
  const std::int64_t stripe_rows = static_cast<std::int64_t>(kGemmStripeBytes / (kCols * 2));
  const std::int64_t rows = 2 * stripe_rows + 5;  // three stripes, the last one short
  constexpr std::int64_t kBatch = 12;
  std::mt19937_64 rng(kSeeds[0]);
  const std::vector<std::uint8_t> w = weight_matrix(t, rows, kCols, rng);
  const std::vector<float> x = activations(kBatch, kCols, rng);
  DeviceBuffer dw = upload(w);
  DeviceBuffer dx = upload(x);
  DeviceBuffer dy = zeros(static_cast<std::size_t>(kBatch * rows) * 4);
  SLUICE_EXPECT_OK(k().matmul(t, dw.data(), rows, kCols, dx.as<float>(), kBatch, dy.as<float>()));
  const std::vector<float> got = download<float>(dy, static_cast<std::size_t>(kBatch * rows));
  std::vector<float> want(got.size());
  cpu::matmul(t, w.data(), rows, kCols, x.data(), kBatch, want.data());
  const std::size_t w_row = cpu::row_bytes(t, kCols);
  // Every row near a stripe boundary and a sample elsewhere, against the fp16 reference (tight)
// and the CPU (loose), as GemmPathWithinBound.
  for (std::int64_t r = 0; r < rows; r += (r % stripe_rows < 3 || r % stripe_rows > stripe_rows - 3) ? 1 : 97) {
    for (std::int64_t b = 0; b < kBatch; b += 5) {
      const std::size_t i = static_cast<std::size_t>(b * rows + r);
      double magnitude = 0.0;
      const double exact = test::gemm_fp16_reference(t, w.data() + r * w_row, x.data() + b * kCols, kCols, &magnitude);
      ASSERT_LE(std::fabs(got[i] - exact), test::gemm_accumulation_bound(kCols, magnitude)) << "b=" << b << " r=" << r;
      ASSERT_LE(std::fabs(double(got[i]) - want[i]), test::gemm_bound(t, w.data() + r * w_row, x.data() + b * kCols, kCols))
          << "b=" << b << " r=" << r;
    }
  }
}

}  // namespace
}  // namespace sluice::cuda
