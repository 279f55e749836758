// matmul against (1) the same level's vec_dot on the same quantized activations: exactly, for
// every element, batch 1, 3 and 16 and an odd row count; (2) a naive reference, dequantized
// weights times the fp32 activations in double, within matmul_bound (activation quantization
// error plus accumulation rounding); (3) itself under different thread counts: bit-identical;
// (4) the GEMM micro-kernels against vec_dot at their tile edges.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "compute/cpu/matmul.hpp"
#include "compute/cpu/matmul_amx.hpp"
#include "compute/executor.hpp"
#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cpu {
namespace {

using test::kWeightTypes;
using test::type_name;

constexpr std::int64_t kRows = 37;  // two cache blocks of 16 plus an odd remainder
constexpr std::int64_t kBatches[] = {1, 3, 16};
constexpr std::uint64_t kSeed = 2024;

struct Matrix {
  std::vector<std::uint8_t> bytes;
  std::vector<float> values;  // dequantized, rows x cols
};

Matrix make_weights(GgmlType t, std::int64_t rows, std::int64_t cols, std::mt19937_64& rng) {
  Matrix m;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto w = test::random_row(rng, cols, 0.02f);
    const auto q = test::quantize(t, w);
    m.bytes.insert(m.bytes.end(), q.begin(), q.end());
    const auto v = test::dequantize(t, q.data(), cols);
    m.values.insert(m.values.end(), v.begin(), v.end());
  }
  return m;
}

// Bound on |matmul - sum_i w_i x_i| for one output: each activation's quantization error times
// |w_i|, plus the rounding bound of the dot product.
double matmul_bound(GgmlType t, const float* w, const float* x, std::int64_t n) {
  const GgmlType act = vec_dot_type(t);
  double bound = 0.0;
  if (act == GgmlType::F16) {
    constexpr double kHalfRel = 1.0 / 2048;       // 2^-11 relative rounding of fp16
    constexpr double kHalfSubnormal = 0x1p-25;    // absolute, below the fp16 normal range
    for (std::int64_t i = 0; i < n; ++i) bound += std::fabs(w[i]) * (std::fabs(x[i]) * kHalfRel + kHalfSubnormal);
  } else if (act == GgmlType::BF16) {
    constexpr double kBf16Rel = 1.0 / 256;  // 2^-8
    for (std::int64_t i = 0; i < n; ++i) bound += std::fabs(w[i]) * std::fabs(x[i]) * kBf16Rel;
  } else if (act != GgmlType::F32) {
    // Half a step of amax/127 per element plus the fp16 rounding of the scale (Q8_0/Q8_1; the
    // Q8_K scale is fp32); Q8_1's precomputed s = fp16(d * sum q) adds |min| * 32 * the same.
    constexpr double kStepRel = 0.5 / 127 + 1.0 / 1024;
    const std::int64_t block = block_elements(act);
    for (std::int64_t b0 = 0; b0 < n; b0 += block) {
      double amax = 0.0, wsum = 0.0, wmax = 0.0;
      for (std::int64_t i = b0; i < b0 + block; ++i) {
        amax = std::max(amax, static_cast<double>(std::fabs(x[i])));
        wsum += std::fabs(w[i]);
        wmax = std::max(wmax, static_cast<double>(std::fabs(w[i])));
      }
      bound += wsum * amax * kStepRel;
      if (act == GgmlType::Q8_1) bound += static_cast<double>(block) * wmax * amax * kStepRel;
    }
  }
  std::vector<float> wv(w, w + n), xv(x, x + n);
  return bound + test::dot_rounding_bound(n, test::dot_magnitude(wv, xv));
}

