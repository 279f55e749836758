// The memory of a pass is planned, and held, for any prompt length (DESIGN.md §5), on a synthetic
// model whose vocabulary the test writes itself (no ../shared, no PyPI model):
//  - the planner counts every per-pass allocation: its bytes grow by the same amount per token of
//    the pass, and that amount covers the buffers the forward pass keeps for a row;
//  - a budget too small for the pass asked for gets a smaller pass (said in the plan), and only
//    one too small for 1 token per pass is refused, naming the minimum;
//  - a long prompt handed over at once runs in passes of the plan's size, with the same logits as
//    one pass, and the process grows by no more than the plan's per-pass bytes while it runs;
//  - the session refuses a budget above what the machine (or cgroup) has and a negative context
//    before opening the model, warns when the context passes the model's trained one, and refuses
//    an in-RAM model's KV cache that the budget cannot hold.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstring>
#include <sstream>

#include "common/memory.hpp"
#include "common/units.hpp"
#include "compute/cpu/ops.hpp"
#include "engine/generate.hpp"
#include "engine/planner.hpp"
#include "engine/session.hpp"
#include "model/convert.hpp"
#include "model/gguf.hpp"
#include "model/metadata.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

constexpr std::int64_t kTrainedCtx = 512;

// AddressSanitizer's shadow memory and quarantine inflate RSS past any plan.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// A SentencePiece vocabulary of <unk>, <s>, </s> and the 256 byte tokens: enough for the
// tokenizer to build (the tests feed token ids).
void write_byte_vocab(const std::string& path) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<std::int32_t> types = {2, 3, 3};  // unknown, control, control
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);  // byte
  }
  std::vector<float> scores(tokens.size(), 0.0f);
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_float_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.write(path);
}

// A Llama-shaped model with a wide FFN (so a row of a pass is worth many KiB), as GGUF and pack.
struct SynthModel {
  sluice::testing::TempDir dir;
  std::string gguf = dir.file("m.gguf"), pack_path = dir.file("m.sluice");
  SynthModel() {
    write_byte_vocab(dir.file("vocab.gguf"));
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 3;
    synth.shape.n_ff = 2048;
    synth.shape.n_ctx = kTrainedCtx;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from = dir.file("vocab.gguf");
    write_synthetic_gguf(gguf, synth);
    pack::WriterOptions raw;
    raw.compress = pack::WriterOptions::Compress::none;
    convert_gguf_to_pack(gguf, pack_path, raw);
  }
};

SynthModel& model() {
  static SynthModel m;
  return m;
}

struct Planning {
  pack::Pack pack = pack::Pack::open(model().pack_path);
  ModelConfig config = config_from_metadata(*metadata_of(pack.metadata(), model().pack_path));
  MemoryPlan plan(std::uint64_t budget, std::int64_t pass_tokens, std::int64_t n_ctx = 2048) {
    PlanRequest r;
    r.budget = budget;
    r.n_ctx = n_ctx;
    r.pass_tokens = pass_tokens;
    return plan_memory(pack, config, r);
  }
};

TEST(PassMemory, PlannedBytesGrowWithThePassAndCoverEveryRowsBuffers) {
  Planning p;
  const MemoryPlan small = p.plan(1ull << 30, 16), big = p.plan(1ull << 30, 1024);
  ASSERT_EQ(small.pass_tokens, 16);
  ASSERT_EQ(big.pass_tokens, 1024);
  const std::uint64_t per_token = small.pass.per_token;
  EXPECT_EQ(big.activation_bytes - small.activation_bytes, (1024 - 16) * per_token);
  // A row of a pass holds its residual row, the block's buffers and its matmul input at least.
  const ModelConfig& c = p.config;
  EXPECT_GE(per_token, std::uint64_t(c.n_embd) * sizeof(float) + Transformer::scratch_bytes(c, 1) + std::uint64_t(c.n_ff));
  // Attention scores: a context's worth per thread, not a pass x context matrix.
  EXPECT_GE(big.pass.attention_bytes, 2048 * sizeof(float));
  EXPECT_EQ(big.pass.attention_bytes, small.pass.attention_bytes);
  EXPECT_GE(big.pass.logits_bytes, std::uint64_t(c.n_vocab) * sizeof(float));
  EXPECT_GT(big.pass.prompt_bytes, 2048 * sizeof(std::int32_t));
  EXPECT_EQ(big.activation_bytes, big.pass.total());
  EXPECT_LE(big.total, big.request.budget);
  std::ostringstream table;
  print_plan(big, table);
  EXPECT_NE(table.str().find("1024 tokens per pass"), std::string::npos) << table.str();
  EXPECT_EQ(table.str().find("reduced"), std::string::npos) << table.str();
}

