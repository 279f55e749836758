#include "engine/planner.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <stdexcept>
#include <thread>

#include "cache/kv_cache.hpp"
#include "cache/resident_set.hpp"
#include "compute/cpu/matmul.hpp"
#include "compute/cpu/ops.hpp"
#include "compute/cpu/quants.hpp"
#include "common/table.hpp"
#include "common/units.hpp"
#include "engine/block_pieces.hpp"
#include "engine/transformer.hpp"
#include "engine/expert_store.hpp"
#include "cache/expert_cache.hpp"
#include "model/gguf_source.hpp"
#include "model/tensor_names.hpp"
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
// Tokenizing a prompt (model/tokenizer_encode.cpp, SentencePiece merging) holds per byte of text
// a symbol, the queued pairs and the escaped copies of the text, beside the text itself.
// Measured (peak RSS of `sluice run` refusing a 1-2 MB prompt after tokenizing it, less the same
// run with a short one): 61 and 55 bytes a byte with Gemma 3's vocabulary, 40 with stories260K's.
constexpr std::uint64_t kTokenizerBytesPerTextByte = 64;
constexpr std::uint64_t kPromptTextBytesPerToken = 8;
// The embedding read on demand holds at most one frame it gathered from and the stored and
// decoded copies of the next (model/pack_reader.cpp read_frame).
constexpr std::uint64_t kEmbeddingFramesHeld = 3;
// Sampling (engine/sampling.cpp): each sequence's sampler keeps a (logit, id) candidate per
// vocabulary entry (8 B); a draw adds probabilities, weights and the distribution's copy (3 x 8 B).
constexpr std::uint64_t kSamplerBytesPerVocabToken = 8;
constexpr std::uint64_t kDrawBytesPerVocabToken = 24;

std::uint64_t slot_bytes_of(const pack::ExtentInfo& e) { return prefetch::extent_slot_bytes(e); }

GgmlType tensor_type(const pack::TensorInfo& t) { return static_cast<GgmlType>(t.type); }

// Threads that may attend at once: attention runs inside the session's executor, so at most its
// concurrency (request.compute_threads); unknown (0), one per core.
std::int64_t attention_threads(const PlanRequest& request) {
  if (request.compute_threads > 0) return request.compute_threads;
  return std::max<std::int64_t>(1, std::int64_t(std::thread::hardware_concurrency()));
}
}  // namespace

