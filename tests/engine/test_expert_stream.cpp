// Experts read one by one (issue 15): the ExpertProvider seam and the streamed ExpertStore.
//  - moe_ffn with a provider that hands experts over out of id order (those "in RAM" first) gives
//    the in-RAM logits bit for bit: route outputs are added in expert-id order whatever the order
//    of computation;
//  - a GGUF streamed with experts apart and a small expert cache gives the in-RAM logits bit for
//    bit (qwen3moe, Mixtral; a batch of sequences, prefill then decode) and reads fewer bytes per
//    token than streaming whole blocks;
//  - on a skewed router the cache hits more than on a uniform one;
//  - a failed expert read throws an Exception naming the file, tensor and expert; the next pass
//    reads it again and is right;
//  - the planner's expert cache uses the whole budget in whole slots, some layers one more than
//    others; the store (and a Session) keep each layer to its count, bit-identical to RAM.
#include <gtest/gtest.h>

#include <algorithm>
#include <fmt/format.h>
#include <optional>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/trace.hpp"
#include "engine/expert_provider.hpp"
#include "engine/expert_store.hpp"
#include "engine/forward.hpp"
#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "engine/planner.hpp"
#include "engine/session.hpp"
#include "engine/streamed_model.hpp"
#include "io/fault_backend.hpp"
#include "model/gguf_source.hpp"
#include "tests/engine/moe_models.hpp"
#include "tests/engine/moe_run.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

// In RAM, experts sliced from the mapped tensors, but handed over through the provider: odd ids
// are "not in RAM" until acquired, so moe_ffn computes the even ones first.
struct SlicingProvider final : ExpertProvider {
  const Model* model = nullptr;
  std::vector<std::int32_t> order;  // acquisitions, in order
  std::int64_t requests = 0;
  void request(std::int64_t, std::span<const std::int32_t> experts) override {
    ++requests;
    EXPECT_TRUE(std::is_sorted(experts.begin(), experts.end()));
  }
  bool ready(std::int64_t, std::int32_t e) override { return e % 2 == 0; }
  ExpertWeights acquire(std::int64_t il, std::int32_t e) override {
    order.push_back(e);
    const BlockWeights& w = model->blocks()[std::size_t(il)];
    return {expert_slice(w.gate_exps, e), expert_slice(w.up_exps, e), expert_slice(w.down_exps, e), nullptr};
  }
};

class ProvidedForward final : public Forward {
 public:
  ProvidedForward(const Model& model, ExpertProvider& provider) : model_(model), provider_(provider) {}
  const ModelConfig& config() const override { return model_.config(); }

 protected:
  void forward_pass(Transformer& t, const Batch& batch, float* logits) override {
    std::vector<float> x(std::size_t(batch.n_tokens() * model_.config().n_embd));
    t.embed(model_.globals().tok_embd, batch.tokens, x.data());
    for (std::int64_t il = 0; il < model_.config().n_layer; ++il) {
      BlockWeights w = model_.blocks()[std::size_t(il)];
      w.gate_exps = w.up_exps = w.down_exps = {};  // only the provider may supply them
      w.experts = &provider_;
      t.block(il, w, model_.globals(), x.data(), batch.spans);
    }
    t.head_rows(model_.globals(), x.data(), batch.logit_rows, logits);
  }

 private:
  const Model& model_;
  ExpertProvider& provider_;
};

class ExpertStream : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertStream, ProviderOutOfIdOrderIsBitIdenticalToSlicing) {
  sluice::testing::TempDir dir;
  write_synthetic_gguf(dir.file("m.gguf"), moe_options(GetParam(), GgmlType::Q4_0));
  auto model = Model::open(dir.file("m.gguf"));
  InRamForward in_ram(*model);
  SlicingProvider provider;
  provider.model = model.get();
  ProvidedForward provided(*model, provider);
  std::vector<std::int32_t> tokens;
  const PassLogits want = run_batch(in_ram, model->config(), 3, &tokens);
  const PassLogits got = run_batch(provided, model->config(), 3, &tokens);
  expect_same(want, got);
  EXPECT_EQ(provider.requests, 4 * model->config().n_layer);
  // Some layer acquired an even (ready) expert before a lower odd one: not id order.
  bool reordered = false;
  for (std::size_t i = 1; i < provider.order.size(); ++i) reordered |= provider.order[i] < provider.order[i - 1];
  EXPECT_TRUE(reordered);
}

