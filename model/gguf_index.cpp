// The GGUF index sidecar: encoding and checked decoding (layout in gguf_index.hpp), hashing a
// shard set into one, loading one against the files, and verifying read bytes with it.
#include "model/gguf_index.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xxhash.h>

#include "common/assert.hpp"
#include "common/units.hpp"
#include "io/file.hpp"
#include "io/reader.hpp"
#include "model/fast_hash.hpp"
#include "model/output_file.hpp"

namespace sluice::gguf {
namespace {

// Bytes per read while hashing: eight chunks, large enough that O_DIRECT reads run near the
// disk's sequential speed with one read in flight, small enough to hold beside anything.
constexpr std::uint32_t kIndexReadBytes = 8 * kIndexChunkBytes;
constexpr std::uint32_t kMinChunkBytes = kMinIndexChunkBytes;
// verify_gguf_files reads kIndexReadBytes at a time and checks whole chunks in each read.
constexpr std::uint32_t kMaxChunkBytes = kMaxIndexChunkBytes;
static_assert(kMaxChunkBytes == kIndexReadBytes);
// A sidecar holds 8 bytes per chunk: 64 MiB covers an 8 TB model in 1 MiB chunks, 512 GB in
// 64 KiB ones. Loading refuses a larger one, so writing does too (before hashing anything).
constexpr std::uint64_t kMaxSidecarBytes = 64ull << 20;
constexpr std::size_t kFixedHeaderBytes = 8 + 4 + 4 + 4 + 4;
constexpr std::size_t kShardFixedBytes = 8 * 5;  // size, mtime, header bytes, header hash, chunk count
// Tensors named in one mismatch message; a 1 MiB chunk of small tensors could hold hundreds.
constexpr std::size_t kMaxNamedTensors = 3;

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::uint64_t chunk_count_for(std::uint64_t file_size, std::uint64_t chunk_bytes) {
  return file_size / chunk_bytes + (file_size % chunk_bytes != 0 ? 1 : 0);
}

struct FileStamp {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

FileStamp stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    throw GgufError(fmt::format("gguf {}: cannot stat: {}", path, std::strerror(err)), ErrorKind::io);
  }
  return {static_cast<std::uint64_t>(st.st_size),
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// "2026-12-05 20:42:07.138234103 UTC": two mtimes a touch apart differ visibly.
std::string format_mtime(std::int64_t ns) {
  const std::time_t seconds = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  char text[32] = "?";
  if (::gmtime_r(&seconds, &tm) != nullptr) std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:09d} UTC", text, ns % 1000000000);
}

// XXH3 of a shard's header bytes [0, header_bytes), read with pread (small: the metadata).
std::uint64_t hash_header(const std::string& path, std::uint64_t header_bytes) {
  std::unique_ptr<io::File> file;
  try {
    file = io::File::open(path);
  } catch (const std::exception& e) {
    throw GgufError(fmt::format("gguf {}: cannot open: {}", path, e.what()), ErrorKind::io);
  }
  std::vector<std::byte> header(header_bytes);
  if (Status st = file->read_at(header, 0); !st) {
    throw GgufError(fmt::format("gguf {}: reading the header: {}", path, st.error().message), ErrorKind::io);
  }
  return XXH3_64bits_withSeed(header.data(), header.size(), kIndexHeaderSeed);
}

template <typename T>
void put(std::vector<std::byte>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

// Bounds-checked little-endian cursor over a sidecar's bytes.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& path) : bytes_(bytes), path_(path) {}

  [[noreturn]] void fail(std::uint64_t at, const std::string& what) const {
    throw GgufError(fmt::format("gguf index {}: {} (at byte offset {})", path_, what, at));
  }
  std::uint64_t pos() const { return pos_; }
  std::uint64_t remaining() const { return bytes_.size() - pos_; }
  const std::byte* take(std::uint64_t n, std::string_view what) {
    if (n > remaining()) fail(pos_, fmt::format("truncated: {} needs {} bytes, {} left", what, n, remaining()));
    const std::byte* at = bytes_.data() + pos_;
    pos_ += n;
    return at;
  }
  template <typename T>
  T read(std::string_view what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& path_;
  std::uint64_t pos_ = 0;
};

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

// Reads the first `size` bytes of `path` in kIndexReadBytes pieces (io::Reader, O_DIRECT where
// the filesystem takes it, so hashing a model bigger than RAM leaves the page cache alone) and
// hands each to `piece(file_offset, bytes)`; every piece but the last is kIndexReadBytes long.
// Throws GgufError naming the file and offset on a read error or a file that ends early.
void read_whole_file(const std::string& path, std::uint64_t size,
                     const std::function<void(std::uint64_t, std::span<const std::byte>)>& piece) {
  io::ReaderOptions options;
  options.backend.kind = io::BackendKind::pread;
  options.backend.queue_depth = 1;
  std::unique_ptr<io::Reader> reader;
  try {
    reader = io::Reader::open(path, options);
  } catch (const std::exception& e) {
    throw GgufError(fmt::format("gguf {}: cannot open: {}", path, e.what()), ErrorKind::io);
  }
  std::unique_ptr<std::byte, FreeDeleter> buffer{static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, kIndexReadBytes))};
  if (!buffer) throw std::bad_alloc();
  for (std::uint64_t at = 0; at < size; at += kIndexReadBytes) {
    std::uint64_t got = 0;
    if (Status st = reader->read_sync(buffer.get(), at, kIndexReadBytes, &got); !st) {
      throw GgufError(fmt::format("gguf {}: {}", path, st.error().message), ErrorKind::io);
    }
    const std::uint64_t want = std::min<std::uint64_t>(kIndexReadBytes, size - at);
    if (got < want) {
      throw GgufError(fmt::format("gguf {}: the file ends at byte {}, {} bytes were expected", path, at + got, size),
                      ErrorKind::io);
    }
    piece(at, {buffer.get(), static_cast<std::size_t>(want)});
  }
}

}  // namespace