// Attention scores are held per thread of the session's executor (compute/executor.hpp): the
// plan counts its concurrency, so `-t 1` plans one thread's scratch, whatever the machine has.
TEST(PassMemory, AttentionScratchIsCountedForTheExecutorsThreads) {
  Planning p;
  PlanRequest r;
  r.budget = 1ull << 30;
  r.n_ctx = 2048;
  for (int threads : {1, 3}) {
    r.compute_threads = threads;
    const MemoryPlan plan = plan_memory(p.pack, p.config, r);
    EXPECT_EQ(plan.pass.attention_threads, threads);
    EXPECT_EQ(plan.pass.attention_bytes, std::uint64_t(threads) * cpu::attention_scratch_bytes(2048));
  }
  SessionOptions o;
  o.model = model().pack_path;
  o.budget = 256 * MiB;
  o.n_ctx = 256;
  o.disk_gbps = 2.0;
  o.threads = 1;
  Session session(o);
  ASSERT_NE(session.plan(), nullptr);
  EXPECT_EQ(session.executor().concurrency(), 1);
  EXPECT_EQ(session.plan()->pass.attention_threads, 1);
}

TEST(PassMemory, TightBudgetGetsASmallerPassAndOnlyOneTokenTooManyIsRefused) {
  Planning p;
  const MemoryPlan roomy = p.plan(1ull << 30, 4096);
  const std::uint64_t minimum = roomy.minimum;
  // Room for about 100 tokens per pass above the minimum: 4096 do not fit, fewer do.
  const MemoryPlan tight = p.plan(minimum + 100 * roomy.pass.per_token, 4096);
  EXPECT_LT(tight.pass_tokens, 4096);
  EXPECT_GE(tight.pass_tokens, 1);
  EXPECT_LE(tight.total, tight.request.budget);
  std::ostringstream table;
  print_plan(tight, table);
  EXPECT_NE(table.str().find("reduced from 4096 to fit the budget"), std::string::npos) << table.str();

  const MemoryPlan least = p.plan(minimum, 4096);
  EXPECT_EQ(least.pass_tokens, 1);
  EXPECT_LE(least.total, minimum);
  try {
    p.plan(minimum - 1, 4096);
    FAIL() << "a budget below 1 token per pass was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("the minimum is " + format_bytes(minimum)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1 token per pass"), std::string::npos) << e.what();
  }
}

TEST(PassMemory, LongPromptRunsInPlannedPassesWithinThePlannedBytes) {
  SessionOptions o;
  o.model = model().pack_path;
  o.budget = 256 * MiB;
  o.n_ctx = 4096;
  o.pass_tokens = 64;
  o.stream = StreamMode::always;  // every block through the ring, as under a small budget
  o.disk_gbps = 2.0;
  Session session(o);
  ASSERT_EQ(session.pass_tokens(), 64);
  ASSERT_EQ(session.transformer().max_pass_tokens(), 64);
  const MemoryPlan& plan = *session.plan();
  const std::int64_t n_vocab = session.config().n_vocab;
  auto eval = [&](std::span<const std::int32_t> tokens, std::int64_t pos0, std::vector<float>& logits) {
    session.forward().forward(session.transformer(), single_sequence_batch(tokens, pos0, false), logits);
  };
  // Warm up (worker threads, the ring), then forget the position.
  std::vector<float> logits;
  const std::int32_t bos = 1;
  eval(std::span(&bos, 1), 0, logits);
  session.transformer().kv_cache().clear(0);

  std::vector<std::int32_t> prompt(3000);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = std::int32_t(3 + (i * 7) % std::size_t(n_vocab - 3));
  const bool measured = reset_peak_rss();
  const std::uint64_t rss_before = current_rss_bytes();
  const std::uint64_t passes_before = session.streamed()->stats().passes;
  std::vector<float> chunked;
  eval(prompt, 0, chunked);
  const std::uint64_t grown = peak_rss_bytes() > rss_before ? peak_rss_bytes() - rss_before : 0;
  EXPECT_EQ(session.streamed()->stats().passes - passes_before, (3000 + 63) / 64u);
  if (measured && !kAddressSanitizer) {
    EXPECT_LE(grown, plan.activation_bytes) << "peak RSS grew by " << format_bytes(grown) << " running a 3000-token prompt; "
                                            << "the plan holds " << format_bytes(plan.activation_bytes) << " for a pass";
  } else {
    std::cout << "note: peak RSS growth not checked (/proc/self/clear_refs not writable, or an ASan build)\n";
  }

  // One pass over the whole prompt gives the same bits.
  session.transformer().kv_cache().clear(0);
  session.transformer().set_max_pass_tokens(0);
  std::vector<float> whole;
  eval(prompt, 0, whole);
  ASSERT_EQ(chunked.size(), whole.size());
  EXPECT_EQ(std::memcmp(chunked.data(), whole.data(), chunked.size() * sizeof(float)), 0) << "chunked prompt logits differ";
}

