// Integrity for GGUF models without rewriting them: `sluice index MODEL.gguf` writes a sidecar
// holding an XXH3-64 of every 1 MiB chunk of each shard, and a streaming reader verifies the bytes
// it reads against it. GGUF carries no checksums; the pack format (pack_format.hpp) does, but
// needs a conversion and as much disk again.
//
// The sidecar is one file per model, beside the first shard: FIRST.gguf.sluice-index (the
// model's own name with a suffix, so `ls` shows the pair together, a ModelSource finds it from
// the path it was given, and one file covers a whole split set, which is indexed and refused as a
// unit).
//
// Sidecar layout, version 1 (all integers little-endian):
//   1. magic "SLUICEGX" (8 bytes) | version u32 (=1) | chunk_bytes u32 (a power of two from 4 KiB
//      to 8 MiB; the writer uses kIndexChunkBytes) | shard_count u32 (1..65535) | reserved u32 (=0)
//   2. For each shard, in set order:
//        name_bytes u32 (1..kMaxSidecarNameBytes) | the shard's file name, without directory |
//        file_size u64 | mtime_ns i64 (st_mtim when indexed) |
//        header_bytes u64 (the data section's offset: the GGUF header is [0, header_bytes)) |
//        header_hash u64 (XXH3-64 of the header bytes, seed kIndexHeaderSeed) |
//        chunk_count u64 (= ceil(file_size / chunk_bytes)) |
//        chunk_count x u64: XXH3-64 of chunk i, the bytes [i * chunk_bytes, min(file_size,
//        (i + 1) * chunk_bytes)), seeded with the chunk's file offset i * chunk_bytes (as pack
//        frames are), so a chunk copied from elsewhere in the file fails too.
//   3. trailer u64: XXH3-64 of every byte before it, seed kIndexTrailerSeed: a damaged sidecar is
//      refused as a whole before any field is believed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "model/gguf_split.hpp"

namespace sluice::gguf {

inline constexpr char kIndexMagic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'G', 'X'};
inline constexpr std::uint32_t kIndexVersion = 1;
// 1 MiB: 8 bytes of index per MiB (800 KiB for a 100 GB model), and a chunk is a small share of
// any block's read (blocks are tens of MiB and up), so rounding reads out to whole chunks costs
// a few percent at most.
inline constexpr std::uint32_t kIndexChunkBytes = 1u << 20;
// A mixture-of-experts model's experts are read one by one (engine/expert_store.hpp), each
// slice rounded out to whole chunks so that every byte read is verified: 1 MiB chunks around a
// slice of a few hundred KiB read several times the slice. 64 KiB keeps that near the slice
// (64 bytes of index per MiB: 6.4 MB for a 100 GB model).
inline constexpr std::uint32_t kMoeIndexChunkBytes = 64u << 10;
// The chunk sizes a sidecar may have: powers of two from the direct-I/O block to the hashing
// read (verify_gguf_files checks whole chunks in each 8 MiB read).
inline constexpr std::uint32_t kMinIndexChunkBytes = 4096;
inline constexpr std::uint32_t kMaxIndexChunkBytes = 8 * kIndexChunkBytes;
inline constexpr std::uint64_t kIndexHeaderSeed = 0x534c554947484452ull;   // "SLUIGHDR"
inline constexpr std::uint64_t kIndexTrailerSeed = 0x534c55494754524cull;  // "SLUIGTRL"
inline constexpr std::string_view kIndexSuffix = ".sluice-index";
inline constexpr std::uint32_t kMaxSidecarNameBytes = 4096;  // PATH_MAX: any file name fits

// Where the sidecar of the model whose first shard is `first_shard_path` lives.
std::string sidecar_path_for(const std::string& first_shard_path);

// What a sidecar says about one shard.
struct IndexedShard {
  std::string name;  // file name without directory
  std::uint64_t file_size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t header_bytes = 0;
  std::uint64_t header_hash = 0;
  std::vector<std::uint64_t> chunk_hashes;
  bool operator==(const IndexedShard&) const = default;
};

struct SidecarContents {
  std::uint32_t chunk_bytes = kIndexChunkBytes;
  std::vector<IndexedShard> shards;
  bool operator==(const SidecarContents&) const = default;
};