class Matmul : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(Matmul, MatchesVecDotAndNaiveReference) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  for (GgmlType t : kWeightTypes) {
    const std::int64_t cols = test::test_lengths(t)[1];
    std::mt19937_64 rng(kSeed);
    const Matrix w = make_weights(t, kRows, cols, rng);
    const std::size_t w_row_bytes = row_bytes(t, cols);
    for (std::int64_t batch : kBatches) {
      SCOPED_TRACE(std::string(type_name(t)) + " rows=" + std::to_string(kRows) + " cols=" + std::to_string(cols) +
                   " batch=" + std::to_string(batch) + " seed=" + std::to_string(kSeed) + " isa=" + to_string(isa));
      std::vector<float> x;
      for (std::int64_t b = 0; b < batch; ++b) {
        const auto row = test::random_row(rng, cols, 1.5f);
        x.insert(x.end(), row.begin(), row.end());
      }
      std::vector<float> y(static_cast<std::size_t>(batch * kRows), -1.0f);
      matmul(t, w.bytes.data(), kRows, cols, x.data(), batch, y.data(), isa);
      for (std::int64_t b = 0; b < batch; ++b) {
        const std::vector<float> xb(x.begin() + b * cols, x.begin() + (b + 1) * cols);
        const auto act = test::quantize_act(vec_dot_type(t), xb);
        for (std::int64_t r = 0; r < kRows; ++r) {
          const float got = y[static_cast<std::size_t>(b * kRows + r)];
          const float want = k->vec_dot[type_slot(t)](cols, w.bytes.data() + r * w_row_bytes, act.data());
          ASSERT_EQ(got, want) << "batch row " << b << " weight row " << r;
          double naive = 0.0;
          const float* wr = w.values.data() + r * cols;
          for (std::int64_t i = 0; i < cols; ++i) naive += static_cast<double>(wr[i]) * xb[static_cast<std::size_t>(i)];
          ASSERT_LE(std::fabs(got - naive), matmul_bound(t, wr, xb.data(), cols))
              << "batch row " << b << " weight row " << r << " naive " << naive << " got " << got;
        }
      }
    }
  }
}

// rows_fn over rows [r0, kRows) of w against `batch` activation rows: every output equal to the
// vec_dot's, and the outputs of rows before r0 left alone.
void expect_rows_fn_matches_vec_dot(MatmulRowsFn rows_fn, VecDotFn vec_dot, const Matrix& w, std::size_t w_row_bytes,
                                    std::int64_t cols, const std::vector<std::uint8_t>& acts, std::size_t act_row_bytes,
                                    std::int64_t batch, std::int64_t r0) {
  std::vector<float> y(static_cast<std::size_t>(batch * kRows), -1.0f);
  rows_fn(cols, w.bytes.data(), w_row_bytes, r0, kRows, acts.data(), act_row_bytes, batch, y.data(),
          static_cast<std::size_t>(kRows));
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::uint8_t* act = acts.data() + static_cast<std::size_t>(b) * act_row_bytes;
    for (std::int64_t r = 0; r < kRows; ++r) {
      const float got = y[static_cast<std::size_t>(b * kRows + r)];
      if (r < r0) {
        ASSERT_EQ(got, -1.0f) << "row " << r << " outside the range was written";
        continue;
      }
      ASSERT_EQ(got, vec_dot(cols, w.bytes.data() + r * w_row_bytes, act)) << "batch row " << b << " weight row " << r;
    }
  }
}