std::string sidecar_path_for(const std::string& first_shard_path) {
  std::string out = first_shard_path;
  out.append(kIndexSuffix);
  return out;
}

std::vector<std::byte> encode_sidecar(const SidecarContents& c) {
  std::vector<std::byte> out;
  for (char ch : kIndexMagic) out.push_back(static_cast<std::byte>(ch));
  put<std::uint32_t>(out, kIndexVersion);
  put<std::uint32_t>(out, c.chunk_bytes);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(c.shards.size()));
  put<std::uint32_t>(out, 0);
  for (const IndexedShard& s : c.shards) {
    put<std::uint32_t>(out, static_cast<std::uint32_t>(s.name.size()));
    for (char ch : s.name) out.push_back(static_cast<std::byte>(ch));
    put<std::uint64_t>(out, s.file_size);
    put<std::int64_t>(out, s.mtime_ns);
    put<std::uint64_t>(out, s.header_bytes);
    put<std::uint64_t>(out, s.header_hash);
    put<std::uint64_t>(out, s.chunk_hashes.size());
    for (std::uint64_t h : s.chunk_hashes) put<std::uint64_t>(out, h);
  }
  put<std::uint64_t>(out, XXH3_64bits_withSeed(out.data(), out.size(), kIndexTrailerSeed));
  return out;
}