std::unique_ptr<StreamedModel> open_streamed(const std::string& path, std::int32_t expert_slots, const io::FaultPlan* fault = nullptr,
                                             bool all_resident = false, bool guesses = true) {
  auto source = GgufSource::open(path, {}, /*experts_apart=*/expert_slots >= 0);
  StreamOptions o;
  o.prefetch.slots = 2;
  o.prefetch.verify = source->verified();
  o.read_ahead = false;  // count exactly what each pass reads
  o.expert_slots_per_layer = expert_slots;
  o.expert_guesses = guesses;
  o.fault = fault;
  if (all_resident) {
    const std::int64_t n_layer = source->checked_config().n_layer;
    for (std::int64_t il = 0; il < n_layer; ++il) o.resident_blocks.push_back(il);
  }
  return std::make_unique<StreamedModel>(std::move(source), o);
}

TEST_P(ExpertStream, StreamedExpertsWithASmallCacheAreBitIdenticalAndReadLess) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options(GetParam(), GgmlType::Q8_0));
  auto model = Model::open(path);
  InRamForward in_ram(*model);
  std::vector<std::int32_t> tokens;
  const int steps = 8;
  const PassLogits want = run_batch(in_ram, model->config(), steps, &tokens);

  auto whole = open_streamed(path, -1);
  const PassLogits whole_run = run_batch(*whole, model->config(), steps, &tokens);
  expect_same(want, whole_run);
  const std::uint64_t whole_bytes = whole->stats().bytes_streamed;

  for (std::int32_t slots : {1, 2}) {
    SCOPED_TRACE(slots);
    auto streamed = open_streamed(path, slots);
    ASSERT_NE(streamed->expert_store(), nullptr);
    EXPECT_LT(streamed->streamed_bytes_per_pass(), whole->streamed_bytes_per_pass()) << "the experts left the blocks' units";
    const PassLogits got = run_batch(*streamed, model->config(), steps, &tokens);
    expect_same(want, got);
    const StreamStats s = streamed->stats();
    EXPECT_GT(s.expert_reads, 0u);
    EXPECT_GT(s.expert_hits, 0u) << "decode steps find experts of earlier passes";
    // Time blocked on expert reads is waiting, not compute: nested in the pass's wall clock,
    // compute and the two waits never add up to more than it.
    const ExpertStoreStats es = streamed->expert_store()->stats();
    EXPECT_GT(es.io_busy.count(), 0) << "expert reads were in flight";
    EXPECT_EQ(s.expert_wait, es.wait);
    EXPECT_LE(s.expert_wait, s.wait);
    EXPECT_LE((s.compute_busy + s.wait).count(), s.wall.count());
    std::printf("%s, %d expert slots per layer: %llu passes, dense %llu + experts %llu bytes (%llu expert reads, hit rate %.2f) vs whole blocks %llu\n",
                GetParam().c_str(), slots, (unsigned long long)s.passes, (unsigned long long)s.bytes_streamed,
                (unsigned long long)s.expert_bytes, (unsigned long long)s.expert_reads, double(s.expert_hits) / double(s.expert_accesses),
                (unsigned long long)whole_bytes);
    EXPECT_LT(s.bytes_streamed + s.expert_bytes, whole_bytes)
        << "dense " << s.bytes_streamed << " + experts " << s.expert_bytes << " vs whole blocks " << whole_bytes;
  }
}

