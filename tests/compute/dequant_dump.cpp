// dequant_dump DIR: for every weight type, writes seeded random float rows, their bytes from
// quantize_row_reference, and our scalar dequantization of those bytes, so that
// check_dequant_vs_gguf.py can compare both directions against the PyPI gguf package.
//
// Files in DIR (little-endian, row-major):
//   manifest.tsv         one line per type: NAME <tab> ggml type id <tab> rows <tab> cols
//   NAME.input.f32       rows x cols fp32: the rows that were quantized
//   NAME.quant.bin       rows x row_bytes(NAME, cols): quantize_row_reference output
//   NAME.dequant.f32     rows x cols fp32: dequantize_row of NAME.quant.bin
//   NAME.act.f32         rows x cols fp32: one seeded activation row per weight row
//   NAME.act.bin         rows x row_bytes(vec_dot_type(NAME), cols): quantize_activation_row
//   NAME.dot.f32         rows fp32: scalar vec_dot(weight row r, activation row r)
//   raw_manifest.tsv     types whose every byte pattern is a valid block (MXFP4), same columns
//   NAME.raw.bin         rows x row_bytes(NAME, cols): bytes not made by our quantizer (below)
//   NAME.raw.dequant.f32 rows x cols fp32: dequantize_row of NAME.raw.bin
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/compute/kernel_test_util.hpp"

