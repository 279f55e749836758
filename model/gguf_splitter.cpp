// plan_split and split_gguf: sizing gguf-split shards from the tensor table, then copying tensor
// bytes into them in bounded pieces and publishing all shards together. See gguf_splitter.hpp.
#include "model/gguf_splitter.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>

#include <fmt/format.h>

#include "common/units.hpp"
#include "io/reader.hpp"
#include "model/output_file.hpp"

namespace sluice::gguf {
namespace {

// Bytes read from the input per request: large enough that O_DIRECT reads run at disk speed,
// small enough that splitting a 100 GB model holds a few MiB (convert reads the same way).
constexpr std::uint32_t kCopyChunkBytes = 4u << 20;

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The metadata every shard carries: the model's keys (first shard only) and the split keys.
// split.count is a placeholder of the same width until the count is known.
Writer shard_writer(const SplitModel& model, std::uint32_t shard, std::uint32_t count) {
  Writer w;
  if (shard == 0) {
    for (const auto& [key, value] : model.metadata) {
      // The alignment goes through write(); the split keys of a split input are replaced below.
      if (key == kAlignmentKey || key == kSplitNoKey || key == kSplitCountKey || key == kSplitTensorsCountKey) continue;
      w.set(key, value);
    }
  }
  w.set(std::string(kSplitNoKey), Value::unsigned_int(ValueType::u16, shard));
  w.set(std::string(kSplitCountKey), Value::unsigned_int(ValueType::u16, count));
  w.set(std::string(kSplitTensorsCountKey),
        Value::signed_int(ValueType::i32, static_cast<std::int32_t>(model.tensors.size())));
  return w;
}

// Copies [start, start + bytes) of `reader`'s file to `sink`, kCopyChunkBytes at a time, reading
// whole aligned blocks (the reader may be O_DIRECT) and passing on the part inside the range.
void copy_range(io::Reader& reader, std::byte* buffer, std::uint64_t start, std::uint64_t bytes,
                const std::string& tensor_name, const Writer::ByteSink& sink,
                const std::function<void(std::uint64_t)>& copied) {
  const std::uint64_t end = start + bytes;  // the header parse checked it lies inside the file
  std::uint64_t block = align_down(start, kDirectAlign);
  while (block < end) {
    const auto length = static_cast<std::uint32_t>(std::min<std::uint64_t>(kCopyChunkBytes, align_up(end - block, kDirectAlign)));
    std::uint64_t got = 0;
    if (Status st = reader.read_sync(buffer, block, length, &got); !st) {
      throw GgufError(fmt::format("split: reading tensor '{}': {}", tensor_name, st.error().message), ErrorKind::io);
    }
    const std::uint64_t from = std::max(block, start);
    const std::uint64_t to = std::min(block + got, end);
    if (to <= from || (to < end && got < length)) {
      // The file shrank since its header was read: what the header promised is gone.
      throw GgufError(fmt::format("gguf {}: tensor '{}' ends at byte {} but the file now ends at {}", reader.path(),
                                  tensor_name, end, block + got),
                      ErrorKind::io);
    }
    sink({buffer + (from - block), static_cast<std::size_t>(to - from)});
    copied(to - from);
    block += length;
  }
}

}  // namespace

SplitModel split_model_of(const ShardSet& input) {
  SplitModel model;
  model.source = input.shards()[0].path;
  model.metadata = input.metadata().metadata();
  model.alignment = input.metadata().alignment();
  model.tensors.reserve(input.tensors().size());
  for (const ShardTensor& t : input.tensors()) model.tensors.push_back(SplitTensor{t.name, t.type, t.dims, t.bytes});
  return model;
}

SplitPlan plan_split(const ShardSet& input, const std::string& prefix, const SplitOptions& options) {
  return plan_split(split_model_of(input), prefix, options);
}

SplitPlan plan_split(const SplitModel& model, const std::string& prefix, const SplitOptions& options) {
  if (options.max_bytes == 0 && options.max_tensors == 0) {
    throw GgufError("split: give a limit: --max-size SIZE, --max-tensors N or both", ErrorKind::invalid);
  }
  if (!parse_split_name(split_path(prefix, 1, 1))) {
    throw GgufError(fmt::format("split: '{}' cannot prefix shard names (empty, or a directory)", prefix),
                    ErrorKind::invalid);
  }
  if (model.tensors.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    throw GgufError(fmt::format("gguf {}: {} tensors do not fit split.tensors.count (i32)", model.source,
                                model.tensors.size()));
  }
  const std::uint64_t alignment = model.alignment;
  // Header bytes before any tensor info: the first shard's (all the metadata) and the others'.
  const std::uint64_t first_base = shard_writer(model, 0, 1).header_bytes(alignment);
  const std::uint64_t other_base = shard_writer(model, 1, 2).header_bytes(alignment);

  SplitPlan plan;
  std::vector<PlannedShard> shards;
  PlannedShard current;
  std::uint64_t header = first_base;
  std::uint64_t data = 0;
  const auto file_bytes = [&](std::uint64_t h, std::uint64_t d) { return align_up(h, alignment) + d; };
  const std::vector<SplitTensor>& tensors = model.tensors;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const SplitTensor& t = tensors[i];
    const std::uint64_t info = tensor_info_bytes(t.name.size(), t.dims.size());
    const std::uint64_t padded = align_up(t.bytes, alignment);
    const bool over_size = options.max_bytes > 0 && file_bytes(header + info, data + padded) > options.max_bytes;
    const bool over_count = options.max_tensors > 0 && current.tensor_count == options.max_tensors;
    if (current.tensor_count > 0 && (over_size || over_count)) {
      current.file_bytes = file_bytes(header, data);
      shards.push_back(current);
      current = PlannedShard{};
      current.first_tensor = i;
      header = other_base;
      data = 0;
    }
    header += info;
    data += padded;
    ++current.tensor_count;
  }
  current.file_bytes = file_bytes(header, data);
  shards.push_back(current);
  if (shards.size() > kMaxShards) {
    throw GgufError(fmt::format("split: {} shards needed, but gguf-split numbers at most {}: raise the limits",
                                shards.size(), kMaxShards),
                    ErrorKind::invalid);
  }
  const auto count = static_cast<std::uint32_t>(shards.size());
  for (std::uint32_t s = 0; s < count; ++s) {
    shards[s].path = split_path(prefix, s + 1, count);
    if (options.max_bytes > 0 && shards[s].file_bytes > options.max_bytes) plan.oversized.push_back(s);
  }
  plan.shards = std::move(shards);
  return plan;
}

