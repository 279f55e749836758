// PackWriter and write_synthetic_pack: builds pack files (format in pack_format.hpp).
#include "model/pack_writer.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <zstd.h>

#include "common/assert.hpp"
#include "common/units.hpp"

namespace sluice::pack {
namespace {

struct CctxDeleter {
  void operator()(ZSTD_CCtx* cctx) const { ZSTD_freeCCtx(cctx); }
};

// One compression context per TBB worker: a context holds MiBs of tables, far too costly to
// create per frame, and cannot be shared between threads.
ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx{ZSTD_createCCtx()};
  return cctx.get();
}

// Frames per batch: one per TBB worker keeps every core compressing; at least 4 so a batch
// amortises its write; at most 32 frames and 32 MiB of raw bytes, so the buffers (raw + encoded,
// twice that) fit a 256 MiB memory cap on a many-core machine and huge frames (--frame 64MiB)
// still cost a bounded amount.
constexpr std::size_t kMinBatchFrames = 4;
constexpr std::size_t kMaxBatchFrames = 32;
constexpr std::size_t kMaxBatchBytes = 32u << 20;

const char* codec_name(Codec codec) { return codec == Codec::zstd ? "zstd" : "raw"; }

// Outcome of compressing one frame inside a TBB task; errors travel out in here, never as throws.
struct FrameResult {
  std::size_t compressed_bytes = 0;
  bool use_zstd = false;
  std::string error;
};

}  // namespace

PackWriter::PackWriter(std::string path, WriterOptions options) : path_(std::move(path)), options_(options) {
  if (options_.frame_bytes == 0 || options_.frame_bytes > kMaxFrameBytes) {
    throw std::invalid_argument(fmt::format("pack {}: frame_bytes {} must be in [1, {}]", path_,
                                            options_.frame_bytes, kMaxFrameBytes));
  }
  if (!(options_.min_saving >= 0.0 && options_.min_saving < 1.0)) {
    throw std::invalid_argument(
        fmt::format("pack {}: min_saving {} must be in [0, 1)", path_, options_.min_saving));
  }
  if (options_.zstd_level < ZSTD_minCLevel() || options_.zstd_level > ZSTD_maxCLevel()) {
    throw std::invalid_argument(fmt::format("pack {}: zstd_level {} must be in [{}, {}]", path_,
                                            options_.zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel()));
  }
  const auto workers = static_cast<std::size_t>(std::max(1, tbb::this_task_arena::max_concurrency()));
  frames_per_batch_ = std::clamp<std::size_t>(workers, kMinBatchFrames, kMaxBatchFrames);
  frames_per_batch_ = std::max<std::size_t>(1, std::min<std::size_t>(frames_per_batch_, kMaxBatchBytes / options_.frame_bytes));
  out_ = std::make_unique<OutputFile>(path_, "pack");
  raw_.reserve(frames_per_batch_ * options_.frame_bytes);
  stats_.file_bytes = kHeaderBytes;
}

PackWriter::~PackWriter() = default;  // an uncommitted OutputFile removes its temporary file

void PackWriter::set_metadata(nlohmann::json metadata) {
  SLUICE_ASSERT_MSG(!finished_, "set_metadata after finish");
  if (!metadata.is_object()) {
    throw std::invalid_argument(fmt::format("pack {}: metadata must be a JSON object", path_));
  }
  metadata_ = std::move(metadata);
}

void PackWriter::begin_extent(std::string name) {
  SLUICE_ASSERT_MSG(!finished_ && !in_extent_, "begin_extent inside an extent or after finish");
  in_extent_ = true;
  extent_ = ExtentInfo{};
  extent_.name = std::move(name);
  extent_.offset = next_offset_;
  extent_raw_bytes_ = 0;
  raw_.clear();
  raw_zones_.clear();
}

void PackWriter::add_tensor(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> shape,
                            std::span<const std::byte> bytes) {
  begin_tensor(std::move(name), ggml_type, std::move(shape), bytes.size());
  add_bytes(bytes);
}