SidecarContents decode_sidecar(std::span<const std::byte> bytes, const std::string& path) {
  Cursor c(bytes, path);
  if (bytes.size() < kFixedHeaderBytes + 8) {
    c.fail(0, fmt::format("{} bytes: too short for a sidecar ({} at least)", bytes.size(), kFixedHeaderBytes + 8));
  }
  if (std::memcmp(bytes.data(), kIndexMagic, sizeof(kIndexMagic)) != 0) {
    c.fail(0, "bad magic: not a sluice GGUF index");
  }
  std::uint64_t trailer = 0;
  std::memcpy(&trailer, bytes.data() + bytes.size() - 8, 8);
  if (XXH3_64bits_withSeed(bytes.data(), bytes.size() - 8, kIndexTrailerSeed) != trailer) {
    c.fail(bytes.size() - 8, "checksum of the sidecar does not match: the file is damaged or truncated");
  }
  const std::span<const std::byte> body = bytes.first(bytes.size() - 8);
  Cursor b(body, path);
  b.take(sizeof(kIndexMagic), "magic");
  const auto version = b.read<std::uint32_t>("version");
  if (version != kIndexVersion) b.fail(8, fmt::format("unsupported version {} (version {} is read)", version, kIndexVersion));
  SidecarContents out;
  out.chunk_bytes = b.read<std::uint32_t>("chunk size");
  if (out.chunk_bytes < kMinChunkBytes || out.chunk_bytes > kMaxChunkBytes || (out.chunk_bytes & (out.chunk_bytes - 1)) != 0) {
    b.fail(12, fmt::format("chunk size {} is not a power of two from {} to {}", out.chunk_bytes, kMinChunkBytes, kMaxChunkBytes));
  }
  const auto shard_count = b.read<std::uint32_t>("shard count");
  if (shard_count == 0 || shard_count > kMaxShards) {
    b.fail(16, fmt::format("shard count {} is outside 1..{}", shard_count, kMaxShards));
  }
  if (const auto reserved = b.read<std::uint32_t>("reserved"); reserved != 0) b.fail(20, fmt::format("reserved field is {}, not 0", reserved));
  for (std::uint32_t i = 0; i < shard_count; ++i) {
    IndexedShard s;
    const std::uint64_t name_at = b.pos();
    const auto name_bytes = b.read<std::uint32_t>("shard name length");
    if (name_bytes == 0 || name_bytes > kMaxSidecarNameBytes) {
      b.fail(name_at, fmt::format("shard {}: name length {} is outside 1..{}", i, name_bytes, kMaxSidecarNameBytes));
    }
    const auto* chars = reinterpret_cast<const char*>(b.take(name_bytes, "shard name"));
    s.name.assign(chars, name_bytes);
    if (s.name.find('/') != std::string::npos || s.name.find('\0') != std::string::npos) {
      b.fail(name_at, fmt::format("shard {}: name holds '/' or NUL", i));
    }
    const std::uint64_t fields_at = b.pos();
    s.file_size = b.read<std::uint64_t>("file size");
    s.mtime_ns = b.read<std::int64_t>("mtime");
    s.header_bytes = b.read<std::uint64_t>("header size");
    s.header_hash = b.read<std::uint64_t>("header hash");
    const std::uint64_t count_at = b.pos();
    const auto chunks = b.read<std::uint64_t>("chunk count");
    if (s.header_bytes > s.file_size) {
      b.fail(fields_at, fmt::format("shard {} ({}): header size {} is more than the file size {}", i, s.name,
                                    s.header_bytes, s.file_size));
    }
    if (chunks != chunk_count_for(s.file_size, out.chunk_bytes)) {
      b.fail(count_at, fmt::format("shard {} ({}): {} chunks, but a file of {} bytes has {} of {} bytes", i, s.name,
                                   chunks, s.file_size, chunk_count_for(s.file_size, out.chunk_bytes), out.chunk_bytes));
    }
    if (chunks > b.remaining() / 8) {
      b.fail(count_at, fmt::format("shard {} ({}): {} chunk hashes do not fit in the {} bytes left", i, s.name, chunks,
                                   b.remaining()));
    }
    s.chunk_hashes.resize(chunks);
    std::memcpy(s.chunk_hashes.data(), b.take(chunks * 8, "chunk hashes"), chunks * 8);
    out.shards.push_back(std::move(s));
  }
  if (b.remaining() != 0) b.fail(b.pos(), fmt::format("{} bytes after the last shard", b.remaining()));
  return out;
}