// Guesses (the next layer's router run early; its experts read while this layer computes) never
// change a result; with the blocks resident every layer but the first is guessed, and some of the
// guesses are the experts the layer then uses (the skewed router makes that near certain).
TEST_P(ExpertStream, GuessedExpertsChangeNothingAndSomeAreUsed) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options(GetParam(), GgmlType::Q8_0, 1.0f));
  auto model = Model::open(path);
  InRamForward in_ram(*model);
  std::vector<std::int32_t> tokens;
  const int steps = 8;
  const PassLogits want = run_batch(in_ram, model->config(), steps, &tokens);
  for (const bool guesses : {false, true}) {
    for (std::int32_t slots : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << "guesses " << guesses << ", slots " << slots);
      auto streamed = open_streamed(path, slots, nullptr, /*all_resident=*/true, guesses);
      expect_same(want, run_batch(*streamed, model->config(), steps, &tokens));
      const ExpertStoreStats s = streamed->expert_store()->stats();
      std::printf("%s, %d slots, guesses %s: %llu experts read, %llu guessed, %llu of them used, hit rate %.2f\n", GetParam().c_str(),
                  slots, guesses ? "on" : "off", (unsigned long long)s.expert_reads, (unsigned long long)s.guess_reads,
                  (unsigned long long)s.guess_used, s.cache.hit_rate());
      std::printf("  cache: hits %llu late %llu misses %llu evictions %llu fills %llu refused %llu transient %llu\n",
                  (unsigned long long)s.cache.hits, (unsigned long long)s.cache.late, (unsigned long long)s.cache.misses,
                  (unsigned long long)s.cache.evictions, (unsigned long long)s.cache.fills, (unsigned long long)s.cache.refused,
                  (unsigned long long)s.transient_reads);
      if (!guesses) {
        EXPECT_EQ(s.guess_reads, 0u);
        continue;
      }
      EXPECT_GT(s.guess_reads, 0u);
      EXPECT_GT(s.guess_used, 0u);
      EXPECT_LE(s.guess_used, s.guess_reads);
      EXPECT_EQ(streamed->stats().expert_guess_reads, s.guess_reads);
    }
  }
}

// The planner gives some layers one slot more than others: a store with a different count per
// layer (none in one of them, which then reads through the transient buffer) keeps each layer to
// its own count and gives the in-RAM logits.
TEST_P(ExpertStream, UnevenSlotsPerLayerAreBitIdentical) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options(GetParam(), GgmlType::Q8_0));
  auto model = Model::open(path);
  const ModelConfig& c = model->config();
  ASSERT_EQ(c.n_layer, 3);
  InRamForward in_ram(*model);
  std::vector<std::int32_t> tokens;
  const int steps = 8;
  const PassLogits want = run_batch(in_ram, c, steps, &tokens);
  const std::vector<std::int32_t> layer_slots = {1, 0, 2};
  auto source = GgufSource::open(path, {}, /*experts_apart=*/true);
  StreamOptions o;
  o.prefetch.slots = 2;
  o.prefetch.verify = source->verified();
  o.read_ahead = false;
  o.expert_slots_per_layer = 0;
  o.expert_layer_slots = layer_slots;
  StreamedModel streamed(std::move(source), o);
  const ExpertStore& store = *streamed.expert_store();
  for (std::int32_t l = 0; l < 3; ++l) EXPECT_EQ(store.slots(l), layer_slots[std::size_t(l)]) << "layer " << l;
  EXPECT_EQ(store.total_slots(), 3);
  expect_same(want, run_batch(streamed, c, steps, &tokens));
  const ExpertStoreStats s = store.stats();
  EXPECT_GT(s.cache.hits, 0u) << "decode steps find experts of earlier passes in layers 0 and 2";
  EXPECT_GT(s.transient_reads, 0u) << "layer 1 has no slot";
}