namespace {
MemoryPlan plan_once(const ModelSource& source, const ModelConfig& config, const PlanRequest& request) {
  if (request.n_ctx <= 0) throw std::invalid_argument(fmt::format("the context must be positive (got {})", request.n_ctx));
  if (request.n_seq <= 0) throw std::invalid_argument(fmt::format("the sequences must be positive (got {})", request.n_seq));
  MemoryPlan p;
  p.request = request;
  p.source = source.describe();
  for (const auto& u : source.units()) p.source_bytes += u.disk_bytes;
  p.blocks = config.n_layer;
  const auto& extents = source.units();
  const pack::TensorInfo* embd = source.find_tensor(names::kTokenEmbd);
  const pack::TensorInfo* output = source.find_tensor(names::kOutput);
  if (!embd) throw std::runtime_error(fmt::format("{}: no {}", source.path(), names::kTokenEmbd));
  p.tied = output == nullptr;
  const std::uint32_t embd_extent = embd->extent, head_extent = p.tied ? embd->extent : output->extent;
  const pack::TensorInfo& head = p.tied ? *embd : *output;

  std::vector<std::uint64_t> block_raw(std::size_t(config.n_layer), 0), block_disk(std::size_t(config.n_layer), 0);
  std::vector<std::uint32_t> block_unit(std::size_t(config.n_layer), 0);
  std::uint64_t block_slot = 0;
  for (std::uint32_t i = 0; i < extents.size(); ++i) {
    const auto& e = extents[i];
    if (const auto il = names::block_extent_index(e.name, config.n_layer)) {
      block_unit[std::size_t(*il)] = i;
      block_raw[std::size_t(*il)] = e.raw_bytes;
      block_disk[std::size_t(*il)] = e.disk_bytes;
      block_slot = std::max(block_slot, slot_bytes_of(e));
      continue;
    }
    if (i == head_extent) continue;
    if (i == embd_extent) continue;
    if (e.name.ends_with(names::kExpertsSuffix)) {  // a block's experts, read one by one (a GGUF opened experts apart, a pack's expert extent)
      p.experts_apart = true;
      continue;
    }
    p.small_bytes += e.raw_bytes;
  }
  if (p.experts_apart) {
    if (!config.is_moe()) throw std::invalid_argument(fmt::format("{}: expert units without a mixture-of-experts model", source.path()));
    p.n_expert = config.n_expert;
    p.expert_slot_bytes = align_up(ExpertStore::slot_bytes_for(source, config), kDirectAlign);
  }
  // Experts apart: the transient buffer (one slot) is always held; the rest of the cache is sized last.
  const std::uint64_t expert_transient = p.expert_slot_bytes;
  p.head_bytes = extents[head_extent].raw_bytes;
  p.embedding_bytes = p.tied ? 0 : extents[embd_extent].raw_bytes;

  const cache::KvShape kv = kv_shape(config, request.n_ctx, request.n_seq, request.kv_type);
  p.kv_full_bytes = kv.total_bytes();  // throws std::invalid_argument for q8_0 on a row that is not whole blocks
  for (std::int64_t il = 0; il < kv.n_layer; ++il) p.kv_ring_layers += kv.ring(il) ? 1 : 0;
  p.kv_ring_rows = kv.ring_rows();
  const std::uint64_t kv_spilled = cache::spilled_kv_memory_bytes(kv);
  p.overhead_bytes = kOverheadBytes + std::uint64_t(config.n_vocab) * kOverheadPerVocabToken;

  // Blocks larger than the piece size stream in pieces (engine/block_pieces.hpp): the slot is a
  // piece's, the bytes per pass the pieces' (a frame two runs share counts twice), and the
  // blocks' norms and biases are held in RAM.
  std::int64_t piece_rows = 0;  // the most matrix rows one piece holds: project()'s output per token
  // Only where a ring of whole blocks would hold more than a full queue of reads. (zstd frames
  // too: bench_io's PrefetchZstd read 1.40-1.65x faster in pieces in three runs of four, 0.80x in one.)
  if (request.block_piece_bytes > 0 && blocks_stream_in_pieces(config) && !p.experts_apart && block_slot > request.block_piece_bytes &&
      std::uint64_t(std::max(request.wanted_slots, kMinSlots)) * block_slot > kPiecedRingBytes) {
    p.block_piece_slot_bytes = request.block_piece_bytes + kDirectAlign;  // whole frames, from a block boundary
    block_slot = 0;
    for (std::int64_t il = 0; il < config.n_layer; ++il) {
      const UnitPieces cut = cut_block_pieces(source, block_unit[std::size_t(il)], il, p.block_piece_slot_bytes);
      block_disk[std::size_t(il)] = cut.disk_bytes;
      block_slot = std::max(block_slot, cut.slot_bytes);
      piece_rows = std::max(piece_rows, cut.max_piece_rows);
      for (const SourceTensor* t : cut.small) p.small_bytes += t->bytes;
    }
  }
  // A streamed head goes through the ring in pieces no larger than a block's slot (a whole
  // frame at least), so a big vocabulary does not make every slot as large as the head.
  const UnitPieces head_cut = cut_tensor_pieces(source, head, block_slot);
  std::uint64_t head_piece_raw = 0;
  for (const auto& piece : head_cut.pieces) head_piece_raw = std::max(head_piece_raw, piece.info.raw_bytes);
  const std::uint64_t head_piece_slot = head_cut.slot_bytes;

  // Per-pass memory. The widest matmul input is the one whose conversion to the dot type costs
  // the most (matmul() holds it for the call); the head's runs over the logit rows only.
  std::uint64_t matmul_per_row = 0;
  for (const auto& t : source.tensors()) {
    if (!names::is_block_name(t.name) || t.shape.size() != 2 || !cpu::is_weight_type(tensor_type(t))) continue;
    matmul_per_row = std::max(matmul_per_row, cpu::matmul_scratch_bytes(tensor_type(t), std::int64_t(t.shape[0]), 1));
  }
  const std::uint64_t embd_row_bytes = cpu::row_bytes(tensor_type(*embd), config.n_embd);
  const std::uint64_t head_row_bytes = cpu::row_bytes(tensor_type(head), config.n_embd);
  std::uint64_t embd_frame_raw = 0;
  for (const auto& f : extents[embd_extent].frames) embd_frame_raw = std::max<std::uint64_t>(embd_frame_raw, f.raw_bytes);
  const std::uint64_t vocab = std::uint64_t(config.n_vocab);
  const std::int64_t logit_rows = std::max<std::int64_t>(request.logit_rows, request.n_seq);
  auto pass_memory = [&](std::int64_t pass_tokens, bool head_resident, bool embed_on_demand) {
    PassMemory m;
    m.tokens = std::max<std::int64_t>(pass_tokens, request.n_seq);
    // x (the residual) + the block's buffers + a matmul input + the on-demand embedding row and
    // the ids that index it (3 x 4 B).
    m.per_token = std::uint64_t(config.n_embd) * sizeof(float) + Transformer::scratch_bytes(config, 1) + matmul_per_row +
                  embd_row_bytes + 3 * sizeof(std::int32_t) +
                  (p.experts_apart ? Transformer::expert_provider_scratch_bytes(config, 1) : 0);
    m.token_bytes = std::uint64_t(m.tokens) * m.per_token;
    if (p.block_piece_slot_bytes > 0) {  // a run of rows' products before they join the output (Transformer::project)
      m.piece_out_bytes = std::min(std::uint64_t(m.tokens) * std::uint64_t(piece_rows) * sizeof(float), Transformer::piece_out_bytes(m.tokens));
    }
    m.attention_threads = attention_threads(request);
    m.attention_bytes = std::uint64_t(m.attention_threads) * cpu::attention_scratch_bytes(request.n_ctx);
    m.logit_rows = logit_rows;
    m.n_vocab = config.n_vocab;
    const std::uint64_t rows = std::uint64_t(logit_rows);
    // A streamed head multiplies a piece's vocabulary rows first, then copies them into place.
    const std::uint64_t piece_rows = head_resident ? 0 : std::min(vocab, head_piece_raw / std::max<std::uint64_t>(head_row_bytes, 1) + 1);
    m.logits_bytes = rows * vocab * sizeof(float) + rows * piece_rows * sizeof(float) +
                     cpu::matmul_scratch_bytes(tensor_type(head), config.n_embd, logit_rows);
    m.sampling_bytes = std::uint64_t(request.n_seq) * vocab * kSamplerBytesPerVocabToken + vocab * kDrawBytesPerVocabToken;
    // The prompt's ids, and each sequence's history (prompt + generated) as the generator keeps it.
    m.prompt_bytes = std::uint64_t(request.n_ctx) * (kPromptTextBytesPerToken * kTokenizerBytesPerTextByte + sizeof(std::int32_t)) +
                     std::uint64_t(request.n_seq) * std::uint64_t(request.n_ctx) * sizeof(std::int32_t);
    m.embedding_frames_bytes = embed_on_demand ? kEmbeddingFramesHeld * embd_frame_raw : 0;
    return m;
  };

  // The configurations, cheapest to run first: resident KV before spilled, resident head before
  // streamed. For each, what it needs besides the pass.
  struct Config {
    bool spill;
    bool head_resident;
    std::uint64_t slot;
    std::uint64_t base;  // everything but the pass
    bool embed_on_demand;
  };
  std::vector<Config> configs;
  for (bool spill : {false, true}) {
    if (spill ? request.kv_spill == SpillMode::never : request.kv_spill == SpillMode::always) continue;
    for (bool head_resident : {true, false}) {
      Config c{spill, head_resident, head_resident ? block_slot : std::max(block_slot, head_piece_slot), 0, !(p.tied && head_resident)};
      c.base = request.reserved_bytes + p.small_bytes + p.overhead_bytes + (spill ? kv_spilled : p.kv_full_bytes) + (head_resident ? p.head_bytes : 0) +
               kMinSlots * c.slot + expert_transient;
      configs.push_back(c);
    }
  }
  auto need = [&](const Config& c, std::int64_t pass_tokens) {
    return c.base + pass_memory(pass_tokens, c.head_resident, c.embed_on_demand).total();
  };
  const Config* chosen = nullptr;
  std::int64_t pass_tokens = std::max<std::int64_t>(request.pass_tokens, 1);
  for (const Config& c : configs) {
    if (need(c, pass_tokens) <= request.budget) {
      chosen = &c;
      break;
    }
  }
  if (!chosen) {  // fewer tokens per pass, in the cheapest configuration that fits with one
    for (const Config& c : configs) {
      if (need(c, 1) > request.budget) continue;
      chosen = &c;
      const PassMemory one = pass_memory(1, c.head_resident, c.embed_on_demand);
      const auto fit = std::int64_t((request.budget - need(c, 1)) / one.per_token) + one.tokens;
      pass_tokens = std::max<std::int64_t>(1, std::min(pass_tokens, fit));
      break;
    }
  }
  const Config& least = *std::min_element(configs.begin(), configs.end(),
                                          [&](const Config& a, const Config& b) { return need(a, 1) < need(b, 1); });
  const std::uint64_t smallest = need(least, 1);
  if (!chosen) {
    const PassMemory one = pass_memory(1, least.head_resident, least.embed_on_demand);
    throw std::runtime_error(fmt::format(
        "memory budget {} is too small for {}: the minimum is {} ({}small tensors {} + KV cache {} + per-pass memory {} at "
        "1 token per pass + 2 ring slots of {} + {} overhead{}); raise --mem-budget, or lower -c / -np{}",
        format_bytes(request.budget), source.path(), format_bytes(smallest),
        request.reserved_bytes > 0 ? fmt::format("{} {} + ", request.reserved_for.empty() ? "set aside" : request.reserved_for,
                                                 format_bytes(request.reserved_bytes))
                                   : std::string(),
        format_bytes(p.small_bytes),
        format_bytes(least.spill ? kv_spilled : p.kv_full_bytes), format_bytes(one.total()), format_bytes(least.slot),
        format_bytes(p.overhead_bytes), least.spill ? ", KV spilled to disk" : "",
        request.kv_spill == SpillMode::never ? ", or allow --kv-spill" : ""));
  }
  p.minimum = smallest;
  p.kv_spilled = chosen->spill;
  p.head_resident = chosen->head_resident;
  p.slot_bytes = chosen->slot;
  p.pass_tokens = pass_tokens;
  p.pass = pass_memory(pass_tokens, chosen->head_resident, chosen->embed_on_demand);
  p.activation_bytes = p.pass.total();
  p.head_piece_slot_bytes = p.head_resident ? 0 : block_slot;
  p.kv_bytes = p.kv_spilled ? kv_spilled : p.kv_full_bytes;
  if (p.kv_spilled) {
    p.kv_spill_file_bytes = cache::spilled_kv_file_bytes(kv);
    if (request.kv_spill_free_bytes && *request.kv_spill_free_bytes < p.kv_spill_file_bytes) {
      p.kv_spill_disk_short = true;
      // The file holds n_ctx positions of every layer, sequence and plane: free space / (the
      // file's bytes per position) is how far every sequence can go before a write-back fails.
      p.kv_spill_positions_fit = std::int64_t(*request.kv_spill_free_bytes / (p.kv_spill_file_bytes / std::uint64_t(request.n_ctx)));
    }
  }
  p.embedding_resident = p.tied && p.head_resident;
  const std::uint64_t used = request.reserved_bytes + p.small_bytes + p.overhead_bytes + p.activation_bytes + p.kv_bytes + (p.head_resident ? p.head_bytes : 0) +
                             expert_transient;
  std::uint64_t left = request.budget - used;

  // Ring slots first (up to what was asked), then resident blocks, then the embedding.
  // Blocks in pieces: enough slots to keep the disk's queue full.
  const unsigned wanted = p.block_piece_slot_bytes > 0 ? std::max<unsigned>(request.wanted_slots, unsigned((kPiecedRingBytes + p.slot_bytes - 1) / p.slot_bytes))
                                                       : request.wanted_slots;
  p.slots = static_cast<unsigned>(std::min<std::uint64_t>(std::max(wanted, kMinSlots), left / p.slot_bytes));
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
  // A resident embedding no longer needs the frames that reading it on demand holds.
  if (!p.tied && p.embedding_bytes <= left + p.pass.embedding_frames_bytes) {
    p.embedding_resident = true;
    left += p.pass.embedding_frames_bytes;
    p.activation_bytes -= p.pass.embedding_frames_bytes;
    p.pass.embedding_frames_bytes = 0;
    left -= p.embedding_bytes;
  }
  for (std::int64_t il = 0; il < config.n_layer; ++il) {
    if (!std::binary_search(p.resident_blocks.begin(), p.resident_blocks.end(), il)) p.streamed_per_pass += block_disk[std::size_t(il)];
  }
  if (!p.head_resident) p.streamed_per_pass += head_cut.disk_bytes;
  if (p.experts_apart) {
    // Whole slots out of what is left, as many as fit (a layer never needs more than n_expert), as
    // evenly as whole slots allow: the same count per layer would leave up to n_layer - 1 slots
    // of the budget unused (2.3 GiB for Mixtral-8x7B under 8 GiB).
    const std::uint64_t fit = left / std::max<std::uint64_t>(p.expert_slot_bytes, 1);
    p.expert_layer_slots = expert_slots_by_layer(std::int64_t(std::min<std::uint64_t>(fit, std::uint64_t(config.n_layer * config.n_expert))),
                                                 config.n_layer, config.n_expert);
    p.expert_slots_total = 0;
    for (const std::int32_t s : p.expert_layer_slots) p.expert_slots_total += s;
    p.expert_slots_per_layer = p.expert_layer_slots.empty() ? 0 : *std::min_element(p.expert_layer_slots.begin(), p.expert_layer_slots.end());
    const std::uint64_t pool = p.expert_slot_bytes * std::uint64_t(p.expert_slots_total);
    left -= pool;
    p.expert_cache_bytes = pool + expert_transient;
    p.expert_hit_rate = cache::uniform_expert_hit_rate(p.expert_layer_slots, std::int32_t(config.n_expert));
    // A token picks n_expert_used experts per layer; each miss reads one slot's ranges. The hit
    // rate is the layers' mean, so this is the sum of each layer's expected misses.
    p.expert_bytes_per_token = std::uint64_t(double(config.n_expert_used * config.n_layer) * (1.0 - p.expert_hit_rate) *
                                             double(p.expert_slot_bytes));
  }
  p.total = request.budget - left;
  return p;
}

}  // namespace