void PackWriter::begin_tensor(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> shape,
                              std::uint64_t bytes) {
  SLUICE_ASSERT_MSG(in_extent_, "begin_tensor outside an extent");
  SLUICE_ASSERT_MSG(tensor_bytes_left_ == 0, "begin_tensor before the previous tensor's bytes were all added");
  if (!tensor_names_.insert(name).second) {
    throw std::runtime_error(fmt::format("pack {}: duplicate tensor name '{}'", path_, name));
  }
  const std::uint64_t offset = align_up(extent_raw_bytes_, kTensorAlign);
  static constexpr std::array<std::byte, kTensorAlign> kZeros{};
  add_bytes(std::span(kZeros).first(offset - extent_raw_bytes_));
  TensorInfo tensor;
  tensor.name = std::move(name);
  tensor.type = ggml_type;
  tensor.shape = std::move(shape);
  tensor.extent = static_cast<std::uint32_t>(extents_.size());
  tensor.offset = offset;
  tensor.bytes = bytes;
  tensors_.push_back(std::move(tensor));
  raw_zones_.emplace_back(offset, options_.raw_types.contains(ggml_type));
  tensor_bytes_left_ = bytes;
  ++stats_.tensors;
}

void PackWriter::add_bytes(std::span<const std::byte> bytes) {
  SLUICE_ASSERT_MSG(in_extent_, "add_bytes outside an extent");
  if (expert_extent_) {
    add_expert_bytes(bytes);
    return;
  }
  if (tensor_bytes_left_ > 0) {
    SLUICE_ASSERT_MSG(bytes.size() <= tensor_bytes_left_, "add_bytes past the end of the open tensor");
    tensor_bytes_left_ -= bytes.size();
  }
  stage(bytes);
}

void PackWriter::stage(std::span<const std::byte> bytes) {
  const std::size_t batch_bytes = frames_per_batch_ * options_.frame_bytes;
  while (!bytes.empty()) {
    const std::size_t n = std::min(bytes.size(), batch_bytes - raw_.size());
    raw_.insert(raw_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    extent_raw_bytes_ += n;
    if (raw_.size() == batch_bytes) flush_frames(/*last=*/false);
  }
}

void PackWriter::pad_to(std::uint64_t to) {
  static constexpr std::array<std::byte, kExtentAlign> kZeros{};
  while (extent_raw_bytes_ < to) stage(std::span(kZeros).first(std::min<std::uint64_t>(kExtentAlign, to - extent_raw_bytes_)));
}

void PackWriter::begin_expert_extent(std::string name, std::vector<ExpertTensor> tensors) {
  if (tensors.empty()) throw std::invalid_argument(fmt::format("pack {}: expert extent '{}' without tensors", path_, name));
  const std::uint64_t n_expert = tensors.front().shape.empty() ? 0 : tensors.front().shape.back();
  std::uint64_t offset = 0;
  slice_offset_.clear();
  slice_bytes_.clear();
  for (const ExpertTensor& t : tensors) {
    if (t.shape.empty() || t.shape.back() != n_expert || n_expert == 0 || t.bytes == 0 || t.bytes % n_expert != 0) {
      throw std::invalid_argument(fmt::format("pack {}: expert extent '{}': tensor '{}' of {} bytes is not {} whole experts (its last "
                                              "dimension)", path_, name, t.name, t.bytes, n_expert));
    }
    offset = align_up(offset, kTensorAlign);
    slice_offset_.push_back(offset);
    slice_bytes_.push_back(t.bytes / n_expert);
    offset += t.bytes / n_expert;
  }
  begin_extent(std::move(name));
  expert_extent_ = any_expert_extent_ = true;
  expert_bytes_ = align_up(offset, kExtentAlign);
  extent_.expert_bytes = expert_bytes_;
  n_expert_ = n_expert;
  expert_ = 0;
  slice_ = 0;
  slice_left_ = slice_bytes_[0];
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    ExpertTensor& t = tensors[i];
    if (!tensor_names_.insert(t.name).second) {
      throw std::runtime_error(fmt::format("pack {}: duplicate tensor name '{}'", path_, t.name));
    }
    TensorInfo info;
    info.name = std::move(t.name);
    info.type = t.ggml_type;
    info.shape = std::move(t.shape);
    info.extent = static_cast<std::uint32_t>(extents_.size());
    info.offset = slice_offset_[i];
    info.bytes = t.bytes;
    info.expert_stride = expert_bytes_;
    tensors_.push_back(std::move(info));
    ++stats_.tensors;
  }
}

