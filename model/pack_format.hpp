// The sluice pack format, versions 1 and 2 (`.sluice`): a GGUF converted once into a layout built
// for streaming (DESIGN.md §4). Version 2 adds expert extents (item 5) and nothing else; a writer
// stamps version 1 on a pack that has none, so packs without experts apart stay readable by
// builds that read version 1 only, and a version-1 reader refuses a pack it would misread.
//
// File layout:
//   1. Header, 4096 bytes at offset 0 (all integers little-endian):
//        magic "SLUICEPK" (8 bytes) | version u32 (1 or 2) | flags u32 (=0)
//        manifest_offset u64 | manifest_bytes u64 | manifest_checksum u64 (XXH3-64 of the manifest
//        bytes, seed kManifestSeed) | header_checksum u64 (XXH3-64 of the 40 bytes before it,
//        seed kHeaderSeed) | zero padding to 4096.
//   2. Extents, each starting 4096-aligned: the unit of streaming (one per transformer block,
//      plus embedding/head). An extent is a contiguous run of frames with no padding between
//      them; zero padding follows the last frame up to the next 4096 boundary.
//   3. Frames: each holds up to frame_bytes (default 1 MiB) of the extent's raw bytes, stored
//      raw or zstd-compressed (compressed only when it saves at least min_saving of the frame).
//      Each frame's stored bytes carry an XXH3-64 checksum seeded with the frame's absolute file
//      offset, so a frame copied from elsewhere in the file fails verification too.
//   4. Manifest: UTF-8 JSON at manifest_offset (after the last extent), 4096-aligned:
//        {"format": "sluice-pack", "version": 1|2, "frame_bytes": N,
//         "metadata": {...},                       // free-form: architecture, tokenizer, ...
//         "extents": [{"name", "offset", "disk_bytes", "raw_bytes", ["expert_bytes"],
//                      "frames": [{"offset", "disk_bytes", "raw_bytes", "codec": "raw"|"zstd",
//                                  "checksum"}]}],
//         "tensors": [{"name", "type", "shape": [..], "extent", "offset", "bytes",
//                      ["expert_stride"]}],
//         ["compression_policy": {...}]}           // optional, informational: what convert
//                                                  // --compress auto decided (convert_policy.hpp)
//      Tensor offsets are into the extent's raw bytes and 64-byte aligned, so kernels read ggml
//      block formats in place.
//   5. Expert extents (version 2; `sluice convert` of a mixture-of-experts model): block N's
//      stacked expert tensors blk.N.ffn_{gate,up,down}_exps.weight (the expert the slowest
//      dimension) leave extent "blk.N" for an extent "blk.N.exps" laid out expert-major, so that
//      one expert is one contiguous, aligned read:
//        | expert 0: gate slice | up slice | down slice | pad | expert 1: ... | ... |
//        ^ 4096-aligned          ^ each slice 64-byte aligned   ^ to expert_bytes
//      The extent records "expert_bytes" (bytes per expert, a multiple of 4096; raw_bytes =
//      n_expert x expert_bytes). Its frames are all raw (never compressed: an expert is read
//      O_DIRECT straight into its cache slot) and never straddle two experts: expert e's frames
//      are those whose raw bytes lie in [e x expert_bytes, (e + 1) x expert_bytes), so one
//      expert reads and verifies alone, against its own frames' checksums. Each of the three
//      tensors records "expert_stride" = expert_bytes: expert e's slice is at
//      offset + e x expert_stride in the extent's raw bytes, bytes / n_expert bytes long (so the
//      tensor is not contiguous; whole-tensor readers gather it). A tensor without the key (or
//      0) is contiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace sluice::pack {

inline constexpr char kMagic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'P', 'K'};
inline constexpr std::uint32_t kVersion = 2;     // the newest version this build reads and writes
inline constexpr std::uint32_t kMinVersion = 1;  // the oldest it reads
inline constexpr std::uint32_t kExpertsVersion = 2;  // expert extents need at least this
inline constexpr std::uint64_t kHeaderBytes = 4096;
inline constexpr std::uint64_t kExtentAlign = 4096;  // O_DIRECT alignment
inline constexpr std::uint64_t kTensorAlign = 64;    // cache line / AVX-512 load width
inline constexpr std::uint64_t kManifestSeed = 0x534c5549434d414eull;  // "SLUICMAN"
inline constexpr std::uint64_t kHeaderSeed = 0x534c554943484452ull;    // "SLUICHDR"
// Limits on what a file may claim, so a corrupt header cannot make us allocate absurdly.
inline constexpr std::uint64_t kMaxManifestBytes = 256ull << 20;
inline constexpr std::uint64_t kMaxFrameBytes = 64ull << 20;