// The GEMM micro-kernels (matmul_rows), called directly (whatever batch the matmul would start
// using them at), against the same level's vec_dot, exactly, at the shapes their tiling has edges
// at: activation tiles of 4 (AVX2) and 8 (AVX-512) and every remainder, row ranges not starting
// at 0 nor a multiple of a strip and row counts not multiples of 16 (the padded group of 16 rows
// of the AVX-512 Q4_K/Q5_K GEMM), and (10240 columns, 40 super-blocks) a pass of decoded rows
// shorter than a strip and chunks of super-blocks with a remainder. Then the matmul itself at the
// smallest batch that takes the kernel.
TEST_P(Matmul, GemmKernelsMatchVecDotAtTileEdges) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  // Every width of an 8-row activation tile, and more than one tile with remainders.
  constexpr std::int64_t kGemmBatches[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17};
  // Row ranges [r0, 37): 37 rows (two groups of 16 and 5), 32, 14 (one padded group), 1.
  constexpr std::int64_t kFirstRows[] = {0, 5, 23, 36};
  for (GgmlType t : kWeightTypes) {
    const MatmulRowsFn rows_fn = k->matmul_rows[type_slot(t)];
    if (rows_fn == nullptr) continue;
    const VecDotFn vec_dot = k->vec_dot[type_slot(t)];
    const GgmlType act_type = vec_dot_type(t);
    std::vector<std::int64_t> lengths = {test::test_lengths(t)[2]};
    if (block_elements(t) == 256) lengths.push_back(10240);
    // 32-element types: 101 blocks, chunks of 64 (MXFP4 on AVX-512: 32) blocks with a remainder.
    if (block_elements(t) == 32) lengths.push_back(3232);
    for (std::int64_t cols : lengths) {
      std::mt19937_64 rng(kSeed + static_cast<std::uint64_t>(cols));
      const Matrix w = make_weights(t, kRows, cols, rng);
      const std::size_t w_row_bytes = row_bytes(t, cols);
      const std::size_t act_row_bytes = row_bytes(act_type, cols);
      for (std::int64_t batch : kGemmBatches) {
        std::vector<std::uint8_t> acts;
        for (std::int64_t b = 0; b < batch; ++b) {
          const auto q = test::quantize_act(act_type, test::random_row(rng, cols, 1.5f));
          acts.insert(acts.end(), q.begin(), q.end());
        }
        for (std::int64_t r0 : kFirstRows) {
          SCOPED_TRACE(std::string(type_name(t)) + " rows=[" + std::to_string(r0) + "," + std::to_string(kRows) +
                       ") cols=" + std::to_string(cols) + " batch=" + std::to_string(batch) +
                       " seed=" + std::to_string(kSeed) + " isa=" + to_string(isa));
          ASSERT_NO_FATAL_FAILURE(
              expect_rows_fn_matches_vec_dot(rows_fn, vec_dot, w, w_row_bytes, cols, acts, act_row_bytes, batch, r0));
        }
      }
      // Through matmul(): the smallest batch at which it calls the kernel.
      const std::int64_t batch = std::max<std::int64_t>(2, k->matmul_rows_min_batch[type_slot(t)]);
      SCOPED_TRACE(std::string(type_name(t)) + " matmul cols=" + std::to_string(cols) + " batch=" +
                   std::to_string(batch) + " isa=" + to_string(isa));
      std::vector<float> x;
      for (std::int64_t b = 0; b < batch; ++b) {
        const auto row = test::random_row(rng, cols, 1.5f);
        x.insert(x.end(), row.begin(), row.end());
      }
      std::vector<float> y(static_cast<std::size_t>(batch * kRows));
      matmul(t, w.bytes.data(), kRows, cols, x.data(), batch, y.data(), isa);
      for (std::int64_t b = 0; b < batch; ++b) {
        const std::vector<float> xb(x.begin() + b * cols, x.begin() + (b + 1) * cols);
        const auto act = test::quantize_act(act_type, xb);
        for (std::int64_t r = 0; r < kRows; ++r) {
          ASSERT_EQ(y[static_cast<std::size_t>(b * kRows + r)], vec_dot(cols, w.bytes.data() + r * w_row_bytes, act.data()))
              << "batch row " << b << " weight row " << r;
        }
      }
    }
  }
}