void PackWriter::add_expert_bytes(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    SLUICE_ASSERT_MSG(expert_ < n_expert_, "add_bytes past an expert extent's last expert");
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), slice_left_));
    stage(bytes.first(n));
    bytes = bytes.subspan(n);
    slice_left_ -= n;
    if (slice_left_ > 0) continue;
    const std::uint64_t expert_start = expert_ * expert_bytes_;
    if (++slice_ < slice_bytes_.size()) {
      pad_to(expert_start + slice_offset_[slice_]);
    } else {
      // The expert is whole: pad it to its aligned size and cut its frames here, so that no frame
      // holds bytes of two experts and the next expert starts a frame.
      pad_to(expert_start + expert_bytes_);
      if (!raw_.empty()) flush_frames(/*last=*/true);
      ++expert_;
      slice_ = 0;
    }
    slice_left_ = slice_bytes_[slice_];
  }
}

void PackWriter::encode_frames(std::span<FrameInfo> frames) {
  const std::size_t frame_count = frames.size();
  const std::size_t bound = ZSTD_compressBound(options_.frame_bytes);
  // Each frame compresses into its own slot of `encoded_`, then the slots are compacted in order.
  encoded_.resize(frame_count * bound);
  std::vector<FrameResult> results(frame_count);
  // Frames whose first byte lies in a tensor of a raw type skip zstd altogether.
  const std::uint64_t batch_start = extent_raw_bytes_ - raw_.size();
  std::vector<char> forced_raw(frame_count, 0);
  for (std::size_t i = 0; i < frame_count && !raw_zones_.empty(); ++i) {
    const std::uint64_t at = batch_start + i * options_.frame_bytes;
    auto it = std::upper_bound(raw_zones_.begin(), raw_zones_.end(), at,
                               [](std::uint64_t x, const std::pair<std::uint64_t, bool>& z) { return x < z.first; });
    if (it != raw_zones_.begin()) forced_raw[i] = std::prev(it)->second ? 1 : 0;
  }
  const bool weigh_cost = options_.cost.disk_bytes_per_s > 0;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, frame_count), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t i = r.begin(); i != r.end(); ++i) {
      FrameResult& result = results[i];
      if (options_.compress == WriterOptions::Compress::auto_ && forced_raw[i]) continue;
      try {
        ZSTD_CCtx* cctx = thread_cctx();
        if (cctx == nullptr) {
          result.error = "cannot create a zstd compression context";
          continue;
        }
        const std::size_t raw_bytes = frames[i].raw_bytes;
        const std::size_t got = ZSTD_compressCCtx(cctx, encoded_.data() + i * bound, bound,
                                                  raw_.data() + i * options_.frame_bytes, raw_bytes,
                                                  options_.zstd_level);
        if (ZSTD_isError(got)) {
          result.error = ZSTD_getErrorName(got);
          continue;
        }
        result.compressed_bytes = got;
        const double saving = static_cast<double>(raw_bytes) - static_cast<double>(got);
        if (options_.compress == WriterOptions::Compress::zstd) {
          result.use_zstd = got < raw_bytes;
        } else if (weigh_cost) {
          CompressionCost cost = options_.cost;
          cost.min_saving = options_.min_saving;
          result.use_zstd = decide_compression(raw_bytes, got, cost).zstd;
        } else {
          result.use_zstd = got < raw_bytes && saving >= options_.min_saving * static_cast<double>(raw_bytes);
        }
      } catch (const std::exception& e) {
        result.error = e.what();
      }
    }
  });
  const std::size_t first_index = extent_.frames.size() - frame_count;
  std::uint64_t pos = 0;
  for (std::size_t i = 0; i < frame_count; ++i) {
    if (!results[i].error.empty()) {
      throw std::runtime_error(fmt::format("pack {}: extent '{}' frame {}: zstd compression failed: {}", path_,
                                           extent_.name, first_index + i, results[i].error));
    }
    // pos <= i * frame_bytes <= i * bound, so moving left never clobbers a later slot.
    FrameInfo& frame = frames[i];
    frame.offset = pos;
    if (results[i].use_zstd) {
      frame.codec = Codec::zstd;
      frame.disk_bytes = static_cast<std::uint32_t>(results[i].compressed_bytes);
      std::memmove(encoded_.data() + pos, encoded_.data() + i * bound, frame.disk_bytes);
    } else {
      frame.codec = Codec::raw;
      frame.disk_bytes = frame.raw_bytes;
      std::memcpy(encoded_.data() + pos, raw_.data() + i * options_.frame_bytes, frame.raw_bytes);
    }
    pos += frame.disk_bytes;
  }
  encoded_.resize(pos);
}

