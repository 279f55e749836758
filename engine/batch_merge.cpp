#include "engine/batch_merge.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>

#include "common/error.hpp"
#include "engine/batch_input.hpp"
#include "engine/batch_wire.hpp"

namespace sluice {

std::uint64_t merge_shard_outputs(const std::string& input, const std::vector<std::string>& shards, const std::string& output,
                                  std::ostream& log) {
  const auto count = static_cast<std::uint32_t>(shards.size());
  if (count == 0) throw std::invalid_argument("merge needs the shard outputs");
  // The format as the shards saw it: voted (a shard given --input-format must be merged from a
  // file of that format).
  const InputIndex index = scan_input(input, std::nullopt, 0, 1);
  std::vector<std::unique_ptr<LineReader>> readers;
  for (const std::string& shard : shards) readers.push_back(std::make_unique<LineReader>(shard, 64u << 20, "shard output"));
  std::vector<std::uint64_t> taken(count, 0);
  std::vector<bool> exhausted(count, false);
  const std::string tmp = output + ".merging";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) throw Exception(ErrorContext{ErrorKind::io, tmp}, fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  std::uint64_t missing = 0;
  LineReader::Line l;
  auto next_line = [&](std::uint32_t s) -> bool {
    if (exhausted[s]) return false;
    // A torn last line (a crash mid-write) is not an answer.
    if (!readers[s]->next(l) || !l.complete) {
      exhausted[s] = true;
      return false;
    }
    ++taken[s];
    return true;
  };
  for (const InputEntry& e : index.entries) {
    const std::uint32_t s = shard_of_line(e.custom_id, e.line, count);
    if (!next_line(s)) {
      ++missing;
      log << fmt::format("missing: input line {} (custom_id {}) of shard {}/{}: {} has {} lines\n", e.line,
                         e.custom_id.empty() ? "none" : "\"" + e.custom_id + "\"", s, count, shards[s], taken[s]);
      continue;
    }
    const std::optional<ResultLine> r = l.too_long ? std::nullopt : parse_result_line(l.text);
    const ErrorContext in_shard{ErrorKind::invalid, shards[s]};
    if (!r) throw Exception(in_shard, fmt::format("{} line {} is not a batch result line", shards[s], taken[s]));
    if (r->custom_id != e.custom_id) {
      throw Exception(in_shard,
                      fmt::format("{} line {} answers \"{}\" where input line {} (\"{}\") was expected: is it shard {}/{} "
                                  "of {}?",
                                  shards[s], taken[s], r->custom_id, e.line, e.custom_id, s, count, input));
    }
    out.write(l.text.data(), std::streamsize(l.text.size()));
    out.put('\n');
  }
  for (std::uint32_t s = 0; s < count; ++s) {
    if (next_line(s)) {
      throw Exception(
          ErrorContext{ErrorKind::invalid, shards[s]},
          fmt::format("{} has more lines than the {} requests of shard {}/{} of {}", shards[s], taken[s] - 1, s, count, input));
    }
  }
  out.flush();
  if (!out) throw Exception(ErrorContext{ErrorKind::io, tmp}, fmt::format("writing {} failed: {}", tmp, std::strerror(errno)));
  out.close();
  std::filesystem::rename(tmp, output);
  log << fmt::format("sluice batch merge: {} lines from {} shards into {}{}\n", index.entries.size() - missing, count, output,
                     missing ? fmt::format("; {} missing", missing) : "");
  return missing;
}

}  // namespace sluice
