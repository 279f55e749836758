// decide_compression and the measurements that feed it (compress_policy.hpp).
#include "model/compress_policy.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <zstd.h>

#include "io/sequential.hpp"

namespace sluice::pack {
namespace {

bool positive_finite(double x) { return std::isfinite(x) && x > 0; }

// Decode timing: repeat until this much wall time has passed (long enough that clock resolution
// and one cold cache miss do not matter), but at most kMaxDecodeRuns runs.
constexpr double kMinDecodeTimingS = 0.02;
constexpr int kMaxDecodeRuns = 50;

struct DctxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

}  // namespace

CompressionDecision decide_compression(std::uint64_t raw_bytes, std::uint64_t zstd_bytes, const CompressionCost& cost) {
  CompressionDecision d;
  const double decode_rate = cost.decode_bytes_per_s_per_core * double(cost.decode_cores);
  if (raw_bytes == 0 || zstd_bytes >= raw_bytes || !positive_finite(cost.disk_bytes_per_s) || !positive_finite(decode_rate)) {
    return d;
  }
  d.saved_s = double(raw_bytes - zstd_bytes) / cost.disk_bytes_per_s;
  d.decode_s = double(raw_bytes) / decode_rate;
  const bool saves_enough = double(raw_bytes - zstd_bytes) >= cost.min_saving * double(raw_bytes);
  d.zstd = saves_enough && d.saved_s > d.decode_s;
  return d;
}

double break_even_disk_bytes_per_s(double saving, const CompressionCost& cost) {
  return saving * cost.decode_bytes_per_s_per_core * double(cost.decode_cores);
}

ZstdSample measure_zstd(std::span<const std::byte> bytes, std::uint32_t frame_bytes, int level) {
  ZstdSample s;
  if (bytes.empty() || frame_bytes == 0) return s;
  const std::size_t bound = ZSTD_compressBound(frame_bytes);
  const std::size_t frames = (bytes.size() + frame_bytes - 1) / frame_bytes;
  std::vector<std::byte> encoded(frames * bound);
  std::vector<std::size_t> sizes(frames);
  for (std::size_t i = 0; i < frames; ++i) {
    const std::size_t n = std::min<std::size_t>(frame_bytes, bytes.size() - i * frame_bytes);
    const std::size_t got = ZSTD_compress(encoded.data() + i * bound, bound, bytes.data() + i * frame_bytes, n, level);
    if (ZSTD_isError(got)) throw std::runtime_error(fmt::format("zstd sample: compression failed: {}", ZSTD_getErrorName(got)));
    sizes[i] = got;
    s.zstd_bytes += got;
  }
  s.raw_bytes = bytes.size();
  std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx{ZSTD_createDCtx()};
  if (!dctx) throw std::runtime_error("zstd sample: cannot create a decompression context");
  std::vector<std::byte> out(frame_bytes);
  double best = 0, total = 0;
  for (int run = 0; run < kMaxDecodeRuns && total < kMinDecodeTimingS; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < frames; ++i) {
      const std::size_t got = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), encoded.data() + i * bound, sizes[i]);
      if (ZSTD_isError(got)) throw std::runtime_error(fmt::format("zstd sample: decode failed: {}", ZSTD_getErrorName(got)));
    }
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += t;
    best = run == 0 ? t : std::min(best, t);
  }
  s.decode_s = best;
  return s;
}

double measure_disk_bytes_per_s(const std::string& path, std::uint64_t limit_bytes) {
  io::BackendOptions io;
  // 1 MiB requests: the size the prefetcher reads frames in.
  auto read = io::read_file_sequential(path, io, 1u << 20, limit_bytes);
  return read ? read.value().gbps() * 1e9 : 0.0;
}

}  // namespace sluice::pack