// A store given a count per layer for another number of layers refuses, naming the file.
TEST(ExpertStoreSlots, ACountPerLayerMustMatchTheLayers) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("qwen3moe", GgmlType::Q8_0));
  auto source = GgufSource::open(path, {}, /*experts_apart=*/true);
  ExpertStoreOptions o;
  o.layer_slots = {1, 2};
  try {
    ExpertStore store(*source, source->checked_config(), o);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("2 layers"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, ExpertStream, ::testing::Values("qwen3moe", "mixtral", "gpt-oss"),
                         [](const auto& info) { return moe_test_name(info.param); });

double hit_rate(float skew) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("qwen3moe", GgmlType::Q8_0, skew));
  auto streamed = open_streamed(path, 2);
  std::vector<std::int32_t> tokens;
  run_batch(*streamed, streamed->config(), 16, &tokens);
  const StreamStats s = streamed->stats();
  return double(s.expert_hits) / double(s.expert_accesses);
}

TEST(ExpertStreamCache, HitsMoreOnASkewedRouter) {
  const double uniform = hit_rate(0.0f), skewed = hit_rate(2.0f);
  std::printf("expert cache hit rate, 2 slots of 8: uniform router %.3f, skew 2 %.3f\n", uniform, skewed);
  EXPECT_GT(skewed, uniform);
  EXPECT_GT(skewed, cache::uniform_expert_hit_rate(2, 8)) << "uniform routing would hit 2/8";
}

// Requested experts that found no free slot start reading as soon as one frees (each acquire
// releases the expert computed before it), not at their own acquire: the next reads overlap the
// current expert's compute, and none goes through the transient buffer.
TEST(ExpertStorePipeline, ReadsWithoutASlotStartAsSlotsFree) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("qwen3moe", GgmlType::Q8_0));
  auto source = GgufSource::open(path, {}, /*experts_apart=*/true);
  ExpertStoreOptions o;
  o.slots_per_layer = 2;
  ExpertStore store(*source, source->checked_config(), o);
  const std::vector<std::int32_t> ids{0, 1, 2, 3};
  store.request(0, ids);
  EXPECT_EQ(store.stats().expert_reads, 2u) << "two slots: experts 0 and 1 read at once";
  { const ExpertWeights w = store.acquire(0, 0); }
  {
    const ExpertWeights w = store.acquire(0, 1);
    EXPECT_EQ(store.stats().expert_reads, 3u) << "expert 2 reads into expert 0's freed slot while expert 1 computes";
  }
  { const ExpertWeights w = store.acquire(0, 2); }
  { const ExpertWeights w = store.acquire(0, 3); }
  EXPECT_EQ(store.stats().expert_reads, 4u);
  EXPECT_EQ(store.stats().transient_reads, 0u);
}

// Each expert read is a span on the trace's io lane, named by layer and expert.
TEST(ExpertStreamTrace, ExpertReadsAreTraced) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("mixtral", GgmlType::Q8_0));
  TraceRecorder trace(true);
  StreamOptions o;
  o.prefetch.verify = false;
  o.prefetch.trace = &trace;
  o.expert_slots_per_layer = 1;
  StreamedModel streamed(GgufSource::open(path, {}, true), o);
  std::vector<std::int32_t> tokens;
  run_batch(streamed, streamed.config(), 1, &tokens);
  trace.write(dir.file("t.json"));
  std::ifstream in(dir.file("t.json"));
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"expert 0."), std::string::npos) << "no expert read span";
  EXPECT_GT(streamed.stats().expert_reads, 0u);
}

