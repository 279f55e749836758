// The compression policy of `--compress auto`: zstd only where the read time it saves exceeds the
// time it costs to decode. A pure decision function (tested with given numbers) and the convert-time
// measurements that feed it (zstd decode speed on sample frames, disk bandwidth by an O_DIRECT read).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sluice::pack {

// What streaming a frame costs, as the run that reads the pack will see it.
struct CompressionCost {
  double disk_bytes_per_s = 0;              // sequential O_DIRECT read bandwidth of the pack's disk
  double decode_bytes_per_s_per_core = 0;   // zstd decode throughput (raw bytes out) on one core
  unsigned decode_cores = 1;                // cores free to decode while compute runs
  double min_saving = 0.05;                 // floor: zstd must also shrink the bytes by this fraction
};

struct CompressionDecision {
  double saved_s = 0;   // read time saved: (raw - zstd) / disk bandwidth
  double decode_s = 0;  // decode time: raw / (decode throughput per core x cores)
  bool zstd = false;
};

// zstd iff it shrinks the bytes by at least cost.min_saving and saved_s > decode_s (a tie stays
// raw: decoding is work the reader could skip). Raw when raw_bytes is 0, zstd_bytes >= raw_bytes,
// or a bandwidth, throughput or core count is not a positive finite number (nothing to weigh).
// Pure; thread-safe.
CompressionDecision decide_compression(std::uint64_t raw_bytes, std::uint64_t zstd_bytes, const CompressionCost& cost);

// Bandwidth the decision breaks even at: zstd pays for a fraction `saving` saved iff
// disk_bytes_per_s < saving x decode_bytes_per_s_per_core x decode_cores.
double break_even_disk_bytes_per_s(double saving, const CompressionCost& cost);

struct ZstdSample {
  std::uint64_t raw_bytes = 0;
  std::uint64_t zstd_bytes = 0;    // the frames compressed one by one at `level`
  double decode_s = 0;             // one decode of every frame (best of a few runs)
  double decode_bytes_per_s() const { return decode_s > 0 ? double(raw_bytes) / decode_s : 0.0; }
};

// Compresses `bytes` in frames of `frame_bytes` at `level` and times decoding them on this thread
// (repeated until the timing is long enough to trust, bounded). Throws std::runtime_error if zstd
// fails. Not for tests of values: the time depends on the machine.
ZstdSample measure_zstd(std::span<const std::byte> bytes, std::uint32_t frame_bytes, int level);

// Sequential O_DIRECT read bandwidth of `path` (its first `limit_bytes`), in bytes/s; 0 when the
// read fails or the file is empty. Measures the device only if the caller dropped the cache or the
// read is direct (it is, where the file system allows O_DIRECT).
double measure_disk_bytes_per_s(const std::string& path, std::uint64_t limit_bytes);

}  // namespace sluice::pack