// Q4_K_M models (Q4_K + Q6_K, some Q5_K; Gemma's Q8_0) have GEMM kernels: the K-quants on both
// SIMD levels, Q4_0 and Q8_0 with VNNI (AVX-512). Q5_0's AVX-512 vec_dot keeps its 8-lane
// accumulation (the one-chain order of the Q4_0/Q8_0 GEMM moved Gemma 3 270M's greedy text off
// llama.cpp's at token 15, parity_greedy_gemma3_270m_2): its GEMM takes that 8-lane order.
TEST_P(Matmul, RealModelTypesHaveGemmKernels) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  if (isa == CpuIsa::scalar) GTEST_SKIP() << "the scalar level has no GEMM kernels";
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    EXPECT_NE(k->matmul_rows[type_slot(t)], nullptr) << type_name(t);
  }
  if (isa == CpuIsa::avx512) {
    for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q8_0}) {
      EXPECT_NE(k->matmul_rows[type_slot(t)], nullptr) << type_name(t);
    }
  }
  // Q2_K, Q3_K and the 32-element types with a min (and Q5_0 and gpt-oss's MXFP4, in their
  // vec_dots' own 8-lane order) on both levels: GemmKernelsMatchVecDotAtTileEdges checks them
  // only where they are registered.
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q5_0,
                     GgmlType::MXFP4}) {
    EXPECT_NE(k->matmul_rows[type_slot(t)], nullptr) << type_name(t);
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, Matmul, ::testing::Values(CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avx512),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// The AMX Q4_K GEMM (matmul_amx.cpp), where this process may use AMX (else it is not registered
// and this skips): called directly, against the AVX-512 vec_dot, exactly, at batches that fill
// one to seven activation tiles of 16 with and without a remainder (single tiles, pairs sharing
// their weight tiles, a chunk of four and the chunk after it, which reads the packed weights
// back), row ranges with a padded group of 16, and 1 and 40 super-blocks; then the registered
// Q4_K GEMM through matmul() on both sides of batch 64, where it switches from the AVX-512 GEMM
// to the tiles.
TEST(MatmulAmx, Q4KGemmMatchesVecDotAcrossTilesAndChunks) {
  if (!amx_int8_usable()) GTEST_SKIP() << "AMX not usable in this process (CPUID, OS permission, the probe, or SLUICE_AMX=off)";
  const KernelTable* k = kernels_for(CpuIsa::avx512);
  ASSERT_NE(k, nullptr);
  const MatmulRowsFn rows_fn = amx_q4_k_gemm();
  const VecDotFn vec_dot = k->vec_dot[type_slot(GgmlType::Q4_K)];
  ASSERT_NE(k->matmul_rows[type_slot(GgmlType::Q4_K)], rows_fn) << "small batches must keep the AVX-512 GEMM";
  for (std::int64_t cols : {std::int64_t(256), std::int64_t(10240)}) {
    std::mt19937_64 rng(kSeed + 7 + static_cast<std::uint64_t>(cols));
    const Matrix w = make_weights(GgmlType::Q4_K, kRows, cols, rng);
    const std::size_t w_row_bytes = row_bytes(GgmlType::Q4_K, cols);
    const std::size_t act_row_bytes = row_bytes(GgmlType::Q8_K, cols);
    for (std::int64_t batch : {2, 16, 17, 33, 64, 65, 80, 97, 112}) {
      if (cols > 256 && batch % 16 != 1 && batch != 64) continue;  // the long rows at a few batches
      std::vector<std::uint8_t> acts;
      for (std::int64_t b = 0; b < batch; ++b) {
        const auto q = test::quantize_act(GgmlType::Q8_K, test::random_row(rng, cols, 1.5f));
        acts.insert(acts.end(), q.begin(), q.end());
      }
      for (std::int64_t r0 : {std::int64_t(0), std::int64_t(5)}) {
        SCOPED_TRACE("cols=" + std::to_string(cols) + " batch=" + std::to_string(batch) + " r0=" + std::to_string(r0));
        ASSERT_NO_FATAL_FAILURE(
            expect_rows_fn_matches_vec_dot(rows_fn, vec_dot, w, w_row_bytes, cols, acts, act_row_bytes, batch, r0));
      }
    }
  }
  // Through matmul(), below and at the batch where the tiles take over.
  for (std::int64_t batch : {std::int64_t(16), std::int64_t(63), std::int64_t(64), std::int64_t(70)}) {
    SCOPED_TRACE("matmul batch=" + std::to_string(batch));
    std::mt19937_64 rng(kSeed + 11 + static_cast<std::uint64_t>(batch));
    const std::int64_t cols = 512;
    const Matrix w = make_weights(GgmlType::Q4_K, kRows, cols, rng);
    std::vector<float> x;
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto row = test::random_row(rng, cols, 1.5f);
      x.insert(x.end(), row.begin(), row.end());
    }
    std::vector<float> y(static_cast<std::size_t>(batch * kRows));
    matmul(GgmlType::Q4_K, w.bytes.data(), kRows, cols, x.data(), batch, y.data(), CpuIsa::avx512);
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto act = test::quantize_act(GgmlType::Q8_K, std::vector<float>(x.begin() + b * cols, x.begin() + (b + 1) * cols));
      for (std::int64_t r = 0; r < kRows; ++r) {
        ASSERT_EQ(y[static_cast<std::size_t>(b * kRows + r)], vec_dot(cols, w.bytes.data() + r * row_bytes(GgmlType::Q4_K, cols), act.data()))
            << "matmul batch row " << b << " weight row " << r;
      }
    }
  }
}

