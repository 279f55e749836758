// ShardSet: finding, opening and checking the shards of a gguf-split model; block_read_ranges:
// each extent's reads from the merged tensor table. See gguf_split.hpp for the conventions.
#include "model/gguf_split.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/assert.hpp"
#include "common/units.hpp"
#include "model/tensor_names.hpp"

namespace sluice::gguf {
namespace {

constexpr std::string_view kSplitSuffixTail = ".gguf";
constexpr std::size_t kSplitDigits = 5;  // "%05d"
// "-00001-of-00004.gguf"
constexpr std::size_t kSplitSuffixBytes = 1 + kSplitDigits + 4 + kSplitDigits + kSplitSuffixTail.size();

std::optional<std::uint32_t> parse_digits(std::string_view s) {
  if (s.size() != kSplitDigits) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return v;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw GgufError(fmt::format("gguf {}: {}", path, what));
}

// Which extent a tensor belongs to when streaming: "blk.N", "token_embd", "output" or "misc".
// (convert.cpp's extent_of_tensor groups a pack the same way.)
enum class ExtentKind { block, token_embd, output, misc };

ExtentKind extent_kind(std::string_view name) {
  if (names::is_block_name(name)) return ExtentKind::block;
  if (name.rfind("token_embd.", 0) == 0) return ExtentKind::token_embd;
  if (name.rfind("output.", 0) == 0 || name.rfind("output_norm.", 0) == 0) return ExtentKind::output;
  return ExtentKind::misc;
}

// Fills `extent`'s ranges and placements from `members` (indices into tensors).
void place_extent(ExtentRanges& extent, std::vector<std::size_t> members, const std::vector<ShardTensor>& tensors,
                  std::uint64_t granularity) {
  std::sort(members.begin(), members.end(), [&](std::size_t a, std::size_t b) {
    const ShardTensor& x = tensors[a];
    const ShardTensor& y = tensors[b];
    return x.shard != y.shard ? x.shard < y.shard : x.offset < y.offset;
  });
  std::vector<std::size_t> range_of(members.size());
  for (std::size_t i = 0; i < members.size(); ++i) {
    const ShardTensor& t = tensors[members[i]];
    // No overflow: the header parse checked offset + bytes <= the file's size (< 2^63).
    const std::uint64_t begin = align_down(t.offset, granularity);
    const std::uint64_t end = align_up(t.offset + t.bytes, granularity);
    if (!extent.ranges.empty() && extent.ranges.back().shard == t.shard &&
        begin <= extent.ranges.back().offset + extent.ranges.back().length) {
      ReadRange& last = extent.ranges.back();
      last.length = std::max(last.offset + last.length, end) - last.offset;
    } else {
      extent.ranges.push_back({t.shard, begin, end - begin});
    }
    range_of[i] = extent.ranges.size() - 1;
    extent.tensor_bytes += t.bytes;
  }
  std::vector<std::uint64_t> range_at(extent.ranges.size());
  for (std::size_t r = 0; r < extent.ranges.size(); ++r) {
    range_at[r] = extent.buffer_bytes;
    extent.buffer_bytes += extent.ranges[r].length;
  }
  for (std::size_t i = 0; i < members.size(); ++i) {
    const ShardTensor& t = tensors[members[i]];
    const ReadRange& r = extent.ranges[range_of[i]];
    extent.tensors.push_back({members[i], range_of[i], range_at[range_of[i]] + (t.offset - r.offset)});
  }
}

}  // namespace

std::optional<SplitName> parse_split_name(std::string_view path) {
  if (path.size() <= kSplitSuffixBytes) return std::nullopt;
  const std::string_view suffix = path.substr(path.size() - kSplitSuffixBytes);
  // suffix: "-" NNNNN "-of-" MMMMM ".gguf"
  if (suffix[0] != '-' || suffix.substr(1 + kSplitDigits, 4) != "-of-" ||
      suffix.substr(suffix.size() - kSplitSuffixTail.size()) != kSplitSuffixTail) {
    return std::nullopt;
  }
  const auto number = parse_digits(suffix.substr(1, kSplitDigits));
  const auto count = parse_digits(suffix.substr(1 + kSplitDigits + 4, kSplitDigits));
  if (!number || !count || *number == 0 || *number > *count || *count > kMaxShards) return std::nullopt;
  const std::string_view prefix = path.substr(0, path.size() - kSplitSuffixBytes);
  if (prefix.empty() || prefix.back() == '/') return std::nullopt;
  return SplitName{std::string(prefix), *number, *count};
}

std::string split_path(std::string_view prefix, std::uint32_t number, std::uint32_t count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, number, count);
}