TEST(PassMemory, SplitBatchesKeepEveryRowAndItsLogits) {
  auto in_ram = sluice::Model::open(model().gguf);
  const ModelConfig& c = in_ram->config();
  const auto n_vocab = std::size_t(c.n_vocab);
  cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, 64, 2, cpu::KvType::f16};
  Transformer whole(c, cache::make_resident_kv_cache(shape), cpu::Threading{});
  Transformer cut(c, cache::make_resident_kv_cache(shape), cpu::Threading{});
  cut.set_max_pass_tokens(3);
  InRamForward forward(*in_ram);
  Batch batch;
  const std::vector<std::int32_t> a = {1, 40, 41, 42, 43}, b = {1, 50, 51, 52};
  batch.add(0, 0, a, false);
  batch.add(1, 0, b, false);
  batch.logit_rows = {8, 2, 4, 0, 5};  // out of order, across both sequences
  std::vector<float> lw, lc;
  forward.forward(whole, batch, lw);
  forward.forward(cut, batch, lc);
  ASSERT_EQ(lw.size(), 5 * n_vocab);
  ASSERT_EQ(lc.size(), lw.size());
  EXPECT_EQ(std::memcmp(lw.data(), lc.data(), lw.size() * sizeof(float)), 0);

  std::vector<std::size_t> first;
  Batch sorted = batch;
  sorted.logit_rows = {0, 2, 4, 5, 8};
  const std::vector<Batch> pieces = split_batch(sorted, 3, &first);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[1].spans.size(), 2u);  // rows 3-4 of sequence 0, then row 0 of sequence 1
  EXPECT_EQ(pieces[1].spans[1].seq, 1);
  EXPECT_EQ(pieces[1].spans[1].pos0, 0);
  EXPECT_EQ(pieces[2].spans[0].pos0, 1);
  EXPECT_EQ(pieces[0].logit_rows, (std::vector<std::int64_t>{0, 2}));
  EXPECT_EQ(pieces[1].logit_rows, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(pieces[2].logit_rows, (std::vector<std::int64_t>{2}));
  EXPECT_EQ(first, (std::vector<std::size_t>{0, 2, 4}));
}

TEST(PassMemory, SessionRefusesImpossibleBudgetsAndContextsBeforeLoading) {
  SessionOptions o;
  o.model = "/nonexistent/model.sluice";  // never opened: the checks come first
  o.budget = available_memory_bytes() + current_rss_bytes() + 64 * GiB;
  try {
    Session s(o);
    FAIL() << "a budget above the available memory was accepted";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--mem-budget " + format_bytes(o.budget) + " is above"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("nonexistent"), std::string::npos) << msg;
  }
  o.budget = 0;
  o.n_ctx = -1;
  try {
    Session s(o);
    FAIL() << "-c -1 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("-c -1"), std::string::npos) << e.what();
  }
}

TEST(PassMemory, ContextAboveTheTrainedOneWarnsAndItsKvCacheIsBudgeted) {
  std::ostringstream log;
  SessionOptions o;
  o.model = model().pack_path;
  o.budget = 256 * MiB;
  o.n_ctx = 2 * kTrainedCtx;
  o.disk_gbps = 2.0;
  o.log = &log;
  {
    Session s(o);
    EXPECT_EQ(s.n_ctx(), 2 * kTrainedCtx);
  }
  const std::string text = log.str();
  const std::string warning = fmt::format("-c {} is above", 2 * kTrainedCtx);
  ASSERT_NE(text.find(warning), std::string::npos) << text;
  EXPECT_EQ(text.find(warning), text.rfind(warning)) << "warned more than once";
  EXPECT_NE(text.find(std::to_string(kTrainedCtx)), std::string::npos) << text;

  // A pack: the KV cache is in the plan, and a context whose cache cannot fit is refused.
  o.log = nullptr;
  o.n_ctx = 100'000'000;
  o.kv_spill = SpillMode::never;
  EXPECT_THROW(Session{o}, std::runtime_error);
  // A GGUF is planned as a pack is (streamed when it does not fit): its KV cache is held to the
  // budget by the planner, which names the cache and the budget.
  o.model = model().gguf;
  o.kv_spill = SpillMode::automatic;
  try {
    Session s(o);
    FAIL() << "a KV cache above the budget was allocated";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("KV cache"), std::string::npos) << msg;
    EXPECT_NE(msg.find(format_bytes(o.budget)), std::string::npos) << msg;
    EXPECT_NE(msg.find("lower -c"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace sluice