IndexStats write_gguf_index(const ShardSet& set, const std::string& sidecar_path,
                            const std::function<void(std::uint64_t, std::uint64_t)>& progress, std::uint32_t chunk_bytes) {
  if (chunk_bytes < kMinChunkBytes || chunk_bytes > kMaxChunkBytes || (chunk_bytes & (chunk_bytes - 1)) != 0) {
    throw std::invalid_argument(fmt::format("index chunk size {} is not a power of two from {} to {}", chunk_bytes,
                                            format_bytes(kMinChunkBytes), format_bytes(kMaxChunkBytes)));
  }
  std::uint64_t hash_bytes = 0;
  for (const Shard& s : set.shards()) hash_bytes += 8 * chunk_count_for(s.file_size, chunk_bytes);
  if (hash_bytes > kMaxSidecarBytes) {
    throw std::invalid_argument(fmt::format("{}: {} chunks of {} need a sidecar of over {}, more than the {} a sidecar may "
                                            "hold; use a larger chunk size",
                                            set.shards().front().path, hash_bytes / 8, format_bytes(chunk_bytes),
                                            format_bytes(hash_bytes), format_bytes(kMaxSidecarBytes)));
  }
  // Before anything is hashed: a sidecar written over a shard (`-o MODEL.gguf`) would destroy it.
  for (const Shard& s : set.shards()) refuse_output_that_is_input("index", s.path, sidecar_path);
  std::uint64_t total = 0;
  for (const Shard& s : set.shards()) total += s.file_size;
  SidecarContents contents;
  contents.chunk_bytes = chunk_bytes;
  IndexStats stats;
  std::uint64_t done = 0;
  for (const Shard& shard : set.shards()) {
    const FileStamp before = stamp_of(shard.path);
    IndexedShard out;
    out.name = base_name(shard.path);
    out.file_size = before.size;
    out.mtime_ns = before.mtime_ns;
    out.header_bytes = shard.data_offset;
    if (before.size != shard.file_size) {
      throw GgufError(fmt::format("gguf {}: the file is {} bytes now, {} when its header was read: it is changing",
                                  shard.path, before.size, shard.file_size));
    }
    XXH3_state_t* header_state = XXH3_createState();
    if (header_state == nullptr) throw std::bad_alloc();
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> header_owner(header_state, &XXH3_freeState);
    XXH3_64bits_reset_withSeed(header_state, kIndexHeaderSeed);
    out.chunk_hashes.reserve(chunk_count_for(before.size, chunk_bytes));
    // Pieces are whole multiples of any chunk size (kIndexReadBytes is the largest).
    read_whole_file(shard.path, before.size, [&](std::uint64_t at, std::span<const std::byte> piece) {
      for (std::uint64_t c = 0; c < piece.size(); c += chunk_bytes) {
        const std::uint64_t n = std::min<std::uint64_t>(chunk_bytes, piece.size() - c);
        out.chunk_hashes.push_back(pack::xxh3_64_seeded(piece.data() + c, n, at + c));
      }
      if (at < out.header_bytes) {
        XXH3_64bits_update(header_state, piece.data(), std::min<std::uint64_t>(piece.size(), out.header_bytes - at));
      }
      done += piece.size();
      if (progress) progress(done, total);
    });
    out.header_hash = XXH3_64bits_digest(header_state);
    const FileStamp after = stamp_of(shard.path);
    if (after.size != before.size || after.mtime_ns != before.mtime_ns) {
      throw GgufError(fmt::format("gguf {}: the file changed while it was being indexed (size {} -> {}, mtime changed: "
                                  "{}); index it again when nothing writes to it",
                                  shard.path, before.size, after.size, after.mtime_ns != before.mtime_ns ? "yes" : "no"));
    }
    stats.bytes_hashed += before.size;
    stats.chunks += out.chunk_hashes.size();
    contents.shards.push_back(std::move(out));
  }
  const std::vector<std::byte> bytes = encode_sidecar(contents);
  OutputFile file(sidecar_path, "gguf index");
  file.write(bytes);
  file.commit();
  stats.shards = contents.shards.size();
  stats.sidecar_bytes = bytes.size();
  return stats;
}