ShardSet ShardSet::open(const std::string& path) {
  ShardSet set;
  const std::optional<SplitName> name = parse_split_name(path);
  std::vector<std::string> paths;
  if (!name) {
    paths.push_back(path);
  } else {
    std::vector<std::string> missing;
    for (std::uint32_t n = 1; n <= name->count; ++n) {
      paths.push_back(split_path(name->prefix, n, name->count));
      if (!exists(paths.back())) missing.push_back(fmt::format("{} ({})", n, paths.back()));
    }
    if (!missing.empty()) {
      fail(path, fmt::format("a shard of a {}-shard gguf-split model: shard{} {} missing", name->count,
                             missing.size() > 1 ? "s" : "", fmt::join(missing, ", ")));
    }
  }
  const auto count = static_cast<std::uint32_t>(paths.size());

  std::optional<std::uint64_t> tensors_expected;
  std::optional<std::string> architecture;
  for (std::uint32_t i = 0; i < count; ++i) {
    File file = File::open_header(paths[i]);
    const std::string& p = paths[i];
    const auto split_no = file.get_uint(kSplitNoKey);
    const auto split_count = file.get_uint(kSplitCountKey);
    const auto split_tensors = file.get_uint(kSplitTensorsCountKey);
    if (!name) {
      if (split_count && *split_count > 1) {
        fail(p, fmt::format("{} is {}: this file is shard {} of a gguf-split model, but its name is not "
                            "PREFIX-NNNNN-of-NNNNN.gguf, so the other shards cannot be found (give the shards the "
                            "names gguf-split gave them)",
                            kSplitCountKey, *split_count, split_no ? fmt::format("{}", *split_no + 1) : "?"));
      }
    } else if (count > 1) {
      if (!split_no) fail(p, fmt::format("no {} key: not a gguf-split shard, though named like one", kSplitNoKey));
      if (*split_no != i) {
        fail(p, fmt::format("{} is {}, but the name says shard {} of {} (split.no counts from 0, so {} was expected): "
                            "shards renamed or mixed up",
                            kSplitNoKey, *split_no, i + 1, count, i));
      }
      if (i == 0 && !split_count) fail(p, fmt::format("first shard of {} has no {} key", count, kSplitCountKey));
      if (i == 0 && !split_tensors) fail(p, fmt::format("first shard of {} has no {} key", count, kSplitTensorsCountKey));
    }
    if (split_count && name && *split_count != count) {
      fail(p, fmt::format("{} is {}, but the file names say {} shards: a shard of a different split", kSplitCountKey,
                          *split_count, count));
    }
    if (split_no && name && count == 1 && *split_no != 0) {
      fail(p, fmt::format("{} is {} in a set of one shard", kSplitNoKey, *split_no));
    }
    if (split_tensors) {
      if (!tensors_expected) {
        tensors_expected = *split_tensors;
      } else if (*tensors_expected != *split_tensors) {
        fail(p, fmt::format("{} is {}, but the first shard {} says {}: a shard of a different model",
                            kSplitTensorsCountKey, *split_tensors, paths[0], *tensors_expected));
      }
    }
    if (const auto arch = file.get_string("general.architecture")) {
      if (!architecture) {
        architecture = *arch;
      } else if (*architecture != *arch) {
        fail(p, fmt::format("general.architecture is '{}', but the first shard {} says '{}': a shard of a different "
                            "model",
                            *arch, paths[0], *architecture));
      }
    }
    for (const TensorInfo& t : file.tensors()) {
      const auto [it, inserted] = set.tensor_index_.emplace(t.name, set.tensors_.size());
      if (!inserted) {
        const std::uint32_t other = set.tensors_[it->second].shard;
        fail(p, fmt::format("tensor '{}' is also in shard {} ({}): duplicate tensor", t.name, other + 1, paths[other]));
      }
      set.tensors_.push_back({t.name, i, file.data_offset() + t.offset, t.bytes, t.type, t.dims, t.elements});
    }
    set.shards_.push_back({p, file.file_size(), file.data_offset(), file.alignment(), file.tensors().size()});
    if (i == 0) set.first_.emplace(std::move(file));
  }
  if (tensors_expected && count > 1 && *tensors_expected != set.tensors_.size()) {
    fail(paths[0], fmt::format("{} is {}, but the {} shards hold {} tensors", kSplitTensorsCountKey, *tensors_expected,
                               count, set.tensors_.size()));
  }
  return set;
}

