// `sluice convert --compress auto`: chooses, per GGML tensor type, whether its frames are worth
// compressing, from a short measurement of the model being converted (compress_policy.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/pack_writer.hpp"

namespace sluice {

// What the policy weighs; a 0 is measured at convert time.
struct PolicyInputs {
  double disk_bytes_per_s = 0;             // 0: O_DIRECT read of the input's first kDiskProbeBytes
  double decode_bytes_per_s_per_core = 0;  // 0: zstd decode timed per type on its sample frames
  unsigned decode_cores = 0;               // 0: default_decode_cores()
};

// One row of the decision table: a GGML type's tensors together.
struct TypePolicy {
  std::string type;                // "Q4_K"
  std::uint32_t type_id = 0;
  std::uint64_t raw_bytes = 0;     // all the type's tensor bytes
  std::uint64_t sample_bytes = 0;  // bytes compressed and decoded to measure it
  double zstd_ratio = 1;           // raw / zstd on the sample
  double decode_bytes_per_s_per_core = 0;
  pack::CompressionDecision decision;  // over raw_bytes at the sample's ratio
};

struct CompressionPlan {
  pack::CompressionCost cost;  // the disk bandwidth and cores used (decode: the sample-weighted mean)
  bool disk_measured = false;
  std::vector<TypePolicy> types;  // largest first
};

// Cores left to decode while compute runs: half the machine's (at least one). At run time the
// compute stage holds the other cores for the whole pass, so decoding gets about the rest.
unsigned default_decode_cores();

// Samples every tensor type of the GGUF (or gguf-split set) at `gguf_path` (up to
// kSampleFramesPerType frames of options.frame_bytes each, spread over the type's tensors),
// measures what `inputs` leaves at 0, and decides per type. Writes the choice into `options`
// (raw_types, cost, policy_record); the writer then also weighs each frame of a zstd type alone.
// Throws std::runtime_error naming the file on a read error.
CompressionPlan plan_compression(const std::string& gguf_path, pack::WriterOptions& options, const PolicyInputs& inputs);

// The decision table, one line per type, for the convert command's output.
std::string format_compression_plan(const CompressionPlan& plan);

}  // namespace sluice