void PackWriter::flush_frames(bool last) {
  const std::uint64_t staged = raw_.size();
  const std::uint64_t frame_bytes = options_.frame_bytes;
  // Only the extent's last batch may end in a short frame; earlier batches are whole frames.
  const std::size_t frame_count = static_cast<std::size_t>(last ? (staged + frame_bytes - 1) / frame_bytes : staged / frame_bytes);
  SLUICE_ASSERT_MSG(last || frame_count * frame_bytes == staged, "a batch that is not the last must be whole frames");
  const std::size_t first = extent_.frames.size();
  extent_.frames.resize(first + frame_count);
  const std::span<FrameInfo> frames(extent_.frames.data() + first, frame_count);
  for (std::size_t i = 0; i < frame_count; ++i) {
    frames[i].raw_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(frame_bytes, staged - i * frame_bytes));
  }

  // With compression off the stored bytes are the raw bytes: write them in place, no copy.
  std::vector<std::byte>* stored = &raw_;
  // An expert extent's frames are raw: an expert is read O_DIRECT straight into its cache slot.
  if (options_.compress == WriterOptions::Compress::none || expert_extent_) {
    std::uint64_t pos = 0;
    for (FrameInfo& frame : frames) {
      frame.offset = pos;
      frame.disk_bytes = frame.raw_bytes;
      frame.codec = Codec::raw;
      pos += frame.raw_bytes;
    }
  } else {
    encode_frames(frames);
    stored = &encoded_;
  }
  const std::uint64_t disk_bytes = stored->size();

  // Checksums are seeded by absolute offset, known only now.
  const std::uint64_t base = next_offset_;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, frames.size()), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t i = r.begin(); i != r.end(); ++i) {
      FrameInfo& frame = frames[i];
      frame.checksum = frame_checksum(base + frame.offset, {stored->data() + frame.offset, frame.disk_bytes});
      frame.offset += base;
    }
  });

  // The extent's end is padded so the next one starts kExtentAlign-aligned (extents start aligned,
  // so aligning the absolute end aligns the extent's size).
  if (last) stored->resize(align_up(base + disk_bytes, kExtentAlign) - base, std::byte{0});
  out_->pwrite_all(*stored, base);
  next_offset_ = base + stored->size();
  out_->written_through(next_offset_);

  for (const FrameInfo& frame : frames) {
    (frame.codec == Codec::zstd ? stats_.frames_zstd : stats_.frames_raw) += 1;
  }
  extent_.disk_bytes += disk_bytes;
  stats_.stored_bytes += disk_bytes;
  raw_.clear();
}