const ShardTensor* ShardSet::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::uint64_t ShardSet::tensor_bytes() const {
  std::uint64_t sum = 0;
  for (const ShardTensor& t : tensors_) sum += t.bytes;
  return sum;
}

ModelRanges block_read_ranges(const ShardSet& set, std::int64_t n_layer, std::uint64_t granularity, bool experts_apart) {
  SLUICE_ASSERT_MSG(granularity >= kDirectAlign && (granularity & (granularity - 1)) == 0,
                    "block_read_ranges: granularity must be a power of two >= 4096");
  SLUICE_ASSERT_MSG(n_layer >= 0, "block_read_ranges: negative n_layer");
  const std::vector<ShardTensor>& tensors = set.tensors();
  const std::string& source = set.shards().front().path;
  std::vector<std::vector<std::size_t>> block_members(static_cast<std::size_t>(n_layer));
  std::vector<std::vector<std::size_t>> expert_members(static_cast<std::size_t>(n_layer));
  auto is_experts = [](std::string_view name) {
    for (std::string_view t : {names::kFfnGateExps, names::kFfnUpExps, names::kFfnDownExps}) {
      if (name.size() > t.size() && name.ends_with(t) && name[name.size() - t.size() - 1] == '.') return true;
    }
    return false;
  };
  std::vector<std::size_t> embd, output, misc;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const ShardTensor& t = tensors[i];
    switch (extent_kind(t.name)) {
      case ExtentKind::block: {
        const auto n = names::block_index_of(t.name);
        if (!n || *n >= n_layer) {
          fail(set.shards()[t.shard].path,
               fmt::format("tensor '{}' names a block outside the model's {} blocks", t.name, n_layer));
        }
        (experts_apart && is_experts(t.name) ? expert_members : block_members)[static_cast<std::size_t>(*n)].push_back(i);
        break;
      }
      case ExtentKind::token_embd: embd.push_back(i); break;
      case ExtentKind::output: output.push_back(i); break;
      case ExtentKind::misc: misc.push_back(i); break;
    }
  }
  ModelRanges out;
  out.blocks.resize(block_members.size());
  for (std::size_t b = 0; b < block_members.size(); ++b) {
    if (block_members[b].empty()) fail(source, fmt::format("block {} of {} has no tensors", b, n_layer));
    out.blocks[b].name = names::block_name(static_cast<std::int64_t>(b));
    place_extent(out.blocks[b], std::move(block_members[b]), tensors, granularity);
  }
  out.block_experts.resize(expert_members.size());
  for (std::size_t b = 0; b < expert_members.size(); ++b) {
    out.block_experts[b].name = names::block_name(static_cast<std::int64_t>(b)) + ".exps";
    place_extent(out.block_experts[b], std::move(expert_members[b]), tensors, granularity);
  }
  out.token_embd.name = "token_embd";
  place_extent(out.token_embd, std::move(embd), tensors, granularity);
  out.output.name = "output";
  place_extent(out.output, std::move(output), tensors, granularity);
  out.misc.name = "misc";
  place_extent(out.misc, std::move(misc), tensors, granularity);
  return out;
}

}  // namespace sluice::gguf