SplitPlan split_gguf(const std::string& input_path, const std::string& prefix, const SplitOptions& options) {
  const ShardSet input = ShardSet::open(input_path);
  const SplitModel model = split_model_of(input);
  SplitPlan plan = plan_split(model, prefix, options);
  const auto count = static_cast<std::uint32_t>(plan.shards.size());
  // Before anything is opened for writing: an output that is an input file is refused even with
  // --force (it would be destroyed while being read).
  std::vector<std::string> existing;
  for (const PlannedShard& s : plan.shards) {
    for (const Shard& in : input.shards()) refuse_output_that_is_input("split", in.path, s.path);
    if (exists(s.path)) existing.push_back(s.path);
  }
  if (!existing.empty() && !options.force) {
    throw GgufError(fmt::format("split: {} of the {} output shard(s) already exist ({}{}): not overwritten; remove "
                                "them or pass --force",
                                existing.size(), count, existing[0], existing.size() > 1 ? ", ..." : ""),
                    ErrorKind::invalid);
  }

  io::ReaderOptions read_options;
  read_options.backend.kind = io::BackendKind::pread;
  read_options.backend.queue_depth = 1;
  std::vector<std::unique_ptr<io::Reader>> readers;
  for (const Shard& shard : input.shards()) {
    try {
      readers.push_back(io::Reader::open(shard.path, read_options, options.read_wrapper));
    } catch (const std::exception& e) {
      throw GgufError(fmt::format("gguf {}: cannot open: {}", shard.path, e.what()), ErrorKind::io);
    }
  }
  std::unique_ptr<std::byte, FreeDeleter> buffer{static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, kCopyChunkBytes))};
  if (!buffer) throw std::bad_alloc();

  const std::uint64_t total = input.tensor_bytes();
  std::uint64_t done = 0;
  const auto copied = [&](std::uint64_t n) {
    done += n;
    if (options.progress) options.progress(done, total);
  };
  write_split(
      model, plan,
      [&](Writer& w, std::size_t i) {
        const ShardTensor& t = input.tensors()[i];
        io::Reader& reader = *readers[t.shard];
        w.add_tensor_streamed(t.name, t.type, t.dims, [&, i](const Writer::ByteSink& sink) {
          const ShardTensor& tensor = input.tensors()[i];
          copy_range(reader, buffer.get(), tensor.offset, tensor.bytes, tensor.name, sink, copied);
        });
      },
      options);
  return plan;
}

void write_split(const SplitModel& model, const SplitPlan& plan,
                 const std::function<void(Writer&, std::size_t)>& add_tensor, const SplitOptions& options) {
  const auto count = static_cast<std::uint32_t>(plan.shards.size());
  // Every shard is written and flushed under its temporary name first; an exception on the way
  // destroys them all (each OutputFile removes its file).
  std::vector<std::unique_ptr<OutputFile>> written;
  for (std::uint32_t s = 0; s < count; ++s) {
    const PlannedShard& shard = plan.shards[s];
    Writer w = shard_writer(model, s, count);
    for (std::size_t i = shard.first_tensor; i < shard.first_tensor + shard.tensor_count; ++i) add_tensor(w, i);
    written.push_back(w.write_unpublished(shard.path, model.alignment));
    struct stat st {};
    // The plan's size is what the shard must be: a mismatch is a bug in the sizing, which the
    // --max-size promise rests on.
    if (::stat(written.back()->temp_path().c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) != shard.file_bytes) {
      throw std::logic_error(fmt::format("split: {} is {} bytes, {} were planned", written.back()->temp_path(),
                                         st.st_size, shard.file_bytes));
    }
    if (options.after_shard_written) options.after_shard_written(s);
  }
  // Publish: renames only, all data already on disk. A failed rename takes back the shards
  // already renamed, so that none of the set is left.
  std::size_t published = 0;
  try {
    for (; published < written.size(); ++published) written[published]->commit();
  } catch (...) {
    for (std::size_t s = 0; s < published; ++s) ::unlink(plan.shards[s].path.c_str());
    throw;
  }
}

}  // namespace sluice::gguf