// The blocks resident, so that every read through the fault plan is an expert's: fail the N-th,
// for several N; each time the pass throws naming the expert, and the same pass run again on a
// fresh store state gives the in-RAM logits.
TEST(ExpertStreamFaults, AFailedExpertReadThrowsAndTheNextPassIsRight) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("qwen3moe", GgmlType::Q8_0));
  auto model = Model::open(path);
  InRamForward in_ram(*model);
  const ModelConfig& c = model->config();
  const std::vector<std::int32_t>& prompt = kFaultPrompt;
  const std::vector<float> want = in_ram_logits(*model, prompt);
  std::vector<float> got;
  for (std::uint64_t fail_op : {1, 2, 5, 13}) {
    SCOPED_TRACE(fail_op);
    io::FaultPlan plan;
    plan.fail_op = fail_op;
    auto streamed = open_streamed(path, 2, &plan, /*all_resident=*/true);
    Transformer t(c, 32, compute::Threading{});
    try {
      streamed->evaluate(t, prompt, 0, true, got);
      FAIL() << "no error";
    } catch (const Exception& e) {
      EXPECT_EQ(e.context().kind, ErrorKind::io) << e.what();
      EXPECT_EQ(e.context().file, path);
      EXPECT_NE(e.context().extent.find("_exps.weight"), std::string::npos) << e.what();
      EXPECT_GE(e.context().frame, 0) << "the expert";
      EXPECT_GE(e.context().offset, 0);
      EXPECT_NE(std::string(e.what()).find("expert"), std::string::npos) << e.what();
    }
    streamed->evaluate(t, prompt, 0, true, got);
    ASSERT_EQ(want.size(), got.size());
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
  }
}

// A small pass (2 sequences of 32 positions, 16 tokens per pass, 1 thread) with all the room it wants.
PlanRequest small_plan_request() {
  PlanRequest request;
  request.n_ctx = 32;
  request.n_seq = 2;
  request.pass_tokens = 16;
  request.compute_threads = 1;
  request.budget = std::uint64_t(1) << 40;
  return request;
}

// What Session gives the streamed model for `plan` (unverified, no read-ahead: exact counts).
StreamOptions stream_options_of(const MemoryPlan& plan) {
  StreamOptions o;
  o.prefetch.slots = std::max(plan.slots, 2u);
  o.prefetch.verify = false;
  o.read_ahead = false;
  o.resident_blocks = plan.resident_blocks;
  o.stream_head = !plan.head_resident;
  o.head_piece_slot_bytes = plan.head_piece_slot_bytes;
  o.embed_on_demand = !plan.embedding_resident;
  o.expert_slots_per_layer = plan.expert_slots_per_layer;
  o.expert_layer_slots = plan.expert_layer_slots;
  return o;
}

// The planner sizes the expert cache from what the dense decisions leave: few slots at the
// minimum budget, more as the budget grows, all n_expert at a budget with room for everything; the plan never exceeds the budget, the store
// holds what the plan counted, and every plan runs bit-identical to RAM.
TEST(ExpertStreamPlan, TheExpertCacheFitsTheBudgetAtSeveralBudgets) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("qwen3moe", GgmlType::Q8_0));
  auto model = Model::open(path);
  const ModelConfig& c = model->config();
  InRamForward in_ram(*model);
  std::vector<std::int32_t> tokens;
  const PassLogits want = run_batch(in_ram, c, 2, &tokens);

  auto planning = GgufSource::open(path, {}, /*experts_apart=*/true);
  PlanRequest request = small_plan_request();
  const MemoryPlan roomy = plan_memory(*planning, c, request);
  ASSERT_TRUE(roomy.experts_apart);
  EXPECT_EQ(roomy.expert_slots_per_layer, c.n_expert);
  const std::uint64_t slot_row = roomy.expert_slot_bytes * std::uint64_t(c.n_layer);
  std::int32_t last_slots = -1;
  for (const std::uint64_t budget : {roomy.minimum, roomy.minimum + slot_row, roomy.minimum + 3 * slot_row + 4096, roomy.total}) {
    SCOPED_TRACE(budget);
    request.budget = budget;
    const MemoryPlan plan = plan_memory(*planning, c, request);
    EXPECT_LE(plan.total, budget);
    EXPECT_GE(plan.expert_slots_per_layer, last_slots);
    last_slots = plan.expert_slots_per_layer;
    std::ostringstream table;
    print_plan(plan, table);
    EXPECT_NE(table.str().find("expert cache"), std::string::npos) << table.str();
    EXPECT_NE(table.str().find("expert reads per token"), std::string::npos) << table.str();

    StreamedModel streamed(GgufSource::open(path, {}, true), stream_options_of(plan));
    EXPECT_EQ(streamed.expert_store()->memory_bytes(), plan.expert_cache_bytes);
    EXPECT_EQ(streamed.expert_store()->slot_bytes(), plan.expert_slot_bytes);
    expect_same(want, run_batch(streamed, c, 2, &tokens));
  }
  EXPECT_EQ(last_slots, c.n_expert);
  request.budget = roomy.minimum;
  EXPECT_LT(plan_memory(*planning, c, request).expert_slots_per_layer, c.n_expert);
}