void PackWriter::end_extent() {
  SLUICE_ASSERT_MSG(in_extent_, "end_extent without begin_extent");
  SLUICE_ASSERT_MSG(tensor_bytes_left_ == 0, "end_extent before the open tensor's bytes were all added");
  SLUICE_ASSERT_MSG(!expert_extent_ || expert_ == n_expert_, "end_extent before every expert's bytes were added");
  if (!expert_extent_) flush_frames(/*last=*/true);  // an expert extent flushed at its last expert's end
  expert_extent_ = false;
  extent_.raw_bytes = extent_raw_bytes_;
  extents_.push_back(std::move(extent_));
  extent_ = ExtentInfo{};
  stats_.file_bytes = next_offset_;
  stats_.raw_bytes += extent_raw_bytes_;
  ++stats_.extents;
  in_extent_ = false;
}

void PackWriter::finish() {
  SLUICE_ASSERT_MSG(!in_extent_ && !finished_, "finish inside an extent or twice");
  // Version 1 unless an expert extent needs 2: builds that read version 1 only still read it.
  const std::uint32_t version = any_expert_extent_ ? kExpertsVersion : kMinVersion;
  nlohmann::json manifest = {{"format", "sluice-pack"}, {"version", version}, {"frame_bytes", options_.frame_bytes}};
  manifest["metadata"] = std::move(metadata_);
  if (!options_.policy_record.is_null()) manifest["compression_policy"] = options_.policy_record;
  nlohmann::json extents = nlohmann::json::array();
  for (const ExtentInfo& extent : extents_) {
    nlohmann::json frames = nlohmann::json::array();
    for (const FrameInfo& frame : extent.frames) {
      frames.push_back({{"offset", frame.offset},
                        {"disk_bytes", frame.disk_bytes},
                        {"raw_bytes", frame.raw_bytes},
                        {"codec", codec_name(frame.codec)},
                        {"checksum", frame.checksum}});
    }
    nlohmann::json item = {{"name", extent.name},
                           {"offset", extent.offset},
                           {"disk_bytes", extent.disk_bytes},
                           {"raw_bytes", extent.raw_bytes},
                           {"frames", std::move(frames)}};
    if (extent.expert_bytes != 0) item["expert_bytes"] = extent.expert_bytes;
    extents.push_back(std::move(item));
  }
  manifest["extents"] = std::move(extents);
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorInfo& tensor : tensors_) {
    nlohmann::json item = {{"name", tensor.name},
                           {"type", tensor.type},
                           {"shape", tensor.shape},
                           {"extent", tensor.extent},
                           {"offset", tensor.offset},
                           {"bytes", tensor.bytes}};
    if (tensor.expert_stride != 0) item["expert_stride"] = tensor.expert_stride;
    tensors.push_back(std::move(item));
  }
  manifest["tensors"] = std::move(tensors);

  std::string text;
  try {
    text = manifest.dump();
  } catch (const nlohmann::json::exception& e) {
    // Invalid UTF-8 in a name or in the metadata.
    throw std::runtime_error(fmt::format("pack {}: cannot encode the manifest: {}", path_, e.what()));
  }
  if (text.size() > kMaxManifestBytes) {
    throw std::runtime_error(fmt::format("pack {}: manifest of {} bytes exceeds the limit of {}", path_,
                                         text.size(), kMaxManifestBytes));
  }
  const std::span<const std::byte> manifest_bytes{reinterpret_cast<const std::byte*>(text.data()), text.size()};
  const std::uint64_t manifest_offset = next_offset_;
  out_->pwrite_all(manifest_bytes, manifest_offset);
  // Pad the file to a whole block so direct-I/O reads of the manifest's last block stay in the file.
  const std::uint64_t file_bytes = align_up(manifest_offset + text.size(), kExtentAlign);
  out_->truncate(file_bytes);

  Header header;
  header.version = version;
  header.manifest_offset = manifest_offset;
  header.manifest_bytes = text.size();
  header.manifest_checksum = manifest_checksum(manifest_bytes);
  out_->pwrite_all(encode_header(header), 0);
  out_->commit();
  out_.reset();
  finished_ = true;
  stats_.file_bytes = file_bytes;
}