// The AMX check's probe runs in a child: its result, or false when the child dies of a fault.
TEST(MatmulAmx, ProbeInAChildSurvivesAFault) {
  EXPECT_TRUE(succeeds_in_child_process([] { return true; }));
  EXPECT_FALSE(succeeds_in_child_process([] { return false; }));
  EXPECT_FALSE(succeeds_in_child_process([] {
    std::raise(SIGILL);  // what a refused tile instruction raises
    return true;
  }));
  EXPECT_FALSE(succeeds_in_child_process([] {
    std::raise(SIGSEGV);
    return true;
  }));
}

// SLUICE_AMX=off (the test_kernels_without_amx run) keeps a CPU with AMX on the AVX-512 GEMMs.
TEST(MatmulAmx, OffByTheEnvironment) {
  const char* env = std::getenv("SLUICE_AMX");
  if (env == nullptr || std::string(env) != "off") GTEST_SKIP() << "runs under SLUICE_AMX=off (ctest test_kernels_without_amx)";
  EXPECT_FALSE(amx_int8_usable());
}

TEST(MatmulThreads, ResultIndependentOfThreadCount) {
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::F16}) {
    SCOPED_TRACE(type_name(t));
    constexpr std::int64_t kBigRows = 301;  // many TBB tasks
    const std::int64_t cols = test::test_lengths(t)[1];
    std::mt19937_64 rng(kSeed);
    const Matrix w = make_weights(t, kBigRows, cols, rng);
    constexpr std::int64_t kBatch = 9;
    std::vector<float> x;
    for (std::int64_t b = 0; b < kBatch; ++b) {
      const auto row = test::random_row(rng, cols);
      x.insert(x.end(), row.begin(), row.end());
    }
    std::vector<float> y1(kBatch * kBigRows), y2(kBatch * kBigRows), y_all(kBatch * kBigRows);
    compute::Executor one(1), two(2), all(0);
    one.run([&] { matmul(t, w.bytes.data(), kBigRows, cols, x.data(), kBatch, y1.data()); });
    two.run([&] { matmul(t, w.bytes.data(), kBigRows, cols, x.data(), kBatch, y2.data()); });
    all.run([&] { matmul(t, w.bytes.data(), kBigRows, cols, x.data(), kBatch, y_all.data()); });
    EXPECT_EQ(y1, y2);
    EXPECT_EQ(y1, y_all);
  }
}

TEST(MatmulThreads, EmptyShapesAreNoOps) {
  std::vector<float> y(4, 7.0f);
  const float x[32] = {};
  matmul(GgmlType::Q8_0, nullptr, 0, 32, x, 1, y.data());
  matmul(GgmlType::Q8_0, nullptr, 4, 32, x, 0, y.data());
  EXPECT_EQ(y, std::vector<float>(4, 7.0f));
}

TEST(CpuIsaSelection, ActiveLevelIsSupportedAndHonoursTheEnvironment) {
  EXPECT_TRUE(isa_supported(CpuIsa::scalar));
  EXPECT_TRUE(isa_supported(active_isa()));
  EXPECT_EQ(&active_kernels(), kernels_for(active_isa()));
  // ctest also runs this test with SLUICE_CPU_ISA=scalar (tests/compute/CMakeLists.txt).
  const char* forced = std::getenv("SLUICE_CPU_ISA");
  for (CpuIsa isa : {CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avx512}) {
    if (forced != nullptr && std::string(forced) == to_string(isa) && isa_supported(isa)) {
      EXPECT_EQ(active_isa(), isa);
    }
  }
  if (forced == nullptr) {
    EXPECT_EQ(active_isa(), detected_isa());
  }
  std::printf("detected %s, active %s\n", to_string(detected_isa()), to_string(active_isa()));
}

}  // namespace
}  // namespace sluice::cpu
