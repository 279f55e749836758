#include "engine/session.hpp"
#include "model/tensor_check.hpp"

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
  if (o.n_ctx == 0) return config.n_ctx_train > 0 ? std::min(config.n_ctx_train, kDefaultCtxCap) : kDefaultCtxCap;
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
  if (plan.streams() || !plan.embedding_resident) return false;
  const std::uint64_t spare = plan.request.budget / 8;
  return plan.total + spare <= plan.request.budget;
}
}  // namespace

Session::Session(SessionOptions options) : options_(std::move(options)) {
  if (options_.n_ctx < 0 || options_.n_ctx > kMaxCtx) {
    throw std::invalid_argument(fmt::format("-c {}: the context must be positive (or 0: the model's) and at most {}",
                                            options_.n_ctx, kMaxCtx));
  }
  if (options_.pass_tokens < 0) {
    throw std::invalid_argument(fmt::format("--pass-tokens {}: must be positive", options_.pass_tokens));
  }
  if (options_.budget > 0) check_explicit_budget(options_.budget);
  // Made first: the planner counts per-thread scratch from its concurrency.
  executor_ = std::make_unique<compute::Executor>(options_.threads);
  const std::uint64_t budget = options_.budget > 0 ? options_.budget : default_memory_budget();
  // One source serves the planner and then the streamed model: the manifest (tens of MB with a
  // large vocabulary) or the GGUF's headers are parsed once.
  const bool pack = detect_model_format(options_.model) == ModelFormat::pack;
  std::unique_ptr<ModelSource> source;
  if (pack) {
    source = PackSource::open(options_.model, pack::PackOptions{options_.fault});
  } else {
    io::FileOptions file_options;
    file_options.fault = options_.fault;
    source = GgufSource::open(options_.model, file_options);
  }
  for (const auto& t : source->tensors()) weight_bytes_ += t.bytes;
  ModelConfig config = source->checked_config();  // tensors checked before the planner sizes anything from them
  PlanRequest request;
  request.budget = budget;
  request.n_ctx = context_of(options_, config);
  request.n_seq = options_.n_seq;
  request.pass_tokens = options_.pass_tokens;
  request.logit_rows = options_.logit_rows;
  request.kv_type = options_.kv_type;
  request.kv_spill = options_.kv_spill;
  request.wanted_slots = options_.slots;
  request.allow_resident_blocks = options_.stream != StreamMode::always;
  request.disk_gbps = options_.disk_gbps;
  request.compute_threads = executor_->concurrency();
  plan_ = plan_memory(*source, config, request);
  // A split GGUF always goes through GgufSource (resident or streamed as the plan says): the
  // in-RAM model maps one file.
  if (!pack && options_.stream != StreamMode::always && source->files().size() == 1 && fits_in_ram(*plan_)) {
    // The GGUF is memory-mapped whole, as before streaming from GGUF existed (see fits_in_ram).
    source.reset();
    plan_.reset();
    model_ = Model::open(options_.model);
    in_ram_ = std::make_unique<InRamForward>(*model_);
    forward_ = in_ram_.get();
    n_ctx_ = request.n_ctx;  // context_of warned once already
    pass_tokens_ = options_.pass_tokens;
  } else {
    n_ctx_ = request.n_ctx;
    pass_tokens_ = plan_->pass_tokens;
    if (options_.stream == StreamMode::never && plan_->resident_blocks.size() != std::size_t(config.n_layer)) {
      throw Exception(ErrorContext{ErrorKind::invalid, options_.model},
                      fmt::format("--stream off: the blocks of {} ({}) do not fit the {} budget with the rest; "
                                  "use --stream auto or raise --mem-budget",
                                  options_.model, format_bytes(weight_bytes_), format_bytes(budget)));
    }
    if (plan_->streams() && plan_->request.disk_gbps == 0) plan_->request.disk_gbps = measure_disk_gbps(options_.model);
    if (options_.log) print_plan(*plan_, *options_.log);
    StreamOptions so;
    so.prefetch.slots = std::max(plan_->slots, 2u);
    so.prefetch.trace = options_.trace;
    // A GGUF without its index sidecar has no checksums to check; the plan table says so.
    so.prefetch.verify = source->frames_checksummed();
    so.fault = options_.fault;
    so.resident_blocks = plan_->resident_blocks;
    so.stream_head = !plan_->head_resident;
    so.head_piece_slot_bytes = plan_->head_piece_slot_bytes;
    so.embed_on_demand = !plan_->embedding_resident;
    streamed_ = std::make_unique<StreamedModel>(std::move(source), so);
    forward_ = streamed_.get();
  }
  const ModelConfig& c = forward_->config();
  cache::KvShape shape;
  shape.n_layer = c.n_layer;
  shape.row_floats = c.n_head_kv * c.head_dim;
  shape.n_ctx = n_ctx_;
  shape.n_seq = options_.n_seq;
  shape.type = options_.kv_type;
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

void Session::print_stream_table(std::ostream& out, std::int64_t tokens) const {
  if (!streamed_) return;
  const StreamStats s = streamed_->stats();
  const double wall = std::chrono::duration<double>(s.wall).count();
  const double io = std::chrono::duration<double>(s.io_busy).count();
  const double compute = std::chrono::duration<double>(s.compute_busy).count();
  auto pct = [&](double part) { return wall > 0 ? fmt::format("{:.0f}%", 100.0 * part / wall) : std::string("-"); };
  Table table({"passes", "bytes read", "read GB/s", "io busy", "compute busy", "overlap", "s/pass", "tokens/s", "peak RSS"});
  table.add_row({fmt::format("{}", s.passes), format_bytes(s.bytes_streamed + s.embedding_bytes),
                 wall > 0 ? fmt::format("{:.2f}", double(s.bytes_streamed) / wall / 1e9) : "-", pct(io), pct(compute),
                 s.overlap() > 0 ? fmt::format("{:.3f}", s.overlap()) : "-",
                 s.passes ? fmt::format("{:.3f}", wall / double(s.passes)) : "-",
                 wall > 0 ? fmt::format("{:.2f}", double(tokens) / wall) : "-", format_bytes(peak_rss_bytes())});
  table.print(out);
  const cache::KvStats kv = transformer_->kv_cache().stats();
  if (transformer_->kv_cache().spilled()) {
    out << fmt::format("KV spill: {} written, {} read back, {:.2f} s waiting for reads\n", format_bytes(kv.bytes_written),
                       format_bytes(kv.bytes_read), kv.read_wait_seconds);
  }
}

}  // namespace sluice
