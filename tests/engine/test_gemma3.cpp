// Gemma 3 in the engine (llama.cpp parity itself lives in tests/parity): the architecture config
// read from a synthetic GGUF (sliding-window pattern, RoPE bases, attention and embedding
// scales), batch invariance with layers whose window is shorter than the prompt, and a pack whose
// tied head streams in pieces that split rows (bit-identical logits to the GGUF in RAM).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/ops.hpp"
#include "engine/generate.hpp"
#include "engine/sampling.hpp"
#include "engine/streamed_model.hpp"
#include "model/convert.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/streamed_parity.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

constexpr std::int64_t kWindow = 8;  // shorter than the prompts below, so the window matters

SynthOptions gemma_options(GgmlType type, std::int64_t swa_pattern = -1) {
  SynthOptions o;
  o.arch = "gemma3";
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 6;
  o.shape.n_head = 8;
  o.shape.n_head_kv = 2;
  o.head_dim = 64;  // q width 512, unlike n_embd 256
  o.sliding_window = kWindow;
  o.swa_pattern = swa_pattern;
  o.type = type;
  o.embedding_type = GgmlType::Q8_0;
  o.vocab_from.clear();  // the built-in vocabulary: no ../shared needed
  return o;
}

std::vector<std::int32_t> prompt_of(std::int32_t n, std::int32_t salt) {
  std::vector<std::int32_t> ids = {1};
  for (std::int32_t i = 1; i < n; ++i) ids.push_back(3 + (i * 37 + salt * 101) % 500);
  return ids;
}

// GeGLU as ggml's CPU backend computes it: GELU read from an fp16 table (input and output rounded
// to fp16) inside (-10, 10), exact outside.
TEST(Gemma3Ops, GegluRoundsThroughFp16LikeGgml) {
  const std::vector<float> gate = {-12.0f, -10.0f, -3.3f, -0.001f, 0.0f, 0.1234567f, 1.0f, 2.71828f, 9.999f, 10.0f, 40.0f};
  std::vector<float> up(gate.size()), out(gate.size());
  for (std::size_t i = 0; i < up.size(); ++i) up[i] = 0.5f + 0.25f * float(i);
  cpu::geglu(gate.data(), up.data(), out.data(), std::int64_t(gate.size()));
  for (std::size_t i = 0; i < gate.size(); ++i) {
    float want;
    if (gate[i] <= -10.0f) {
      want = 0.0f;
    } else if (gate[i] >= 10.0f) {
      want = gate[i] * up[i];
    } else {
      const float x16 = cpu::fp16_to_fp32(cpu::fp32_to_fp16(gate[i]));
      want = cpu::fp16_to_fp32(cpu::fp32_to_fp16(cpu::gelu_tanh(x16))) * up[i];
    }
    EXPECT_EQ(out[i], want) << "gate " << gate[i];
    if (gate[i] > -10.0f && gate[i] < 10.0f) {  // and within fp16 rounding of the exact GELU
      EXPECT_NEAR(out[i], cpu::gelu_tanh(gate[i]) * up[i], 2e-3 * up[i] * (1 + std::fabs(gate[i])));
    }
  }
}

TEST(Gemma3Config, ReadsPatternRopeAndScales) {
  sluice::testing::TempDir dir;
  {
    SynthOptions o = gemma_options(GgmlType::F32);
    o.final_softcap = 30.0f;
    write_synthetic_gguf(dir.file("mixed.gguf"), o);
    const ModelConfig c = Model::open(dir.file("mixed.gguf"))->config();
    EXPECT_EQ(c.arch, Arch::gemma3);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.sliding_window, kWindow);
    for (std::int64_t il = 0; il < 6; ++il) EXPECT_EQ(c.is_local_layer(il), il != 5) << "layer " << il;  // pattern 6
    EXPECT_FLOAT_EQ(c.rope_base_local, 10000.0f);
    EXPECT_FLOAT_EQ(c.rope_base, 1000000.0f);
    EXPECT_FLOAT_EQ(c.attention_scale, 0.125f);   // 1 / sqrt(key length 64)
    EXPECT_FLOAT_EQ(c.embedding_scale, 16.0f);    // sqrt(n_embd 256)
    EXPECT_FLOAT_EQ(c.final_softcap, 30.0f);
    EXPECT_TRUE(c.qk_norm && c.post_norms && c.ffn_gelu);
  }
  {
    write_synthetic_gguf(dir.file("local.gguf"), gemma_options(GgmlType::F32, 0));
    const ModelConfig c = Model::open(dir.file("local.gguf"))->config();
    for (std::int64_t il = 0; il < 6; ++il) EXPECT_TRUE(c.is_local_layer(il)) << "layer " << il;
  }
  {
    SynthOptions o = gemma_options(GgmlType::F32);
    o.sliding_window = 0;  // no window: every layer global, one RoPE base
    write_synthetic_gguf(dir.file("global.gguf"), o);
    const ModelConfig c = Model::open(dir.file("global.gguf"))->config();
    for (std::int64_t il = 0; il < 6; ++il) EXPECT_FALSE(c.is_local_layer(il)) << "layer " << il;
    EXPECT_FLOAT_EQ(c.final_softcap, 0.0f);
  }
}