enum class Codec : std::uint8_t { raw = 0, zstd = 1 };

struct FrameInfo {
  std::uint64_t offset = 0;      // absolute file offset of the stored bytes
  std::uint32_t disk_bytes = 0;  // stored (possibly compressed) size
  std::uint32_t raw_bytes = 0;   // size after decoding
  Codec codec = Codec::raw;
  std::uint64_t checksum = 0;  // XXH3-64(stored bytes, seed = offset)
  // Not stored in a pack: which of the extent's `ranges` holds the frame (0 when it has none).
  std::uint32_t range = 0;
};

// One contiguous read of an extent whose stored bytes are not one range of one file (a GGUF
// block split over shards, or with another extent's tensors between its own): the ranges are
// read back to back into a ring slot, each from its own file. Never stored in a pack.
struct ExtentRange {
  std::uint32_t file = 0;    // index into the source's files (ModelSource::files)
  std::uint64_t offset = 0;  // 4096-aligned, in that file
  std::uint64_t bytes = 0;   // stored bytes in the file (the last range of a file may end unaligned)
};

struct ExtentInfo {
  std::string name;
  std::uint64_t offset = 0;      // absolute, 4096-aligned; equals frames[0].offset
  std::uint64_t disk_bytes = 0;  // sum of frame disk_bytes (no padding)
  std::uint64_t raw_bytes = 0;   // sum of frame raw_bytes
  std::vector<FrameInfo> frames;
  // Empty: the stored bytes are [offset, offset + disk_bytes) of the model's one file (a pack).
  // Else where they lie, in order; disk_bytes is then the sum of the ranges' bytes, and frame f
  // lies in ranges[frames[f].range] at its offset there.
  std::vector<ExtentRange> ranges;
  // An expert extent's bytes per expert (item 5 above; a multiple of kExtentAlign); 0 otherwise.
  std::uint64_t expert_bytes = 0;
  // Offset of each frame's raw bytes within the extent's decoded bytes = prefix sum of raw_bytes.
  bool all_raw() const;
};

struct TensorInfo {
  std::string name;
  std::uint32_t type = 0;  // ggml type id (GGML_TYPE_*); Pack::open checks type x shape = bytes
  std::vector<std::uint64_t> shape;
  std::uint32_t extent = 0;  // index into extents
  std::uint64_t offset = 0;  // within the extent's raw bytes, kTensorAlign-aligned
  std::uint64_t bytes = 0;
  // 0: contiguous. Else an expert tensor of an expert extent (item 5 above): expert e's slice of
  // bytes / shape.back() bytes starts at offset + e x expert_stride.
  std::uint64_t expert_stride = 0;
};

// Header field offsets (bytes from the start of the file).
inline constexpr std::size_t kHeaderVersionOffset = 8;
inline constexpr std::size_t kHeaderFlagsOffset = 12;
inline constexpr std::size_t kHeaderManifestOffsetOffset = 16;
inline constexpr std::size_t kHeaderManifestBytesOffset = 24;
inline constexpr std::size_t kHeaderManifestChecksumOffset = 32;
inline constexpr std::size_t kHeaderChecksumOffset = 40;  // checksum covers bytes [0, 40)

// The header's fields as decoded; header_checksum is computed by encode_header.
struct Header {
  std::uint32_t version = kMinVersion;  // the writer stamps kExpertsVersion on a pack with expert extents
  std::uint32_t flags = 0;
  std::uint64_t manifest_offset = 0;
  std::uint64_t manifest_bytes = 0;
  std::uint64_t manifest_checksum = 0;
};

// Encodes the 4096-byte header (magic, fields, header checksum, zero padding). Pure function.
std::vector<std::byte> encode_header(const Header& header);

// Checksum of the manifest bytes as recorded in the header (XXH3-64, seed kManifestSeed).
std::uint64_t manifest_checksum(std::span<const std::byte> manifest);

// Checksum of a frame's stored bytes when they sit at absolute file offset `offset`.
std::uint64_t frame_checksum(std::uint64_t offset, std::span<const std::byte> stored);

// Verifies a frame's stored bytes against its checksum. `stored.size()` must equal disk_bytes.
bool frame_checksum_ok(const FrameInfo& frame, std::span<const std::byte> stored);

// Decodes a frame's stored bytes into `raw` (size must equal raw_bytes): zstd-decompress or copy.
// Does not verify the checksum. Thread-safe (uses a per-thread decompression context).
Status decode_frame(const FrameInfo& frame, std::span<const std::byte> stored, std::span<std::byte> raw);

}  // namespace sluice::pack