// A budget whose expert share is not a multiple of n_layer slots: the plan gives the whole
// slots that fit, floor(total / n_layer) to every layer and one more to `total % n_layer` of
// them, so less than one slot of the budget is left unused (a uniform count left up to n_layer - 1
// slots); the store built from the plan holds what it counted, and runs bit-identical to RAM.
TEST(ExpertStreamPlan, ARemainderGivesSomeLayersOneMoreSlot) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("mixtral", GgmlType::Q8_0));
  auto model = Model::open(path);
  const ModelConfig& c = model->config();
  InRamForward in_ram(*model);
  std::vector<std::int32_t> tokens;
  const PassLogits want = run_batch(in_ram, c, 2, &tokens);

  auto planning = GgufSource::open(path, {}, /*experts_apart=*/true);
  PlanRequest request = small_plan_request();
  const MemoryPlan roomy = plan_memory(*planning, c, request);
  ASSERT_TRUE(roomy.experts_apart);
  // Step the budget up one slot at a time from a row above the minimum until a plan has a remainder.
  std::optional<MemoryPlan> uneven;
  for (std::int64_t extra = 0; extra < 2 * c.n_layer && !uneven; ++extra) {
    request.budget = roomy.minimum + roomy.expert_slot_bytes * std::uint64_t(c.n_layer + extra);
    MemoryPlan plan = plan_memory(*planning, c, request);
    if (plan.expert_slots_total % c.n_layer != 0) uneven = std::move(plan);
  }
  ASSERT_TRUE(uneven.has_value()) << "no budget left a remainder";
  const MemoryPlan& plan = *uneven;
  SCOPED_TRACE(request.budget);
  ASSERT_EQ(plan.expert_layer_slots.size(), std::size_t(c.n_layer));
  const std::int64_t base = plan.expert_slots_total / c.n_layer, remainder = plan.expert_slots_total % c.n_layer;
  std::int64_t sum = 0, more = 0;
  for (const std::int32_t s : plan.expert_layer_slots) {
    sum += s;
    EXPECT_TRUE(s == base || s == base + 1) << s;
    more += s == base + 1;
  }
  EXPECT_EQ(sum, plan.expert_slots_total);
  EXPECT_EQ(more, remainder);
  EXPECT_EQ(plan.expert_slots_per_layer, base);
  // Within the budget, less than a slot of it unused, and more of it than `base` slots in every layer.
  EXPECT_LE(plan.total, request.budget);
  EXPECT_LT(request.budget - plan.total, plan.expert_slot_bytes);
  EXPECT_EQ(plan.expert_cache_bytes, plan.expert_slot_bytes * std::uint64_t(plan.expert_slots_total + 1));
  EXPECT_GT(plan.expert_cache_bytes, plan.expert_slot_bytes * std::uint64_t(base * c.n_layer + 1));
  EXPECT_NEAR(plan.expert_hit_rate, double(plan.expert_slots_total) / double(c.n_layer * c.n_expert), 1e-12) << "the layers' mean";
  std::ostringstream table;
  print_plan(plan, table);
  EXPECT_NE(table.str().find(fmt::format("{}-{} slots per layer ({} in all)", base, base + 1, plan.expert_slots_total)), std::string::npos)
      << table.str();

  StreamedModel streamed(GgufSource::open(path, {}, true), stream_options_of(plan));
  EXPECT_EQ(streamed.expert_store()->memory_bytes(), plan.expert_cache_bytes);
  for (std::int32_t l = 0; l < std::int32_t(c.n_layer); ++l) EXPECT_EQ(streamed.expert_store()->slots(l), plan.expert_layer_slots[std::size_t(l)]);
  expect_same(want, run_batch(streamed, c, 2, &tokens));
}