GgufIndex GgufIndex::load(const std::string& sidecar_path, const ShardSet& set) {
  std::vector<std::byte> bytes;
  {
    std::unique_ptr<io::File> file;
    try {
      file = io::File::open(sidecar_path);
    } catch (const std::exception& e) {
      throw GgufError(fmt::format("gguf index {}: cannot open: {}", sidecar_path, e.what()), ErrorKind::io);
    }
    if (file->size() > kMaxSidecarBytes) {
      throw GgufError(fmt::format("gguf index {}: {} bytes, more than the {} a sidecar can need", sidecar_path,
                                  file->size(), kMaxSidecarBytes));
    }
    bytes.resize(file->size());
    if (Status st = file->read_at(bytes, 0); !st) {
      throw GgufError(fmt::format("gguf index {}: {}", sidecar_path, st.error().message), ErrorKind::io);
    }
  }
  GgufIndex index;
  index.path_ = sidecar_path;
  index.contents_ = decode_sidecar(bytes, sidecar_path);
  const auto refuse = [&](const std::string& shard, const std::string& what) {
    throw GgufError(fmt::format("gguf index {}: does not match {}: {}; run `sluice index` on the model again",
                                sidecar_path, shard, what),
                    ErrorKind::invalid);
  };
  const auto& shards = set.shards();
  if (index.contents_.shards.size() != shards.size()) {
    refuse(shards[0].path, fmt::format("it indexes {} shard(s), the model has {}", index.contents_.shards.size(),
                                       shards.size()));
  }
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const IndexedShard& s = index.contents_.shards[i];
    const std::string& p = shards[i].path;
    if (s.name != base_name(p)) refuse(p, fmt::format("it was made for the file '{}'", s.name));
    const FileStamp now = stamp_of(p);
    if (now.size != s.file_size) refuse(p, fmt::format("the file's size is {} bytes, the index recorded {}", now.size, s.file_size));
    if (now.mtime_ns != s.mtime_ns) {
      refuse(p, fmt::format("the file's modification time is {}, the index recorded {} (the file was written or "
                            "touched since it was indexed)",
                            format_mtime(now.mtime_ns), format_mtime(s.mtime_ns)));
    }
    if (s.header_bytes != shards[i].data_offset) {
      refuse(p, fmt::format("its header is {} bytes, the index recorded {}", shards[i].data_offset, s.header_bytes));
    }
    if (hash_header(p, s.header_bytes) != s.header_hash) refuse(p, "the XXH3 of its header differs from the index's");
    index.shard_paths_.push_back(p);
  }
  index.tensors_by_shard_.resize(shards.size());
  for (const ShardTensor& t : set.tensors()) index.tensors_by_shard_[t.shard].push_back({t.offset, t.bytes, t.name});
  for (auto& v : index.tensors_by_shard_) {
    std::sort(v.begin(), v.end(), [](const TensorSpan& a, const TensorSpan& b) { return a.offset < b.offset; });
  }
  return index;
}

