// Pack format v1 primitives shared by the writer, the reader and the streaming loader: header
// encoding, checksums and frame decoding (layout in pack_format.hpp).
#include "model/pack_format.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <xxhash.h>
#include <zstd.h>

#include "model/fast_hash.hpp"

namespace sluice::pack {
namespace {

void store_le(std::vector<std::byte>& out, std::size_t at, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) {
    out[at + i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
  }
}

struct DctxDeleter {
  void operator()(ZSTD_DCtx* dctx) const { ZSTD_freeDCtx(dctx); }
};

// One decompression context per thread: creating one costs ~100 KiB of allocations, and frames
// are decoded on many threads at once, so sharing one would need a lock.
ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx{ZSTD_createDCtx()};
  return dctx.get();
}

}  // namespace

bool ExtentInfo::all_raw() const {
  return std::all_of(frames.begin(), frames.end(),
                     [](const FrameInfo& frame) { return frame.codec == Codec::raw; });
}

std::vector<std::byte> encode_header(const Header& header) {
  std::vector<std::byte> out(kHeaderBytes, std::byte{0});
  std::memcpy(out.data(), kMagic, sizeof(kMagic));
  store_le(out, kHeaderVersionOffset, header.version, sizeof(std::uint32_t));
  store_le(out, kHeaderFlagsOffset, header.flags, sizeof(std::uint32_t));
  store_le(out, kHeaderManifestOffsetOffset, header.manifest_offset, sizeof(std::uint64_t));
  store_le(out, kHeaderManifestBytesOffset, header.manifest_bytes, sizeof(std::uint64_t));
  store_le(out, kHeaderManifestChecksumOffset, header.manifest_checksum, sizeof(std::uint64_t));
  const std::uint64_t checksum = XXH3_64bits_withSeed(out.data(), kHeaderChecksumOffset, kHeaderSeed);
  store_le(out, kHeaderChecksumOffset, checksum, sizeof(std::uint64_t));
  return out;
}

std::uint64_t manifest_checksum(std::span<const std::byte> manifest) {
  return XXH3_64bits_withSeed(manifest.data(), manifest.size(), kManifestSeed);
}

std::uint64_t frame_checksum(std::uint64_t offset, std::span<const std::byte> stored) {
  return xxh3_64_seeded(stored.data(), stored.size(), offset);
}

bool frame_checksum_ok(const FrameInfo& frame, std::span<const std::byte> stored) {
  if (stored.size() != frame.disk_bytes) return false;
  return frame_checksum(frame.offset, stored) == frame.checksum;
}

Status decode_frame(const FrameInfo& frame, std::span<const std::byte> stored, std::span<std::byte> raw) {
  if (stored.size() != frame.disk_bytes || raw.size() != frame.raw_bytes) {
    return Error{ErrorKind::invalid, 0,
                 fmt::format("decode_frame at offset {}: buffer sizes {} stored / {} raw do not match "
                             "the frame's {} / {}",
                             frame.offset, stored.size(), raw.size(), frame.disk_bytes, frame.raw_bytes)};
  }
  switch (frame.codec) {
    case Codec::raw:
      if (frame.disk_bytes != frame.raw_bytes) {
        return Error{ErrorKind::decompress, 0,
                     fmt::format("raw frame at offset {}: disk bytes {} != raw bytes {}", frame.offset,
                                 frame.disk_bytes, frame.raw_bytes)};
      }
      if (!raw.empty()) std::memcpy(raw.data(), stored.data(), raw.size());
      return Status::success();
    case Codec::zstd: {
      ZSTD_DCtx* dctx = thread_dctx();
      if (dctx == nullptr) {
        return Error{ErrorKind::decompress, 0,
                     fmt::format("zstd frame at offset {}: cannot create a decompression context",
                                 frame.offset)};
      }
      const std::size_t got = ZSTD_decompressDCtx(dctx, raw.data(), raw.size(), stored.data(), stored.size());
      if (ZSTD_isError(got)) {
        return Error{ErrorKind::decompress, 0,
                     fmt::format("zstd frame at offset {} ({} bytes): {}", frame.offset, frame.disk_bytes,
                                 ZSTD_getErrorName(got))};
      }
      if (got != raw.size()) {
        return Error{ErrorKind::decompress, 0,
                     fmt::format("zstd frame at offset {}: decoded to {} bytes, expected {}", frame.offset,
                                 got, raw.size())};
      }
      return Status::success();
    }
  }
  return Error{ErrorKind::invalid, 0,
               fmt::format("frame at offset {}: unknown codec {}", frame.offset,
                           static_cast<int>(frame.codec))};
}

}  // namespace sluice::pack