MemoryPlan plan_memory(const ModelSource& source, const ModelConfig& config, const PlanRequest& request) {
  MemoryPlan p = plan_once(source, config, request);
  if (p.block_piece_slot_bytes > 0 && p.streams()) {
    // Pieces hold a little per pass (their products' buffer); where that is what keeps a model
    // that whole blocks would hold entirely in RAM from fitting, whole blocks it is.
    PlanRequest whole = request;
    whole.block_piece_bytes = 0;
    MemoryPlan q = plan_once(source, config, whole);
    if (!q.streams()) return q;
  }
  return p;
}

std::vector<std::int32_t> expert_slots_by_layer(std::int64_t total, std::int64_t n_layer, std::int64_t n_expert) {
  if (n_layer <= 0) return {};
  total = std::clamp<std::int64_t>(total, 0, n_layer * std::max<std::int64_t>(n_expert, 0));
  const std::int64_t base = total / n_layer, remainder = total % n_layer;
  // Spread rather than the first `remainder` layers: a pass waits on each layer's misses in turn,
  // so spreading keeps the reads it waits for (and the read-ahead that overlaps a layer's compute
  // with the next layer's experts) level along the pass instead of slow layers bunched together.
  std::vector<std::int32_t> slots(static_cast<std::size_t>(n_layer));
  for (std::int64_t l = 0; l < n_layer; ++l) {
    const bool extra = (l + 1) * remainder / n_layer > l * remainder / n_layer;
    slots[std::size_t(l)] = std::int32_t(base + (extra ? 1 : 0));
  }
  return slots;
}