std::vector<std::string> verify_gguf_files(const GgufIndex& index, const ShardSet& set, std::size_t max_errors,
                                           const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  std::uint64_t total = 0;
  for (const Shard& s : set.shards()) total += s.file_size;
  std::vector<std::string> errors;
  std::uint64_t done = 0;
  for (std::uint32_t i = 0; i < set.shards().size() && errors.size() < max_errors; ++i) {
    const Shard& shard = set.shards()[i];
    // Pieces are whole multiples of the chunk size (kIndexReadBytes is), so every chunk is checked.
    const std::uint64_t size = index.contents().shards[i].file_size;
    read_whole_file(shard.path, size, [&](std::uint64_t at, std::span<const std::byte> piece) {
      if (errors.size() >= max_errors) return;
      // A mismatch stops verify at its first bad chunk; go on chunk by chunk to report each one.
      for (std::uint64_t c = 0; c < piece.size() && errors.size() < max_errors; c += index.chunk_bytes()) {
        const std::uint64_t n = std::min<std::uint64_t>(index.chunk_bytes(), piece.size() - c);
        auto v = index.verify(i, at + c, piece.subspan(c, n));
        if (!v.ok()) errors.push_back(v.error().message);
      }
      done += piece.size();
      if (progress) progress(done, total);
    });
  }
  return errors;
}

std::optional<GgufIndex> GgufIndex::load_if_present(const ShardSet& set) {
  const std::string path = sidecar_path_for(set.shards().front().path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return std::nullopt;
  return load(path, set);  // any other stat failure is reported by load's open
}

std::string GgufIndex::tensors_in(std::uint32_t shard, std::uint64_t begin, std::uint64_t end) const {
  const auto& spans = tensors_by_shard_[shard];
  // First tensor ending after `begin`: spans are sorted and never overlap.
  auto first = std::upper_bound(spans.begin(), spans.end(), begin,
                                [](std::uint64_t at, const TensorSpan& t) { return at < t.offset + t.bytes; });
  std::vector<const TensorSpan*> hit;
  for (auto it = first; it != spans.end() && it->offset < end; ++it) hit.push_back(&*it);
  if (hit.empty()) return "no tensor (the GGUF header or padding)";
  const auto name = [&](const TensorSpan* t) {
    return begin > t->offset ? fmt::format("'{}' (from its byte {})", t->name, begin - t->offset) : fmt::format("'{}'", t->name);
  };
  if (hit.size() == 1) return "tensor " + name(hit[0]);
  if (hit.size() <= kMaxNamedTensors) {
    std::vector<std::string> names;
    for (const TensorSpan* t : hit) names.push_back(name(t));
    return fmt::format("tensors {}", fmt::join(names, ", "));
  }
  return fmt::format("{} tensors, {} to '{}'", hit.size(), name(hit.front()), hit.back()->name);
}

Result<std::uint64_t> GgufIndex::verify(std::uint32_t shard, std::uint64_t offset, std::span<const std::byte> bytes,
                                        std::string_view tensor) const {
  SLUICE_ASSERT_MSG(shard < contents_.shards.size(), "GgufIndex::verify: no such shard");
  const IndexedShard& s = contents_.shards[shard];
  const std::uint64_t chunk = contents_.chunk_bytes;
  if (offset >= s.file_size) return std::uint64_t{0};
  const std::uint64_t end = offset + std::min<std::uint64_t>(bytes.size(), s.file_size - offset);
  std::uint64_t verified = 0;
  for (std::uint64_t c = align_up(offset, chunk); c < end; c += chunk) {
    const std::uint64_t chunk_end = std::min(c + chunk, s.file_size);
    if (chunk_end > end) break;  // covered only in part
    const std::uint64_t hash = XXH3_64bits_withSeed(bytes.data() + (c - offset), chunk_end - c, c);
    if (hash != s.chunk_hashes[c / chunk]) {
      const std::string what = tensor.empty() ? tensors_in(shard, c, chunk_end) : fmt::format("tensor '{}'", tensor);
      return Error{ErrorKind::checksum, 0,
                   fmt::format("gguf {} (shard {} of {}): bytes [{}, +{}) (chunk {}) do not match the index {}: "
                               "damaged data in {}",
                               shard_paths_[shard], shard + 1, shard_paths_.size(), c, chunk_end - c, c / chunk, path_,
                               what)};
    }
    verified += chunk_end - c;
  }
  return verified;
}

}  // namespace sluice::gguf