// The split itself: floor to every layer, the remainder spread along the layers, nothing over n_expert.
TEST(ExpertSlotsByLayer, SpreadsTheRemainderEvenly) {
  EXPECT_EQ(expert_slots_by_layer(7, 3, 8), (std::vector<std::int32_t>{2, 2, 3}));
  EXPECT_EQ(expert_slots_by_layer(6, 3, 8), (std::vector<std::int32_t>{2, 2, 2}));
  EXPECT_EQ(expert_slots_by_layer(100, 3, 8), (std::vector<std::int32_t>{8, 8, 8}));
  EXPECT_EQ(expert_slots_by_layer(0, 2, 8), (std::vector<std::int32_t>{0, 0}));
  // Mixtral-8x7B under 8 GiB: 57 slots over 32 layers, 25 layers with two, no two one-slot layers adjacent.
  const std::vector<std::int32_t> mixtral = expert_slots_by_layer(57, 32, 8);
  ASSERT_EQ(mixtral.size(), 32u);
  EXPECT_EQ(std::count(mixtral.begin(), mixtral.end(), 2), 25);
  EXPECT_EQ(std::count(mixtral.begin(), mixtral.end(), 1), 7);
  for (std::size_t l = 1; l < mixtral.size(); ++l) EXPECT_FALSE(mixtral[l] == 1 && mixtral[l - 1] == 1) << l;
}

// Session (engine/session.cpp) hands the plan's per-layer counts to the store: at a budget that
// leaves a remainder, each layer of the streamed model's store has the slots the plan gave it.
TEST(ExpertStreamPlan, ASessionCarriesThePlansCountPerLayerToTheStore) {
  sluice::testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synthetic_gguf(path, moe_options("mixtral", GgmlType::Q8_0));
  SessionOptions o;
  o.model = path;
  o.n_ctx = 32;
  o.pass_tokens = 16;
  o.slots = 2;
  o.disk_gbps = 2.0;  // no disk probe
  o.threads = 1;
  o.stream = StreamMode::always;
  o.experts = ExpertsMode::apart;
  o.budget = 256 * MiB;
  std::uint64_t minimum = 0, slot = 0;
  std::int64_t n_layer = 0;
  {
    const Session roomy(o);
    ASSERT_NE(roomy.plan(), nullptr);
    minimum = roomy.plan()->minimum;
    slot = roomy.plan()->expert_slot_bytes;
    n_layer = std::int64_t(roomy.plan()->expert_layer_slots.size());
  }
  ASSERT_GT(slot, 0u);
  // From the minimum, one slot at a time, until a plan leaves a remainder.
  bool checked = false;
  for (std::int64_t k = 0; k < 3 * n_layer && !checked; ++k) {
    const std::uint64_t budget = minimum + std::uint64_t(k) * slot;
    o.budget = budget;
    auto session = std::make_unique<Session>(o);
    const MemoryPlan& plan = *session->plan();
    ASSERT_TRUE(plan.experts_apart);
    if (plan.expert_slots_total % n_layer == 0) continue;
    SCOPED_TRACE(budget);
    const ExpertStore& store = *session->streamed()->expert_store();
    for (std::size_t l = 0; l < plan.expert_layer_slots.size(); ++l) {
      EXPECT_EQ(store.slots(std::int32_t(l)), plan.expert_layer_slots[l]) << "layer " << l;
    }
    EXPECT_EQ(store.total_slots(), plan.expert_slots_total);
    EXPECT_EQ(store.memory_bytes(), plan.expert_cache_bytes);
    checked = true;
  }
  EXPECT_TRUE(checked) << "no budget left a remainder";
}

}  // namespace
}  // namespace sluice