namespace {

using sluice::GgmlType;
namespace cpu = sluice::cpu;

constexpr std::uint64_t kSeed = 0xd0d0;
constexpr int kRandomRows = 6;
constexpr float kActivationScale = 1.5f;  // activations after RMSNorm are O(1)

bool write_file(const std::filesystem::path& path, const void* data, std::size_t bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  return static_cast<bool>(out);
}

// Rows every quantizer must survive: zeros, a constant, tiny values, one spike, an alternating
// sign ramp; then random rows over several decades of scale.
std::vector<std::vector<float>> make_rows(std::int64_t cols) {
  const std::size_t n = static_cast<std::size_t>(cols);
  std::vector<std::vector<float>> rows;
  rows.emplace_back(n, 0.0f);
  rows.emplace_back(n, -0.3f);
  rows.emplace_back(n, 3e-7f);
  std::vector<float> spike(n, 0.001f);
  spike[n / 3] = 40.0f;
  rows.push_back(spike);
  std::vector<float> ramp(n);
  for (std::size_t i = 0; i < n; ++i) ramp[i] = (i % 2 ? -1.0f : 1.0f) * static_cast<float>(i % 97) / 97.0f;
  rows.push_back(ramp);
  std::mt19937_64 rng(kSeed);
  const float scales[kRandomRows] = {1.0f, 0.02f, 1e-3f, 7.5f, 0.1f, 300.0f};
  for (float s : scales) rows.push_back(cpu::test::random_row(rng, cols, s));
  return rows;
}

// MXFP4 blocks that no quantizer writes: row 0 has one block per exponent byte 0..255 (the
// subnormal scales of 0 and 1, 127, and 254/255 at the top, where 12 x 2^127 overflows to inf)
// with its codes cycling through all 256 byte values; the other rows are seeded random bytes.
constexpr int kRawRows = 4;
constexpr std::int64_t kRawCols = 256 * cpu::kQK_MXFP4;

std::vector<std::uint8_t> raw_mxfp4_rows() {
  std::vector<std::uint8_t> bytes(kRawRows * cpu::row_bytes(GgmlType::MXFP4, kRawCols));
  auto* blocks = reinterpret_cast<cpu::BlockMXFP4*>(bytes.data());
  for (int b = 0; b < 256; ++b) {
    blocks[b].e = static_cast<std::uint8_t>(b);
    for (int j = 0; j < cpu::kQK_MXFP4 / 2; ++j) blocks[b].qs[j] = static_cast<std::uint8_t>(b * 16 + j);
  }
  std::mt19937_64 rng(kSeed);
  const std::size_t first_random = cpu::row_bytes(GgmlType::MXFP4, kRawCols);
  for (std::size_t i = first_random; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(rng());
  return bytes;
}

bool dump_raw(const std::filesystem::path& dir) {
  const std::vector<std::uint8_t> bytes = raw_mxfp4_rows();
  const auto y = cpu::test::dequantize(GgmlType::MXFP4, bytes.data(), kRawRows * kRawCols);
  std::ofstream manifest(dir / "raw_manifest.tsv", std::ios::trunc);
  manifest << "MXFP4\t" << static_cast<std::uint32_t>(GgmlType::MXFP4) << '\t' << kRawRows << '\t' << kRawCols << '\n';
  return write_file(dir / "MXFP4.raw.bin", bytes.data(), bytes.size()) &&
         write_file(dir / "MXFP4.raw.dequant.f32", y.data(), y.size() * sizeof(float)) && static_cast<bool>(manifest);
}

std::int64_t dump_cols(GgmlType t) {
  // Just past 4096, as a real hidden size is, at each family's block alignment.
  return cpu::test::test_lengths(t).back();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "dequant_dump: cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
    return 1;
  }
  std::ofstream manifest(dir / "manifest.tsv", std::ios::trunc);
  for (GgmlType t : cpu::test::kWeightTypes) {
    const std::int64_t cols = dump_cols(t);
    const auto rows = make_rows(cols);
    std::vector<float> input, dequant, act_input, dots;
    std::vector<std::uint8_t> quant, act_quant;
    std::mt19937_64 act_rng(kSeed + static_cast<std::uint32_t>(t));
    for (const auto& row : rows) {
      const auto q = cpu::test::quantize(t, row);
      const auto y = cpu::test::dequantize(t, q.data(), cols);
      input.insert(input.end(), row.begin(), row.end());
      quant.insert(quant.end(), q.begin(), q.end());
      dequant.insert(dequant.end(), y.begin(), y.end());
      const auto x = cpu::test::random_row(act_rng, cols, kActivationScale);
      const auto xq = cpu::test::quantize_act(cpu::vec_dot_type(t), x);
      act_input.insert(act_input.end(), x.begin(), x.end());
      act_quant.insert(act_quant.end(), xq.begin(), xq.end());
      dots.push_back(cpu::vec_dot(t, cols, q.data(), xq.data()));
    }
    const std::string name = cpu::test::type_name(t);
    const bool ok = write_file(dir / (name + ".input.f32"), input.data(), input.size() * sizeof(float)) &&
                    write_file(dir / (name + ".quant.bin"), quant.data(), quant.size()) &&
                    write_file(dir / (name + ".dequant.f32"), dequant.data(), dequant.size() * sizeof(float)) &&
                    write_file(dir / (name + ".act.f32"), act_input.data(), act_input.size() * sizeof(float)) &&
                    write_file(dir / (name + ".act.bin"), act_quant.data(), act_quant.size()) &&
                    write_file(dir / (name + ".dot.f32"), dots.data(), dots.size() * sizeof(float));
    if (!ok) {
      std::fprintf(stderr, "dequant_dump: cannot write %s files in %s\n", name.c_str(), dir.c_str());
      return 1;
    }
    manifest << name << '\t' << static_cast<std::uint32_t>(t) << '\t' << rows.size() << '\t' << cols << '\n';
  }
  if (!manifest) {
    std::fprintf(stderr, "dequant_dump: cannot write %s\n", (dir / "manifest.tsv").c_str());
    return 1;
  }
  if (!dump_raw(dir)) {
    std::fprintf(stderr, "dequant_dump: cannot write the raw MXFP4 files in %s\n", dir.c_str());
    return 1;
  }
  std::printf("dequant_dump: wrote %zu types to %s (seed %llu)\n", std::size(cpu::test::kWeightTypes), dir.c_str(),
              static_cast<unsigned long long>(kSeed));
  return 0;
}
