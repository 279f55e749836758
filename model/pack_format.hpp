// The sluice pack format, version 1 (`.sluice`): a GGUF converted once into a layout built for
// streaming (DESIGN.md §4).
//
// File layout:
//   1. Header, 4096 bytes at offset 0 (all integers little-endian):
//        magic "SLUICEPK" (8 bytes) | version u32 (=1) | flags u32 (=0)
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
//        {"format": "sluice-pack", "version": 1, "frame_bytes": N,
//         "metadata": {...},                       // free-form: architecture, tokenizer, ...
//         "extents": [{"name", "offset", "disk_bytes", "raw_bytes",
//                      "frames": [{"offset", "disk_bytes", "raw_bytes", "codec": "raw"|"zstd",
//                                  "checksum"}]}],
//         "tensors": [{"name", "type", "shape": [..], "extent", "offset", "bytes"}]}
//      Tensor offsets are into the extent's raw bytes and 64-byte aligned, so kernels read ggml
//      block formats in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace sluice::pack {

inline constexpr char kMagic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'P', 'K'};
inline constexpr std::uint32_t kVersion = 1;
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
  std::uint32_t version = kVersion;
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
