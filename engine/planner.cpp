#include "engine/planner.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <stdexcept>

#include "common/table.hpp"
#include "common/units.hpp"

namespace sluice {
namespace {
// Process baseline beyond what we allocate: code, TBB, libc arenas, the parsed manifest.
constexpr std::uint64_t kOverheadBytes = 64 * MiB;
}  // namespace

MemoryPlan plan_memory(const pack::Pack& pack, const ModelConfig& config, std::int64_t n_ctx, std::int64_t batch_tokens,
                       std::uint64_t budget, unsigned wanted_slots, double disk_gbps) {
  MemoryPlan p;
  p.budget = budget;
  p.disk_gbps = disk_gbps;
  p.blocks = config.n_layer;
  for (const auto& e : pack.extents()) {
    if (e.name.rfind("blk.", 0) == 0) {
      p.streamed_per_pass += e.disk_bytes;
      p.slot_bytes = std::max(p.slot_bytes, align_up(e.disk_bytes, kDirectAlign) + (e.all_raw() ? 0 : align_up(e.raw_bytes, kDirectAlign)));
    } else {
      p.resident_bytes += e.raw_bytes;
    }
  }
  const std::uint64_t kv_dim = std::uint64_t(config.n_head_kv * config.head_dim);
  p.kv_bytes = 2 * std::uint64_t(config.n_layer) * std::uint64_t(n_ctx) * kv_dim * sizeof(std::uint16_t);
  const std::uint64_t widest = std::uint64_t(std::max({config.n_embd, config.n_ff, config.n_head * config.head_dim}));
  // x, xn, q, k, v, att, proj, gate, up per token, plus the logits of one row.
  p.activation_bytes = std::uint64_t(batch_tokens) * widest * sizeof(float) * 9 + std::uint64_t(config.n_vocab) * sizeof(float);
  p.overhead_bytes = kOverheadBytes;
  const std::uint64_t fixed = p.resident_bytes + p.kv_bytes + p.activation_bytes + p.overhead_bytes;
  constexpr unsigned kMinSlots = 2;  // one slot computing, one filling
  p.minimum = fixed + kMinSlots * p.slot_bytes;
  if (budget < p.minimum) {
    throw std::runtime_error(fmt::format(
        "memory budget {} is too small for {}: the minimum is {} (resident {} + KV cache {} + activations {} + "
        "2 ring slots of {} + {} overhead); raise --mem-budget or lower -c",
        format_bytes(budget), pack.path(), format_bytes(p.minimum), format_bytes(p.resident_bytes), format_bytes(p.kv_bytes),
        format_bytes(p.activation_bytes), format_bytes(p.slot_bytes), format_bytes(p.overhead_bytes)));
  }
  const std::uint64_t room = budget - fixed;
  p.slots = static_cast<unsigned>(std::min<std::uint64_t>(std::max(wanted_slots, kMinSlots), room / std::max<std::uint64_t>(p.slot_bytes, 1)));
  p.ring_bytes = std::uint64_t(p.slots) * p.slot_bytes;
  p.total = fixed + p.ring_bytes;
  return p;
}

void print_plan(const MemoryPlan& p, std::ostream& out) {
  Table table({"memory plan", "bytes", "note"});
  table.add_row({"resident (embedding, head)", format_bytes(p.resident_bytes), "read once"});
  table.add_row({"ring", format_bytes(p.ring_bytes), fmt::format("{} slots x {}", p.slots, format_bytes(p.slot_bytes))});
  table.add_row({"KV cache (fp16)", format_bytes(p.kv_bytes), ""});
  table.add_row({"activations", format_bytes(p.activation_bytes), ""});
  table.add_row({"overhead allowance", format_bytes(p.overhead_bytes), ""});
  table.add_row({"total", format_bytes(p.total), fmt::format("budget {}", format_bytes(p.budget))});
  table.add_row({"streamed per pass", format_bytes(p.streamed_per_pass),
                 fmt::format("{} of {} blocks stream", p.blocks, p.blocks)});
  if (p.disk_gbps > 0) {
    table.add_row({"predicted s/pass", fmt::format("{:.3f}", p.predicted_seconds_per_pass()),
                   fmt::format("at {:.2f} GB/s", p.disk_gbps)});
  }
  table.print(out);
}

}  // namespace sluice
