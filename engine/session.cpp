#include "engine/session.hpp"
#include "model/tensor_check.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fstream>
#include <stdexcept>

#include "common/memory.hpp"
#include "common/table.hpp"
#include "common/units.hpp"
#include "io/sequential.hpp"
#include "model/convert.hpp"
#include "model/gguf_source.hpp"
#include "model/model_format.hpp"
#include "model/pack_source.hpp"
#include "model/vocab_metadata.hpp"
#include "cache/kv_cache.hpp"
#include "engine/transformer.hpp"
#include "common/disk_space.hpp"
#include "common/error.hpp"

namespace sluice {
namespace {
// 4096 positions of fp16 K and V is what most prompts need and keeps big models' caches modest.
constexpr std::int64_t kDefaultCtxCap = 4096;
// The longest context accepted: past every model's trained length by far, and small enough that
// cache and plan sizes (positions x row bytes x layers) cannot overflow 64 bits.
constexpr std::int64_t kMaxCtx = std::int64_t{1} << 30;
// Enough to get past the first requests' latency and see the sustained rate.
constexpr std::uint64_t kDiskProbeBytes = 256 * MiB;

double measure_disk_gbps(const std::string& path) {
  io::BackendOptions io;
  auto read = io::read_file_sequential(path, io, 1u << 20, kDiskProbeBytes);
  return read ? read.value().gbps() : 0.0;
}
}  // namespace

std::uint64_t default_memory_budget() { return available_memory_bytes() / 10 * 8; }

namespace {
void check_explicit_budget(std::uint64_t budget) {
  // A budget the kernel will not grant ends in an OOM kill with no word from us: say so first.
  if (const std::uint64_t limit = cgroup_memory_limit_bytes(); limit > 0 && budget > limit) {
    throw Exception(
        ErrorContext{ErrorKind::invalid},
        fmt::format(
            "--mem-budget {} is above this process's memory cgroup limit of {}: it would be OOM-killed before reaching the "
            "budget; lower --mem-budget to at most {} (or leave it out: the default is 80% of what is available)",
            format_bytes(budget), format_bytes(limit), format_bytes(limit)));
  }
  // Available memory leaves out what this process already holds; the budget counts it.
  const std::uint64_t available = available_memory_bytes(), held = current_rss_bytes();
  if (available > 0 && budget > available + held) {
    throw Exception(
        ErrorContext{ErrorKind::invalid},
        fmt::format("--mem-budget {} is above the memory available to this process ({}: MemAvailable{}, plus the {} it holds); "
                    "lower --mem-budget (or leave it out: the default is 80% of what is available)",
                    format_bytes(budget), format_bytes(available + held),
                    cgroup_memory_limit_bytes() > 0 ? " within its cgroup's limit" : "", format_bytes(held)));
  }
}

// The context asked for: 0 means the model's, capped; negative is an error; past the model's
// trained length is allowed (RoPE extrapolates, badly) with a warning.
std::int64_t context_of(const SessionOptions& o, const ModelConfig& config) {
  if (o.n_ctx == 0) {
    const std::int64_t cap = config.n_ctx_train > 0 ? std::min(config.n_ctx_train, kDefaultCtxCap) : kDefaultCtxCap;
    if (o.ctx_needed <= 0) return cap;
    constexpr std::int64_t kStep = 256;
    return std::min(cap, (o.ctx_needed + kStep - 1) / kStep * kStep);
  }
  if (o.n_ctx > config.n_ctx_train && config.n_ctx_train > 0 && o.log) {
    *o.log << fmt::format("warning: -c {} is above {}'s trained context of {}; positions past it are untested\n", o.n_ctx,
                          o.model, config.n_ctx_train);
  }
  return o.n_ctx;
}

// Whether a GGUF runs memory-mapped in RAM (today's path) instead of streaming through
// GgufSource. Only when the plan holds every weight resident (no block, no head piece streams,
// the embedding resident) with room to spare: a mapping is paged by the kernel, not by the
// planner: the kernel reads ahead around what is touched, maps the header and vocabulary the
// plan does not count, and under a memory cgroup those page-cache pages count against the
// limit. A model that only just fits is streamed instead, where every byte held is one the plan
// counted and the budget holds by construction. The spare room is an eighth of the budget.
bool fits_in_ram(const MemoryPlan& plan) {
  // A plan with the experts apart holds only the cache's share of them, however much is spare.
  if (plan.streams() || plan.experts_apart || !plan.embedding_resident) return false;
  const std::uint64_t spare = plan.request.budget / 8;
  return plan.total + spare <= plan.request.budget;
}
}  // namespace

namespace {
// The model opened (header and tensor table: no weight read) and planned, as Session and
// plan_session both do it.
struct OpenedPlan {
  std::unique_ptr<ModelSource> source;
  ModelConfig config;
  MemoryPlan plan;
  bool pack = false;
  std::uint64_t weight_bytes = 0;
  std::string experts_note;  // SessionPlan::experts_note
  std::string context_note;  // SessionPlan::context_note
};

void check_options(const SessionOptions& o) {
  if (o.n_ctx < 0 || o.n_ctx > kMaxCtx) {
    throw std::invalid_argument(fmt::format("-c {}: the context must be positive (or 0: the model's) and at most {}", o.n_ctx, kMaxCtx));
  }
  if (o.pass_tokens < 0) throw std::invalid_argument(fmt::format("--pass-tokens {}: must be positive", o.pass_tokens));
  if (o.budget > 0) check_explicit_budget(o.budget);
}

PlanRequest plan_request(const SessionOptions& o, const ModelConfig& config, int compute_threads) {
  PlanRequest request;
  request.budget = o.budget > 0 ? o.budget : default_memory_budget();
  request.n_ctx = context_of(o, config);
  request.n_seq = o.n_seq;
  request.pass_tokens = o.pass_tokens;
  request.logit_rows = o.logit_rows;
  request.kv_type = o.kv_type;
  request.kv_spill = o.kv_spill;
  request.wanted_slots = o.slots;
  request.block_piece_bytes = o.block_piece_bytes;
  request.allow_resident_blocks = o.stream != StreamMode::always;
  request.disk_gbps = o.disk_gbps;
  request.compute_threads = compute_threads;
  request.kv_spill_dir = o.kv_spill_dir;
  request.kv_spill_free_bytes = free_disk_bytes(o.kv_spill_dir);
  request.reserved_bytes = o.reserved_bytes;
  request.reserved_for = o.reserved_for;
  return request;
}

bool runs_in_ram(const SessionOptions& o, const OpenedPlan& r);

// Opens `o.model` (header and tensor table only) and plans it. A mixture-of-experts GGUF that
// streams is opened again with its experts apart (blk.N.exps units, read one by one as routed)
// and planned with an expert cache, unless --experts whole or --stream off. Whether it streams is
// the whole-block plan's answer (not in RAM and some bytes read per pass); a whole-block plan the budget cannot hold may still be possible
// with experts apart (their cache is what is left), so that refusal falls through to it.
OpenedPlan open_and_plan_blocks(const SessionOptions& o, int compute_threads) {
  OpenedPlan r;
  // One source serves the planner and then the streamed model: the manifest (tens of MB with a
  // large vocabulary) or the GGUF's headers are parsed once (twice for a streamed MoE GGUF).
  r.source = open_model_source(o.model, o.fault);
  r.pack = dynamic_cast<const PackSource*>(r.source.get()) != nullptr;
  for (const auto& t : r.source->tensors()) r.weight_bytes += t.bytes;
  r.config = r.source->checked_config();  // tensors checked before the planner sizes anything from them
  const PlanRequest request = plan_request(o, r.config, compute_threads);
  const bool moe = r.config.is_moe();
  if (r.pack && moe && o.experts == ExpertsMode::whole &&
      std::any_of(r.source->units().begin(), r.source->units().end(), [](const ReadUnit& u) { return u.expert_bytes != 0; })) {
    throw Exception(ErrorContext{ErrorKind::invalid, o.model},
                    fmt::format("--experts whole: {} lays its experts apart (expert extents); use --experts auto or apart, or convert the "
                                "GGUF again with --experts whole",
                                o.model));
  }
  if (!moe || o.experts == ExpertsMode::whole) {
    r.plan = plan_memory(*r.source, r.config, request);
    return r;
  }
  if (r.pack) {
    // A pack holds its experts one way, chosen at convert time: apart (expert extents, read one by
    // one, as a GGUF opened with experts apart is) or with their blocks.
    const auto& units = r.source->units();
    const bool apart = std::any_of(units.begin(), units.end(), [](const ReadUnit& u) { return u.expert_bytes != 0; });
    if (!apart) r.experts_note = "experts: this pack streams each block with all its experts (convert it again with --experts apart to read them one by one)";
    r.plan = plan_memory(*r.source, r.config, request);
    return r;
  }
  if (o.stream == StreamMode::never) {  // every block resident, experts with it: nothing to read one by one
    r.plan = plan_memory(*r.source, r.config, request);
    return r;
  }
  if (o.experts == ExpertsMode::automatic && o.stream != StreamMode::always) {
    try {
      r.plan = plan_memory(*r.source, r.config, request);
      // Memory-mapped, or every weight resident after loading: nothing streams, experts or not.
      if (runs_in_ram(o, r) || !r.plan.streams()) return r;
    } catch (const std::exception&) {
      // Refused with whole blocks: planned again below with the experts apart.
    }
  }
  io::FileOptions file_options;
  file_options.fault = o.fault;
  r.source = GgufSource::open(o.model, file_options, /*experts_apart=*/true);
  r.plan = plan_memory(*r.source, r.config, request);
  return r;
}

// When blocks stream, the smaller contexts (halving down to 256) whose KV would leave room for
// more resident blocks: a context larger than the run needs costs blocks read every pass, which
// is the plan's largest cost on a small budget. "" when nothing streams or no smaller context helps.
std::string smaller_context_note(const ModelSource& source, const ModelConfig& config, const MemoryPlan& plan) {
  if (!plan.streams() || plan.experts_apart || plan.blocks == 0) return "";
  const std::size_t held = plan.resident_blocks.size();
  std::string gains;
  for (std::int64_t ctx = plan.request.n_ctx / 2; ctx >= 256; ctx /= 2) {
    PlanRequest smaller = plan.request;
    smaller.n_ctx = ctx;
    try {
      const std::size_t more = plan_memory(source, config, smaller).resident_blocks.size();
      if (more > held) gains += fmt::format("{}-c {}: {}", gains.empty() ? "" : ", ", ctx, more);
    } catch (const std::exception&) {
      break;  // the planner refuses a smaller context only where it refuses the larger one
    }
  }
  if (gains.empty()) return "";
  return fmt::format("context: {} of {} blocks are resident at -c {}; a smaller context keeps more ({} of {})", held, plan.blocks,
                     plan.request.n_ctx, gains, plan.blocks);
}

OpenedPlan open_and_plan(const SessionOptions& o, int compute_threads) {
  OpenedPlan r = open_and_plan_blocks(o, compute_threads);
  r.context_note = smaller_context_note(*r.source, r.config, r.plan);
  return r;
}

// A split GGUF always goes through GgufSource (resident or streamed as the plan says): the
// in-RAM model maps one file.
bool runs_in_ram(const SessionOptions& o, const OpenedPlan& r) {
  if (o.experts == ExpertsMode::apart && o.stream != StreamMode::never && r.config.is_moe()) return false;  // --experts apart streams
  return !r.pack && o.stream != StreamMode::always && r.source->files().size() == 1 && fits_in_ram(r.plan);
}

// --stream off refuses a plan that streams any block.
void check_stream_off(const SessionOptions& o, const MemoryPlan& plan, std::uint64_t weight_bytes) {
  if (o.stream == StreamMode::never && plan.resident_blocks.size() != std::size_t(plan.blocks)) {
    throw Exception(ErrorContext{ErrorKind::invalid, o.model},
                    fmt::format("--stream off: the blocks of {} ({}) do not fit the {} budget with the rest; "
                                "use --stream auto or raise --mem-budget",
                                o.model, format_bytes(weight_bytes), format_bytes(plan.request.budget)));
  }
}
}  // namespace

SessionPlan plan_session(const SessionOptions& options) {
  check_options(options);
  const compute::Executor executor(options.threads);  // the planner counts per-thread scratch from its concurrency
  OpenedPlan r = open_and_plan(options, executor.concurrency());
  SessionPlan out;
  out.in_ram = runs_in_ram(options, r);
  if (!out.in_ram) check_stream_off(options, r.plan, r.weight_bytes);
  out.weight_bytes = r.weight_bytes;
  out.experts_note = std::move(r.experts_note);
  out.context_note = std::move(r.context_note);
  out.plan = std::move(r.plan);
  return out;
}

Session::Session(SessionOptions options) : options_(std::move(options)) {
  check_options(options_);
  // Made first: the planner counts per-thread scratch from its concurrency.
  executor_ = std::make_unique<compute::Executor>(options_.threads);
  OpenedPlan opened = open_and_plan(options_, executor_->concurrency());
  const std::uint64_t budget = opened.plan.request.budget;
  const bool in_ram = runs_in_ram(options_, opened);  // before the source moves out
  std::unique_ptr<ModelSource> source = std::move(opened.source);
  weight_bytes_ = opened.weight_bytes;
  plan_ = std::move(opened.plan);
  const std::int64_t planned_ctx = plan_->request.n_ctx;
  if (in_ram) {
    // The GGUF is memory-mapped whole, as before streaming from GGUF existed (see fits_in_ram).
    source.reset();
    plan_.reset();
    model_ = Model::open(options_.model);
    in_ram_ = std::make_unique<InRamForward>(*model_);
    forward_ = in_ram_.get();
    n_ctx_ = planned_ctx;  // context_of warned once already
    pass_tokens_ = options_.pass_tokens;
  } else {
    n_ctx_ = planned_ctx;
    pass_tokens_ = plan_->pass_tokens;
    check_stream_off(options_, *plan_, weight_bytes_);
    if (plan_->streams() && plan_->request.disk_gbps == 0) plan_->request.disk_gbps = measure_disk_gbps(options_.model);
    if (options_.log) {
      print_plan(*plan_, *options_.log);
      if (!opened.experts_note.empty()) *options_.log << opened.experts_note << "\n";
      if (!opened.context_note.empty()) *options_.log << opened.context_note << "\n";
    }
    StreamOptions so;
    so.prefetch.slots = std::max(plan_->slots, 2u);
    so.prefetch.trace = options_.trace;
    // A GGUF without its index sidecar has no checksums to check; the plan table says so.
    so.prefetch.verify = source->frames_checksummed();
    so.fault = options_.fault;
    so.resident_blocks = plan_->resident_blocks;
    so.stream_head = !plan_->head_resident;
    so.head_piece_slot_bytes = plan_->head_piece_slot_bytes;
    so.block_piece_slot_bytes = plan_->block_piece_slot_bytes;
    so.embed_on_demand = !plan_->embedding_resident;
    so.expert_slots_per_layer = plan_->experts_apart ? plan_->expert_slots_per_layer : -1;
    if (plan_->experts_apart) so.expert_layer_slots = plan_->expert_layer_slots;
    so.expert_guesses = options_.expert_guesses;
    streamed_ = std::make_unique<StreamedModel>(std::move(source), so);
    forward_ = streamed_.get();
  }
  const ModelConfig& c = forward_->config();
  const cache::KvShape shape = kv_shape(c, n_ctx_, options_.n_seq, options_.kv_type);
  // In RAM (a GGUF that fits) the plan was dropped: the KV cache follows --kv-spill alone.
  const bool spill = plan_ ? plan_->kv_spilled : options_.kv_spill == SpillMode::always;
  if (!plan_) {
    // In RAM the weights are mapped (the kernel pages them as it likes), but the KV cache is
    // ours: refuse one the budget cannot hold instead of allocating it.
    const std::uint64_t kv_bytes = spill ? cache::spilled_kv_memory_bytes(shape) : shape.total_bytes();
    if (kv_bytes > budget) {
      throw Exception(ErrorContext{ErrorKind::invalid},
                      fmt::format("the KV cache for -c {} x {} sequences needs {}, more than the {} memory budget; "
                                  "lower -c / -np{}",
                                  n_ctx_, shape.n_seq, format_bytes(kv_bytes), format_bytes(budget),
                                  spill ? "" : ", or use --kv-type q8_0 / --kv-spill on"));
    }
  }
  auto kv = spill ? cache::make_spilled_kv_cache(shape, options_.kv_spill_dir, cache::KvSpillOptions{options_.fault})
                  : cache::make_resident_kv_cache(shape);
  backend_ = compute::make_cpu_backend(*executor_);
  transformer_ = std::make_unique<Transformer>(c, std::move(kv), *backend_);
  // Every pass carries at most the plan's tokens (and one per sequence, however few that allows).
  if (pass_tokens_ > 0) transformer_->set_max_pass_tokens(std::max<std::int64_t>(pass_tokens_, options_.n_seq));
  tokenizer_ = std::make_unique<tok::Tokenizer>(vocab_from_metadata(metadata()));
  // The tokenizer holds its own tables now; the manifest's copies of the vocabulary arrays are
  // the largest thing left in it (262k strings for Gemma 3).
  if (streamed_) streamed_->release_vocabulary_metadata();
}

Session::~Session() = default;

const Metadata& Session::metadata() const { return streamed_ ? streamed_->metadata() : model_->metadata(); }

std::string Session::describe() const {
  if (!streamed_) return fmt::format("in RAM ({})", model_->is_pack() ? "pack" : "gguf, memory-mapped");
  return fmt::format("{}, {} of {} blocks resident, {} streamed per pass", streamed_->source().describe(),
                     streamed_->resident_block_count(), config().n_layer, format_bytes(streamed_->streamed_bytes_per_pass()));
}

std::string stream_cpu_line(const StreamStats& s) {
  const double passes = double(std::max<std::uint64_t>(s.passes, 1));
  auto ms = [&](std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count() / passes; };
  return fmt::format(
      "CPU per pass: {:.1f} ms (process, all threads) over {:.1f} ms of wall | pass thread: compute {:.1f} ms, waiting {:.1f} ms | "
      "prefetch workers: verify {:.1f} ms, decompress {:.1f} ms, copy {:.1f} ms",
      1e3 * s.cpu_seconds / passes, ms(s.wall), ms(s.compute_busy), ms(s.wait), ms(s.verify_busy), ms(s.decode_busy), ms(s.copy_busy));
}

void Session::print_stream_table(std::ostream& out, std::int64_t tokens) const {
  if (!streamed_) return;
  const StreamStats s = streamed_->stats();
  const double wall = std::chrono::duration<double>(s.wall).count();
  const double io = std::chrono::duration<double>(s.io_busy).count();
  const double compute = std::chrono::duration<double>(s.compute_busy).count();
  auto pct = [&](double part) { return wall > 0 ? fmt::format("{:.0f}%", 100.0 * part / wall) : std::string("-"); };
  Table table({"passes", "bytes read", "read GB/s", "io busy", "compute busy", "overlap", "s/pass", "prompt+gen tok/s", "peak RSS"});
  table.add_row({fmt::format("{}", s.passes), format_bytes(s.bytes_streamed + s.embedding_bytes + s.expert_bytes),
                 wall > 0 ? fmt::format("{:.2f}", double(s.bytes_streamed + s.expert_bytes) / wall / 1e9) : "-", pct(io), pct(compute),
                 s.overlap() > 0 ? fmt::format("{:.3f}", s.overlap()) : "-",
                 s.passes ? fmt::format("{:.3f}", wall / double(s.passes)) : "-",
                 wall > 0 ? fmt::format("{:.2f}", double(tokens) / wall) : "-", format_bytes(peak_rss_bytes())});
  table.print(out);
  if (s.passes > 0) out << stream_cpu_line(s) << "\n";
  if (s.expert_accesses > 0) {  // experts read one by one (engine/expert_store.hpp)
    out << fmt::format("experts: hit rate {:.1f}% of {} uses, {} read ({}), {} per token; {:.2f} s waiting for them, {:.2f} s verifying; {} guessed ahead, {} of them used\n",
                       100.0 * double(s.expert_hits) / double(s.expert_accesses), s.expert_accesses, s.expert_reads,
                       format_bytes(s.expert_bytes), tokens > 0 ? format_bytes(s.expert_bytes / std::uint64_t(tokens)) : std::string("-"),
                       std::chrono::duration<double>(s.expert_wait).count(), std::chrono::duration<double>(s.expert_verify).count(), s.expert_guess_reads, s.expert_guess_used);
  }
  const cache::KvStats kv = transformer_->kv_cache().stats();
  if (transformer_->kv_cache().spilled()) {
    out << fmt::format("KV spill: {} written, {} read back, {:.2f} s waiting for reads\n", format_bytes(kv.bytes_written),
                       format_bytes(kv.bytes_read), kv.read_wait_seconds);
  }
}

}  // namespace sluice
