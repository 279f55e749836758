// `sluice split --max-size SIZE IN.gguf OUT-PREFIX`: cut a GGUF model into llama.cpp gguf-split
// shards OUT-PREFIX-00001-of-0000N.gguf ... (model/gguf_splitter.hpp), so that users and tests
// can make split models that both llama.cpp and sluice load.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fmt/format.h>
#include <iostream>
#include <memory>
#include <string>

#include "common/units.hpp"
#include "model/gguf_splitter.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct SplitCliOptions {
  std::string input;
  std::string prefix;
  std::string max_size;
  std::uint64_t max_tensors = 0;
  bool force = false;
  bool dry_run = false;
};

// Progress lines only for inputs that take a while to copy: under 256 MiB a split takes about a
// second.
constexpr std::uint64_t kProgressMinBytes = 256 * MiB;

void print_plan(const gguf::SplitPlan& plan, std::uint64_t max_bytes) {
  for (std::size_t s = 0; s < plan.shards.size(); ++s) {
    const gguf::PlannedShard& shard = plan.shards[s];
    std::cout << fmt::format("{}: {} tensor(s), {}", shard.path, shard.tensor_count, format_bytes(shard.file_bytes))
              << '\n';
  }
  for (std::size_t s : plan.oversized) {
    const gguf::PlannedShard& shard = plan.shards[s];
    std::cout << fmt::format("note: {} is {} ({} bytes), over --max-size {} bytes: {} alone{} does not fit\n",
                             shard.path, format_bytes(shard.file_bytes), shard.file_bytes, max_bytes,
                             shard.tensor_count == 1 ? "its one tensor" : "its first tensor",
                             s == 0 ? " with the model's metadata" : "");
  }
}

void run_split(const SplitCliOptions& o) {
  gguf::SplitOptions options;
  if (!o.max_size.empty()) options.max_bytes = parse_size_option("--max-size", o.max_size);
  options.max_tensors = o.max_tensors;
  options.force = o.force;
  if (options.max_bytes == 0 && options.max_tensors == 0) {
    throw CLI::ValidationError("--max-size", "give --max-size SIZE, --max-tensors N or both");
  }
  if (o.dry_run) {
    const gguf::ShardSet input = gguf::ShardSet::open(o.input);
    print_plan(gguf::plan_split(input, o.prefix, options), options.max_bytes);
    return;
  }
  options.progress = progress_printer("split", kProgressMinBytes);
  const auto started = std::chrono::steady_clock::now();
  const gguf::SplitPlan plan = gguf::split_gguf(o.input, o.prefix, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  print_plan(plan, options.max_bytes);
  std::cout << fmt::format("{} -> {} shard(s) in {:.1f} s\n", o.input, plan.shards.size(), seconds);
}

}  // namespace

void add_split_command(CLI::App& app) {
  auto o = std::make_shared<SplitCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "split",
      "Cut a GGUF model into llama.cpp gguf-split shards OUT-PREFIX-00001-of-0000N.gguf ...: the first holds all the "
      "metadata, each holds whole tensors in the input's order, and llama.cpp and sluice load them from the first "
      "shard's name. All shards appear at the end, or none. A split input (any shard) is re-split as a whole.");
  cmd->add_option("INPUT", o->input, "GGUF file, or any shard of a gguf-split model")->required();
  cmd->add_option("OUT-PREFIX", o->prefix, "Shard names: OUT-PREFIX-00001-of-0000N.gguf ...")->required();
  cmd->add_option("--max-size", o->max_size,
                  "Largest shard file (4GiB, 500MiB, bytes), header included; a tensor larger than this alone gets a "
                  "shard of its own, which is then larger (said so)");
  cmd->add_option("--max-tensors", o->max_tensors, "Most tensors per shard (llama.cpp's --split-max-tensors)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 31));
  cmd->add_flag("--force", o->force, "Replace existing shards of the same names");
  cmd->add_flag("--dry-run", o->dry_run, "Print the shards that would be written; write nothing");
  cmd->callback([o] { run_split(*o); });
}

}  // namespace sluice