void print_plan(const MemoryPlan& p, std::ostream& out) {
  Table table({"memory plan", "bytes", "note"});
  if (!p.source.empty()) table.add_row({"model source", format_bytes(p.source_bytes), p.source});
  if (p.request.reserved_bytes > 0) {
    table.add_row({p.request.reserved_for.empty() ? std::string("set aside") : p.request.reserved_for, format_bytes(p.request.reserved_bytes),
                   "resident, outside this model"});
  }
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
  table.add_row({"ring", format_bytes(p.ring_bytes),
                 p.slots ? fmt::format("{} slots x {}{}", p.slots, format_bytes(p.slot_bytes),
                                       p.block_piece_slot_bytes > 0 && p.resident_blocks.size() < std::size_t(p.blocks) ? " (blocks stream in pieces)" : "")
                         : "none: nothing streams"});
  if (p.experts_apart) {
    const std::int32_t most = p.expert_layer_slots.empty() ? p.expert_slots_per_layer
                                                           : *std::max_element(p.expert_layer_slots.begin(), p.expert_layer_slots.end());
    const std::string per_layer = most == p.expert_slots_per_layer ? fmt::format("{}", most) : fmt::format("{}-{}", p.expert_slots_per_layer, most);
    table.add_row({"expert cache", format_bytes(p.expert_cache_bytes),
                   fmt::format("{} slots per layer ({} in all) of {} experts x {} (+1 transient); hit rate {:.0f}% if routing is uniform",
                               per_layer, p.expert_slots_total, p.n_expert, format_bytes(p.expert_slot_bytes), 100.0 * p.expert_hit_rate)});
  }
  table.add_row({fmt::format("KV cache ({})", compute::to_string(p.request.kv_type)), format_bytes(p.kv_bytes),
                 p.kv_spilled ? fmt::format("spilled: {} on disk, 2 layers in RAM", format_bytes(p.kv_full_bytes))
                              : fmt::format("{} seq x {} ctx{}", p.request.n_seq, p.request.n_ctx,
                                            p.kv_ring_layers == 0 ? std::string()
                                                                  : fmt::format("; {} sliding-window layers keep {} rows",
                                                                                p.kv_ring_layers, p.kv_ring_rows))});
  if (p.kv_spilled) {
    const std::string dir = p.request.kv_spill_dir.empty() ? std::string("the spill directory") : p.request.kv_spill_dir;
    const std::string free = p.request.kv_spill_free_bytes ? format_bytes(*p.request.kv_spill_free_bytes) : std::string("unknown");
    table.add_row({"KV spill file", format_bytes(p.kv_spill_file_bytes),
                   fmt::format("{}in {} ({} free); sparse: fills as positions are written",
                               p.kv_spill_disk_short ? "WARNING (below): " : "", dir, free)});
  }
  const PassMemory& m = p.pass;
  const bool reduced = p.pass_tokens < p.request.pass_tokens;
  table.add_row({"activations", format_bytes(m.token_bytes),
                 fmt::format("{} tokens per pass x {}{}", m.tokens, format_bytes(m.per_token),
                             reduced ? fmt::format(" (reduced from {} to fit the budget)", p.request.pass_tokens) : "")});
  table.add_row({"attention scores", format_bytes(m.attention_bytes), fmt::format("{} threads x {} ctx", m.attention_threads, p.request.n_ctx)});
  table.add_row({"logits + sampling", format_bytes(m.logits_bytes + m.sampling_bytes), fmt::format("{} rows x {} vocab", m.logit_rows, m.n_vocab)});
  table.add_row({"prompt + tokenizer", format_bytes(m.prompt_bytes), fmt::format("a prompt of {} tokens", p.request.n_ctx)});
  if (m.embedding_frames_bytes > 0) table.add_row({"embedding frames", format_bytes(m.embedding_frames_bytes), "rows gathered on demand"});
  if (m.piece_out_bytes > 0) table.add_row({"piece products", format_bytes(m.piece_out_bytes), "blocks in pieces: a run of rows' outputs"});
  table.add_row({"overhead allowance", format_bytes(p.overhead_bytes), ""});
  table.add_row({"total", format_bytes(p.total), fmt::format("budget {}, minimum {}", format_bytes(p.request.budget), format_bytes(p.minimum))});
  table.add_row({"streamed per pass", format_bytes(p.streamed_per_pass),
                 fmt::format("{} of {} blocks{}{}", p.blocks - std::int64_t(p.resident_blocks.size()), p.blocks, p.head_resident ? "" : " + head",
                             p.experts_apart ? " (their dense tensors)" : "")});
  if (p.experts_apart) {
    table.add_row({"expert reads per token", format_bytes(p.expert_bytes_per_token), "expected, at the hit rate above"});
  }
  if (p.request.disk_gbps > 0) {
    table.add_row({"predicted s/pass", fmt::format("{:.3f}", p.predicted_seconds_per_pass()),
                   fmt::format("at {:.2f} GB/s", p.request.disk_gbps)});
  }
  table.print(out);
  if (p.kv_spill_disk_short) {
    out << fmt::format(
        "WARNING: the KV spill file needs {} at full context x sequences, and only {} is free in {}: the file is sparse "
        "and fills as positions are written, so a pass fails (no space left) once the sequences pass ~{} of {} positions "
        "each; free disk, lower -c / -np, or choose another --kv-spill-dir\n",
        format_bytes(p.kv_spill_file_bytes), format_bytes(*p.request.kv_spill_free_bytes),
        p.request.kv_spill_dir.empty() ? std::string("the spill directory") : p.request.kv_spill_dir, p.kv_spill_positions_fit,
        p.request.n_ctx);
  }
}

}  // namespace sluice