// The sidecar's bytes (layout above). Pure.
std::vector<std::byte> encode_sidecar(const SidecarContents& contents);
// Parses and checks a sidecar's bytes; `path` names it in errors. Throws GgufError
// (ErrorKind::corrupt) naming the path, the field and its byte offset. Every count and length is
// bounded by the bytes present before anything is allocated. Pure (the fuzz entry).
SidecarContents decode_sidecar(std::span<const std::byte> bytes, const std::string& path);

struct IndexStats {
  std::uint64_t shards = 0;
  std::uint64_t bytes_hashed = 0;
  std::uint64_t chunks = 0;
  std::uint64_t sidecar_bytes = 0;
};

// Hashes every shard of `set` (reads of kIndexReadBytes through io::Reader, O_DIRECT where the
// filesystem takes it) and writes the sidecar atomically at `sidecar_path` (temporary name, then
// rename: output_file.hpp). `progress(done_bytes, total_bytes)` is called after each read.
// Throws GgufError naming the shard and offset on a read error, or a shard that changed size or
// mtime while it was hashed; std::runtime_error naming the sidecar when it cannot be written or
// would replace a shard (the same file, a link to it); std::invalid_argument when `chunk_bytes`
// is not a power of two from kMinIndexChunkBytes to kMaxIndexChunkBytes (before anything is read).
IndexStats write_gguf_index(const ShardSet& set, const std::string& sidecar_path,
                            const std::function<void(std::uint64_t, std::uint64_t)>& progress = {},
                            std::uint32_t chunk_bytes = kIndexChunkBytes);

class GgufIndex;

// Reads every byte of every shard of `set` (as write_gguf_index does) and verifies it against
// `index`. Returns one message per mismatching chunk (verify's), at most `max_errors`; empty
// when the model is intact. Throws GgufError naming the shard and offset on a read error.
std::vector<std::string> verify_gguf_files(const GgufIndex& index, const ShardSet& set, std::size_t max_errors = 16,
                                           const std::function<void(std::uint64_t, std::uint64_t)>& progress = {});

// A sidecar checked against the files it describes. Immutable after load; verify is thread-safe.
class GgufIndex {
 public:
  // Reads and decodes `sidecar_path` and refuses it (GgufError, ErrorKind::invalid, naming the
  // sidecar, the shard and which fact differs, and saying to run `sluice index` again) when it
  // does not describe `set` now: another shard count or file name, a size, an mtime, or a header
  // hash (the shard's header is read again) that differs.
  static GgufIndex load(const std::string& sidecar_path, const ShardSet& set);
  // The model's own sidecar (sidecar_path_for its first shard) loaded as load() does, or nullopt
  // when there is none (reads are then unverified: say so). A stale one throws, as load().
  static std::optional<GgufIndex> load_if_present(const ShardSet& set);

  const std::string& path() const { return path_; }
  std::uint32_t chunk_bytes() const { return contents_.chunk_bytes; }
  const SidecarContents& contents() const { return contents_; }

  // Checks `bytes`, read from shard `shard` at file offset `offset`, against the index. Only
  // chunks that `bytes` covers whole are checked (the file's last, shorter chunk is whole when
  // `bytes` reaches the end of the file); a chunk the range covers only in part is skipped, so
  // a reader that wants every byte verified reads ranges rounded out to chunk_bytes()
  // (block_read_ranges(set, n_layer, index.chunk_bytes())). Bytes past the end of the file are
  // ignored. Returns the bytes verified, or an Error (ErrorKind::checksum) naming the shard's
  // path, the chunk's file offset and length, and `tensor` when given, else the tensors of the
  // set that overlap the bad chunk.
  Result<std::uint64_t> verify(std::uint32_t shard, std::uint64_t offset, std::span<const std::byte> bytes,
                               std::string_view tensor = {}) const;

 private:
  struct TensorSpan {
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
    std::string name;
  };
  std::string tensors_in(std::uint32_t shard, std::uint64_t begin, std::uint64_t end) const;

  std::string path_;
  SidecarContents contents_;
  std::vector<std::string> shard_paths_;
  std::vector<std::vector<TensorSpan>> tensors_by_shard_;  // sorted by offset
};

}  // namespace sluice::gguf
