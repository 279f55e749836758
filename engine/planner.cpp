#include "engine/planner.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <stdexcept>

#include "cache/kv_cache.hpp"
#include "cache/resident_set.hpp"
#include "common/table.hpp"
#include "common/units.hpp"
#include "prefetch/prefetcher.hpp"

namespace sluice {
namespace {
// Process baseline beyond what we allocate: code, TBB, libc arenas, the parsed manifest.
constexpr std::uint64_t kOverheadBytes = 64 * MiB;
// The tokenizer's tables and the parsed manifest grow with the vocabulary: with Gemma 3's 262144
// tokens, peak RSS above the planned items was 83 MiB (heaptrack: ~35 MB of tokenizer maps and
// copies), 19 MiB more than the fixed allowance; 80 bytes a token (20 MiB) covers it.
constexpr std::uint64_t kOverheadPerVocabToken = 80;
constexpr unsigned kMinSlots = 2;  // one slot computing, one filling

std::uint64_t slot_bytes_of(const pack::ExtentInfo& e) { return prefetch::extent_slot_bytes(e); }
}  // namespace

MemoryPlan plan_memory(const pack::Pack& pack, const ModelConfig& config, const PlanRequest& request) {
  MemoryPlan p;
  p.request = request;
  p.blocks = config.n_layer;
  const auto& extents = pack.extents();
  const pack::TensorInfo* embd = pack.find_tensor("token_embd.weight");
  const pack::TensorInfo* output = pack.find_tensor("output.weight");
  if (!embd) throw std::runtime_error(fmt::format("{}: no token_embd.weight", pack.path()));
  p.tied = output == nullptr;
  const std::uint32_t embd_extent = embd->extent, head_extent = p.tied ? embd->extent : output->extent;

  std::vector<std::uint64_t> block_raw(std::size_t(config.n_layer), 0), block_disk(std::size_t(config.n_layer), 0);
  std::uint64_t block_slot = 0;
  for (std::uint32_t i = 0; i < extents.size(); ++i) {
    const auto& e = extents[i];
    if (e.name.rfind("blk.", 0) == 0) {
      const std::int64_t il = std::stoll(e.name.substr(4));
      if (il >= 0 && il < config.n_layer) {
        block_raw[std::size_t(il)] = e.raw_bytes;
        block_disk[std::size_t(il)] = e.disk_bytes;
        block_slot = std::max(block_slot, slot_bytes_of(e));
        continue;
      }
    }
    if (i == head_extent) continue;
    if (i == embd_extent) continue;
    p.small_bytes += e.raw_bytes;
  }
  p.head_bytes = extents[head_extent].raw_bytes;
  p.embedding_bytes = p.tied ? 0 : extents[embd_extent].raw_bytes;

  cache::KvShape kv{config.n_layer, config.n_head_kv * config.head_dim, request.n_ctx, request.n_seq, request.kv_type};
  p.kv_full_bytes = kv.total_bytes();  // throws std::invalid_argument for q8_0 on a row that is not whole blocks
  const std::uint64_t kv_spilled = cache::spilled_kv_memory_bytes(kv);
  const std::uint64_t widest = std::uint64_t(std::max({config.n_embd, config.n_ff, config.n_head * config.head_dim}));
  // x, xn, q, k, v, att, proj, gate, up per token, plus the logits of one row per sequence (or
  // of every row asked for: perplexity scores many rows per pass).
  const std::int64_t logit_rows = std::max<std::int64_t>(request.logit_rows, request.n_seq);
  p.activation_bytes = std::uint64_t(std::max<std::int64_t>(request.pass_tokens, request.n_seq)) * widest * sizeof(float) * 9 +
                       std::uint64_t(logit_rows) * std::uint64_t(config.n_vocab) * sizeof(float);
  p.overhead_bytes = kOverheadBytes + std::uint64_t(config.n_vocab) * kOverheadPerVocabToken;
  const std::uint64_t fixed = p.small_bytes + p.activation_bytes + p.overhead_bytes;

  // The cheapest configuration that fits: resident KV before spilled, resident head before streamed.
  std::vector<bool> spill_choices;
  if (request.kv_spill != SpillMode::always) spill_choices.push_back(false);
  if (request.kv_spill != SpillMode::never) spill_choices.push_back(true);
  std::uint64_t smallest = UINT64_MAX;
  bool found = false;
  // A streamed head goes through the ring in pieces no larger than a block's slot (a whole
  // frame at least), so a big vocabulary does not make every slot as large as the head.
  std::uint64_t head_piece_slot = 0;
  for (const auto& piece : prefetch::extent_pieces(extents[head_extent], block_slot)) {
    head_piece_slot = std::max(head_piece_slot, slot_bytes_of(piece));
  }
  for (bool spill : spill_choices) {
    for (bool head_resident : {true, false}) {
      const std::uint64_t slot = head_resident ? block_slot : std::max(block_slot, head_piece_slot);
      const std::uint64_t need = fixed + (spill ? kv_spilled : p.kv_full_bytes) + (head_resident ? p.head_bytes : 0) + kMinSlots * slot;
      smallest = std::min(smallest, need);
      if (!found && need <= request.budget) {
        found = true;
        p.kv_spilled = spill;
        p.head_resident = head_resident;
        p.slot_bytes = slot;
        p.minimum = need;
      }
    }
  }
  if (!found) {
    throw std::runtime_error(fmt::format(
        "memory budget {} is too small for {}: the minimum is {} (small tensors {} + KV cache {} + activations {} + "
        "2 ring slots of {} + {} overhead{}); raise --mem-budget, or lower -c / -np / --pass-tokens{}",
        format_bytes(request.budget), pack.path(), format_bytes(smallest), format_bytes(p.small_bytes),
        format_bytes(request.kv_spill == SpillMode::never ? p.kv_full_bytes : kv_spilled), format_bytes(p.activation_bytes),
        format_bytes(std::max(block_slot, head_piece_slot)), format_bytes(p.overhead_bytes),
        request.kv_spill == SpillMode::never ? "" : ", KV spilled to disk",
        request.kv_spill == SpillMode::never ? ", or allow --kv-spill" : ""));
  }
  p.minimum = smallest;
  p.head_piece_slot_bytes = p.head_resident ? 0 : block_slot;
  p.kv_bytes = p.kv_spilled ? kv_spilled : p.kv_full_bytes;
  p.embedding_resident = p.tied && p.head_resident;
  std::uint64_t used = fixed + p.kv_bytes + (p.head_resident ? p.head_bytes : 0);
  std::uint64_t left = request.budget - used;

  // Ring slots first (up to what was asked), then resident blocks, then the embedding.
  p.slots = static_cast<unsigned>(std::min<std::uint64_t>(std::max(request.wanted_slots, kMinSlots), left / p.slot_bytes));
  std::uint64_t ring = std::uint64_t(p.slots) * p.slot_bytes;
  if (request.allow_resident_blocks) {
    // Blocks that become resident free ring room only if every block does (then no ring at all).
    std::uint64_t all_blocks = 0;
    for (auto b : block_raw) all_blocks += b;
    if (p.head_resident && all_blocks <= left) {
      p.resident_blocks.resize(std::size_t(config.n_layer));
      for (std::int64_t il = 0; il < config.n_layer; ++il) p.resident_blocks[std::size_t(il)] = il;
      ring = 0;
      p.slots = 0;
    } else {
      p.resident_blocks = cache::choose_resident_blocks(block_raw, left - ring);
    }
  }
  for (auto il : p.resident_blocks) p.resident_block_bytes += block_raw[std::size_t(il)];
  p.ring_bytes = ring;
  left -= ring + p.resident_block_bytes;
  if (!p.tied && p.embedding_bytes <= left) {
    p.embedding_resident = true;
    left -= p.embedding_bytes;
  }
  for (std::int64_t il = 0; il < config.n_layer; ++il) {
    if (!std::binary_search(p.resident_blocks.begin(), p.resident_blocks.end(), il)) p.streamed_per_pass += block_disk[std::size_t(il)];
  }
  if (!p.head_resident) p.streamed_per_pass += extents[head_extent].disk_bytes;
  p.total = request.budget - left;
  return p;
}

void print_plan(const MemoryPlan& p, std::ostream& out) {
  Table table({"memory plan", "bytes", "note"});
  table.add_row({"small tensors (norms)", format_bytes(p.small_bytes), "resident"});
  table.add_row({p.tied ? "output head = embedding" : "output head", format_bytes(p.head_bytes),
                 p.head_resident ? "resident" : "streams every pass"});
  if (!p.tied) {
    table.add_row({"embedding", format_bytes(p.embedding_resident ? p.embedding_bytes : 0),
                   p.embedding_resident ? "resident" : fmt::format("rows read on demand (of {})", format_bytes(p.embedding_bytes))});
  }
  std::string which;
  if (p.resident_blocks.size() == std::size_t(p.blocks)) {
    which = "all";
  } else if (!p.resident_blocks.empty()) {
    for (std::size_t i = 0; i < p.resident_blocks.size() && i < 12; ++i) {
      if (i > 0) which += ',';
      which += fmt::format("{}", p.resident_blocks[i]);
    }
    if (p.resident_blocks.size() > 12) which += ",...";
  }
  table.add_row({"resident blocks", format_bytes(p.resident_block_bytes),
                 fmt::format("{} of {} blocks{}", p.resident_blocks.size(), p.blocks, which.empty() ? "" : " (" + which + ")")});
  table.add_row({"ring", format_bytes(p.ring_bytes), p.slots ? fmt::format("{} slots x {}", p.slots, format_bytes(p.slot_bytes)) : "none: nothing streams"});
  table.add_row({fmt::format("KV cache ({})", cpu::to_string(p.request.kv_type)), format_bytes(p.kv_bytes),
                 p.kv_spilled ? fmt::format("spilled: {} on disk, 2 layers in RAM", format_bytes(p.kv_full_bytes))
                              : fmt::format("{} seq x {} ctx", p.request.n_seq, p.request.n_ctx)});
  table.add_row({"activations", format_bytes(p.activation_bytes), fmt::format("{} tokens per pass", p.request.pass_tokens)});
  table.add_row({"overhead allowance", format_bytes(p.overhead_bytes), ""});
  table.add_row({"total", format_bytes(p.total), fmt::format("budget {}, minimum {}", format_bytes(p.request.budget), format_bytes(p.minimum))});
  table.add_row({"streamed per pass", format_bytes(p.streamed_per_pass),
                 fmt::format("{} of {} blocks{}", p.blocks - std::int64_t(p.resident_blocks.size()), p.blocks, p.head_resident ? "" : " + head")});
  if (p.request.disk_gbps > 0) {
    table.add_row({"predicted s/pass", fmt::format("{:.3f}", p.predicted_seconds_per_pass()),
                   fmt::format("at {:.2f} GB/s", p.request.disk_gbps)});
  }
  table.print(out);
}

}  // namespace sluice