// Two sequences in one batch (prompts longer than the window, one starting mid-context) give the
// logits each gives alone.
TEST(Gemma3Batch, SequencesInOneBatchEqualAlone) {
  sluice::testing::TempDir dir;
  write_synthetic_gguf(dir.file("m.gguf"), gemma_options(GgmlType::Q4_K));
  auto model = Model::open(dir.file("m.gguf"));
  const auto a = prompt_of(21, 1), b = prompt_of(13, 2);
  InRamForward forward(*model);
  std::vector<float> alone_a, alone_b, both;
  {
    Transformer t(model->config(), 64, cpu::Threading{});
    evaluate(t, *model, a, 0, true, alone_a);
  }
  {
    Transformer t(model->config(), 64, cpu::Threading{});
    evaluate(t, *model, std::span(b).first(5), 0, false, both);
    evaluate(t, *model, std::span(b).subspan(5), 5, true, alone_b);
  }
  cache::KvShape shape{model->config().n_layer, model->config().n_head_kv * model->config().head_dim, 64, 2};
  Transformer t(model->config(), cache::make_resident_kv_cache(shape), cpu::Threading{});
  Batch first;
  first.add(1, 0, std::span(b).first(5), false);
  forward.forward(t, first, both);
  Batch batch;
  batch.add(0, 0, a, false);
  batch.add(1, 5, std::span(b).subspan(5), false);
  batch.want_all();
  forward.forward(t, batch, both);
  const std::size_t v = std::size_t(model->config().n_vocab);
  ASSERT_EQ(both.size(), (a.size() + b.size() - 5) * v);
  EXPECT_EQ(std::memcmp(both.data(), alone_a.data(), alone_a.size() * sizeof(float)), 0) << "sequence 0";
  EXPECT_EQ(std::memcmp(both.data() + alone_a.size(), alone_b.data(), alone_b.size() * sizeof(float)), 0) << "sequence 1";
}

// The tied head (Q8_0 rows of 272 bytes) streams one 64 KiB frame per piece, so rows straddle
// pieces; the embedding rows are read on demand. Prefill and decode logits equal the in-RAM run.
TEST(Gemma3Streamed, HeadInPiecesBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("m.gguf"), pack_path = dir.file("m.sluice");
  write_synthetic_gguf(gguf, gemma_options(GgmlType::Q5_0));
  pack::WriterOptions writer;
  writer.frame_bytes = 64 * 1024;
  convert_gguf_to_pack(gguf, pack_path, writer);

  auto in_ram = Model::open(gguf);
  StreamOptions options;
  options.prefetch.slots = 2;
  options.stream_head = true;
  options.embed_on_demand = true;
  options.head_piece_slot_bytes = 1;  // one frame per piece
  StreamedModel streamed(pack_path, options);
  const std::size_t head_frames = streamed.source().units()[streamed.source().find_tensor("token_embd.weight")->extent].frames.size();
  ASSERT_GE(head_frames, 2u) << "the head must span several pieces";

  const auto prompt = prompt_of(3 * kWindow, 3);
  sluice::testing::expect_streamed_matches_in_ram(*in_ram, streamed, prompt, 64);
}

}  // namespace
}  // namespace sluice