namespace {

// Chunk over which the synthetic data's compressible share is laid out: one page, so every
// direct-I/O block has the same mix.
constexpr std::uint64_t kSyntheticChunkBytes = 4096;
constexpr std::uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ull;  // splitmix64's increment

// splitmix64's output function: a bijective 64-bit mix.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t splitmix64(std::uint64_t& state) { return mix64(state += kGoldenGamma); }

// Fills `out` (one chunk, possibly short) deterministically from (seed, chunk_index).
void fill_synthetic_chunk(std::byte* out, std::size_t bytes, std::uint64_t seed, std::uint64_t chunk_index,
                          std::size_t compressible_bytes) {
  // Hashing (not just offsetting) the chunk id: chunks whose start states differed by a few
  // multiples of the increment would replay each other's streams, which zstd would find.
  std::uint64_t state = mix64(seed ^ mix64(chunk_index + 1));
  const std::uint64_t pattern = splitmix64(state);
  std::size_t pos = 0;
  const std::size_t pattern_end = std::min(bytes, compressible_bytes);
  for (; pos + sizeof(std::uint64_t) <= pattern_end; pos += sizeof(std::uint64_t)) {
    std::memcpy(out + pos, &pattern, sizeof(pattern));
  }
  for (; pos + sizeof(std::uint64_t) <= bytes; pos += sizeof(std::uint64_t)) {
    const std::uint64_t word = splitmix64(state);
    std::memcpy(out + pos, &word, sizeof(word));
  }
  if (pos < bytes) {
    const std::uint64_t word = splitmix64(state);
    std::memcpy(out + pos, &word, bytes - pos);
  }
}

}  // namespace

void write_synthetic_pack(const std::string& path, std::uint64_t total_bytes, std::uint64_t extent_bytes,
                          WriterOptions options, std::uint64_t seed, double compressible_fraction) {
  if (extent_bytes == 0) {
    throw std::invalid_argument(fmt::format("pack {}: synthetic extent_bytes must be > 0", path));
  }
  const double fraction = std::isnan(compressible_fraction) ? 0.0 : std::clamp(compressible_fraction, 0.0, 1.0);
  // Whole 8-byte words, so the pattern region ends on a word boundary.
  const std::size_t compressible_bytes =
      static_cast<std::size_t>(fraction * kSyntheticChunkBytes) / sizeof(std::uint64_t) * sizeof(std::uint64_t);

  PackWriter writer(path, options);
  writer.set_metadata({{"synthetic", true},
                       {"seed", seed},
                       {"total_bytes", total_bytes},
                       {"extent_bytes", extent_bytes},
                       {"compressible_fraction", fraction}});
  const std::uint64_t extent_count = (total_bytes + extent_bytes - 1) / extent_bytes;
  std::vector<std::byte> buffer;
  for (std::uint64_t e = 0; e < extent_count; ++e) {
    const std::uint64_t start = e * extent_bytes;
    const std::uint64_t bytes = std::min(extent_bytes, total_bytes - start);
    buffer.resize(bytes);
    const std::uint64_t chunks = (bytes + kSyntheticChunkBytes - 1) / kSyntheticChunkBytes;
    // Chunk ids are unique across extents and independent of how threads split the work, so the
    // data depends only on the seed and the parameters.
    const std::uint64_t first_chunk = e * ((extent_bytes + kSyntheticChunkBytes - 1) / kSyntheticChunkBytes);
    tbb::parallel_for(tbb::blocked_range<std::uint64_t>(0, chunks), [&](const tbb::blocked_range<std::uint64_t>& r) {
      for (std::uint64_t c = r.begin(); c != r.end(); ++c) {
        const std::uint64_t offset = c * kSyntheticChunkBytes;
        const std::size_t n = static_cast<std::size_t>(std::min(kSyntheticChunkBytes, bytes - offset));
        fill_synthetic_chunk(buffer.data() + offset, n, seed, first_chunk + c, compressible_bytes);
      }
    });
    writer.begin_extent(fmt::format("synthetic.{}", e));
    writer.add_bytes(buffer);
    writer.end_extent();
  }
  writer.finish();
}

}  // namespace sluice::pack
