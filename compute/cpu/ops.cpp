#include "compute/cpu/ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/check.hpp"
#include "compute/cpu/kernels.hpp"
#include "compute/cpu/quants.hpp"
#include "compute/executor.hpp"  // note_task

namespace sluice::cpu {

void rms_norm(const float* x, const float* weight, float* out, std::int64_t n, float eps) {
  // As ggml: each square rounded to float, then summed in double (ggml_float). Squaring in
  // double instead moves the scale by an ulp now and then, which a model with large activations
  // (Gemma 3) carries into different 8-bit activation quants downstream.
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(float(sum / double(n)) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * (weight ? weight[i] : 1.0f);
}

namespace {
// ggml_rope_yarn_corr_dim: the pair index at which a pair makes n_rot_turns turns in n_ctx_orig
// positions. Written in ggml's operand order and types, so the floors and ceilings agree.
float yarn_corr_dim(std::int32_t n_dims, std::int32_t n_ctx_orig, float n_rot_turns, float base) {
  return float(n_dims) * std::log(float(n_ctx_orig) / (n_rot_turns * 2.0f * float(M_PI))) / (2.0f * std::log(base));
}

// ggml_rope_yarn_ramp: 1 below the low correction dim, 0 above the high one, linear between.
float yarn_ramp(float low, float high, std::int64_t i0) {
  const float y = (float(i0 / 2) - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

// YaRN RoPE as ggml_rope_cache_init + rope_f32 compute it: theta_extrap = pos * theta_scale^i
// (accumulated by multiplication), blended with freq_scale * theta_extrap by the ramp.
void rope_yarn(float* x, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos, const RopeParams& p) {
  const std::int32_t n_dims = p.n_rot, half = n_dims / 2;
  const float theta_scale = std::pow(p.freq_base, -2.0f / float(n_dims));
  const float start = std::floor(yarn_corr_dim(n_dims, p.n_ctx_orig, p.beta_fast, p.freq_base));
  const float end = std::ceil(yarn_corr_dim(n_dims, p.n_ctx_orig, p.beta_slow, p.freq_base));
  const float corr_low = std::max(0.0f, start), corr_high = std::min(float(n_dims - 1), end);
  float cos_sin[2 * 512];  // (half, 2): each pair's cos and sin
  SLUICE_CPU_CHECK(half <= 512);
  float theta = float(pos);
  for (std::int32_t i = 0; i < half; ++i) {
    const float theta_extrap = p.freq_factors ? theta / p.freq_factors[i] : theta;
    const float theta_interp = p.freq_scale * theta_extrap;
    float angle = theta_interp;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float ramp_mix = yarn_ramp(corr_low, corr_high, 2 * std::int64_t(i)) * p.ext_factor;
      angle = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
      mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
    }
    cos_sin[2 * i] = std::cos(angle) * mscale;
    cos_sin[2 * i + 1] = std::sin(angle) * mscale;
    theta *= theta_scale;
  }
  for (std::int32_t h = 0; h < n_heads; ++h) {
    float* head = x + std::int64_t(h) * head_dim;
    for (std::int32_t i = 0; i < half; ++i) {
      const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
      const std::int32_t a = p.kind == RopeKind::adjacent ? 2 * i : i;
      const std::int32_t b = p.kind == RopeKind::adjacent ? 2 * i + 1 : i + half;
      const float x0 = head[a], x1 = head[b];
      head[a] = x0 * c - x1 * s;
      head[b] = x0 * s + x1 * c;
    }
  }
}
}  // namespace

void rope(float* x, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos, const RopeParams& p) {
  if (p.ext_factor != 0.0f || p.attn_factor != 1.0f) {
    rope_yarn(x, n_heads, head_dim, pos, p);
    return;
  }
  const std::int32_t half = p.n_rot / 2;
  const float theta_scale = std::pow(p.freq_base, -2.0f / float(p.n_rot));
  // Every head turns pair i by the same angle: its cos and sin once per row, not once per head
  // (theta takes the same float steps a per-head loop takes, so the values are equal).
  float cos_sin[2 * 512];
  SLUICE_CPU_CHECK(half <= 512);
  float theta = float(pos) * p.freq_scale;
  for (std::int32_t i = 0; i < half; ++i) {
    const float t = p.freq_factors ? theta / p.freq_factors[i] : theta;
    cos_sin[2 * i] = std::cos(t);
    cos_sin[2 * i + 1] = std::sin(t);
    theta *= theta_scale;
  }
  for (std::int32_t h = 0; h < n_heads; ++h) {
    float* head = x + std::int64_t(h) * head_dim;
    for (std::int32_t i = 0; i < half; ++i) {
      const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
      std::int32_t a = p.kind == RopeKind::adjacent ? 2 * i : i;
      std::int32_t b = p.kind == RopeKind::adjacent ? 2 * i + 1 : i + half;
      const float x0 = head[a], x1 = head[b];
      head[a] = x0 * c - x1 * s;
      head[b] = x0 * s + x1 * c;
    }
  }
}

void softmax(float* x, std::int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = x[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void softmax_with_sink(float* x, std::int64_t n, float sink) {
  float max = sink;
  for (std::int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = x[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(x[i] - max);
    sum += x[i];
  }
  sum += double(std::exp(sink - max));
  const float inv = float(1.0 / sum);
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu_oai(const float* gate, const float* up, float* out, std::int64_t n, const compute::SwigluOaiParams& p) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = std::min(gate[i], p.limit);
    const float u = std::clamp(up[i], -p.limit, p.limit);
    const float glu = g / (1.0f + std::exp(p.alpha * (-g)));
    out[i] = glu * (u + 1.0f);
  }
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

namespace {
// gelu_tanh of every fp16 value, rounded to fp16 (ggml_table_gelu_f16), built once; one entry
// more than the halves, for the SIMD levels' 4-byte gathers (row_kernels.hpp).
const std::uint16_t* gelu_fp16_table() {
  static const std::vector<std::uint16_t> table = [] {
    std::vector<std::uint16_t> t(65536 + 1);
    for (std::uint32_t h = 0; h < 65536; ++h) t[h] = fp32_to_fp16(gelu_tanh(fp16_to_fp32(static_cast<std::uint16_t>(h))));
    return t;
  }();
  return table.data();
}
}  // namespace

void swiglu(const float* gate, const float* up, float* out, std::int64_t n) { active_kernels().swiglu(gate, up, out, n); }

void geglu(const float* gate, const float* up, float* out, std::int64_t n) {
  active_kernels().geglu(gate, up, out, n, gelu_fp16_table());
}

// compute/views.hpp sizes q8_0 KV rows without seeing this struct.
static_assert(kQK8_0 == compute::kKvQ8BlockFloats && std::int64_t(sizeof(BlockQ8_0)) == compute::kKvQ8BlockBytes,
              "q8_0 KV row geometry");

void kv_store(const KvLayerView& kv, std::int64_t pos, std::int64_t row_floats, const float* k, const float* v) {
  const std::int64_t row = compute::kv_row(kv, pos);
  std::byte* kd = kv.k + row * kv.row_bytes;
  std::byte* vd = kv.v + row * kv.row_bytes;
  if (kv.type == KvType::q8_0) {
    scalar::quantize_q8_0_act(k, kd, row_floats);  // as llama.cpp's f32 -> q8_0 cache copy
    scalar::quantize_q8_0_act(v, vd, row_floats);
    return;
  }
  // The level's fp32 -> fp16 row conversion: the same bytes as fp32_to_fp16 (kernels.hpp).
  const QuantizeFn to_half = active_kernels().quantize_activation[type_slot(GgmlType::F16)];
  to_half(k, kd, row_floats);
  to_half(v, vd, row_floats);
}

namespace {
// Keys x head_dim multiply-adds below which one thread does all heads (TBB task overhead).
constexpr std::int64_t kParallelAttentionWork = 1 << 15;

// Values [first, first + n) of a q8_0 row (blocks of 32 may straddle heads when head_dim < 32).
inline void load_q8_0(const std::byte* row, std::int64_t first, std::int32_t n, float* out) {
  const auto* blocks = reinterpret_cast<const BlockQ8_0*>(row);
  for (std::int32_t i = 0; i < n; ++i) {
    const BlockQ8_0& b = blocks[(first + i) / kQK8_0];
    out[i] = fp16_to_fp32(b.d) * float(b.qs[(first + i) % kQK8_0]);
  }
}

// One head's scores -> attention weights: softmax, with the head's sink in the denominator when
// the shape has sinks.
inline void normalize_scores(float* scores, std::int64_t n, const AttentionShape& s, std::int32_t h) {
  if (s.sinks != nullptr) {
    softmax_with_sink(scores, n, s.sinks[h]);
  } else {
    softmax(scores, n);
  }
}

void attend_head_f16(const float* q, const KvLayerView& kv, std::int64_t pos, const AttentionShape& s, std::int32_t h,
                     float* out, std::vector<float>& scratch) {
  const KernelTable& kernels = active_kernels();
  const std::int32_t group = s.n_head / s.n_head_kv;
  const std::int64_t kv_row = std::int64_t(s.n_head_kv) * s.head_dim;
  const std::int64_t first = s.window > 0 ? std::max<std::int64_t>(0, pos - s.window + 1) : 0;
  const std::int64_t kv_head = h / group;
  const auto* keys = reinterpret_cast<const std::uint16_t*>(kv.k) + kv_head * s.head_dim;
  const auto* values = reinterpret_cast<const std::uint16_t*>(kv.v) + kv_head * s.head_dim;
  scratch.resize(std::size_t(pos + 1));
  // llama.cpp's default (non flash) attention multiplies the fp16 cache with q and with the
  // softmax weights converted to fp16 (ggml's vec_dot_type for f16): the kernels round them so
  // the two engines' logits differ only by summation order.
  SLUICE_CPU_CHECK(s.head_dim <= kMaxAttentionHeadDim);
  std::fill(scratch.begin(), scratch.begin() + first, -std::numeric_limits<float>::infinity());
  float* scores = scratch.data() + first;
  const std::int64_t n = pos + 1 - first;
  // Keys first..pos in at most two runs of rows (a ring wraps once); the kernels give the same
  // bits whichever way the keys are split between calls.
  const std::int64_t row0 = compute::kv_row(kv, first);
  const std::int64_t run0 = std::min(n, kv.ctx - row0);
  const float* qh = q + std::int64_t(h) * s.head_dim;
  kernels.attention_scores_f16(qh, keys + row0 * kv_row, kv_row, run0, s.head_dim, scores);
  if (run0 < n) kernels.attention_scores_f16(qh, keys, kv_row, n - run0, s.head_dim, scores + run0);
  for (std::int64_t j = 0; j < n; ++j) {
    float logit = scores[j] * s.scale;
    if (s.softcap > 0.0f) logit = s.softcap * std::tanh(logit / s.softcap);
    scores[j] = logit;
  }
  normalize_scores(scratch.data(), pos + 1, s, h);
  float* oh = out + std::int64_t(h) * s.head_dim;
  std::fill(oh, oh + s.head_dim, 0.0f);
  kernels.attention_values_f16(scores, values + row0 * kv_row, kv_row, run0, s.head_dim, oh);
  if (run0 < n) kernels.attention_values_f16(scores + run0, values, kv_row, n - run0, s.head_dim, oh);
}

void attend_head_q8_0(const float* q, const KvLayerView& kv, std::int64_t pos, const AttentionShape& s, std::int32_t h,
                      float* out, std::vector<float>& scratch) {
  const std::int32_t group = s.n_head / s.n_head_kv;
  const std::int64_t first = s.window > 0 ? std::max<std::int64_t>(0, pos - s.window + 1) : 0;
  const std::int64_t at = std::int64_t(h / group) * s.head_dim;  // the KV head's first value in a row
  scratch.resize(std::size_t(pos + 1));
  float row[512];
  SLUICE_CPU_CHECK(s.head_dim <= 512);
  const float* qh = q + std::int64_t(h) * s.head_dim;
  for (std::int64_t j = 0; j <= pos; ++j) {
    if (j < first) {
      scratch[std::size_t(j)] = -std::numeric_limits<float>::infinity();
      continue;
    }
    load_q8_0(kv.k + compute::kv_row(kv, j) * kv.row_bytes, at, s.head_dim, row);
    float dot = 0.0f;
    for (std::int32_t d = 0; d < s.head_dim; ++d) dot += qh[d] * row[d];
    float logit = dot * s.scale;
    if (s.softcap > 0.0f) logit = s.softcap * std::tanh(logit / s.softcap);
    scratch[std::size_t(j)] = logit;
  }
  normalize_scores(scratch.data(), pos + 1, s, h);
  float* oh = out + std::int64_t(h) * s.head_dim;
  std::fill(oh, oh + s.head_dim, 0.0f);
  for (std::int64_t j = first; j <= pos; ++j) {
    load_q8_0(kv.v + compute::kv_row(kv, j) * kv.row_bytes, at, s.head_dim, row);
    const float w = scratch[std::size_t(j)];
    for (std::int32_t d = 0; d < s.head_dim; ++d) oh[d] += w * row[d];
  }
}

void attend_head(const float* q, const KvLayerView& kv, std::int64_t pos, const AttentionShape& s, std::int32_t h,
                 float* out, std::vector<float>& scratch) {
  if (kv.type == KvType::q8_0) {
    attend_head_q8_0(q, kv, pos, s, h, out, scratch);
  } else {
    attend_head_f16(q, kv, pos, s, h, out, scratch);
  }
}
}  // namespace

std::uint64_t attention_scratch_bytes(std::int64_t n_ctx) { return 2 * std::uint64_t(n_ctx) * sizeof(float); }

void attend(const float* q, const KvLayerView& kv, std::int64_t pos, const AttentionShape& s, float* out) {
  if ((pos + 1) * s.head_dim * s.n_head < kParallelAttentionWork || tbb::this_task_arena::max_concurrency() == 1) {
    compute::note_task();
    std::vector<float> scratch;
    for (std::int32_t h = 0; h < s.n_head; ++h) attend_head(q, kv, pos, s, h, out, scratch);
    return;
  }
  // Each task's scores live and die with the task (no thread_local): a head task spawns nothing,
  // so a thread holds one scores vector at a time and the arena's threads bound the total
  // (attention_scratch_bytes), whichever of TBB's workers come to serve the arena over time.
  tbb::parallel_for(tbb::blocked_range<std::int32_t>(0, s.n_head), [&](const tbb::blocked_range<std::int32_t>& r) {
    compute::note_task();
    std::vector<float> scratch;
    for (std::int32_t h = r.begin(); h < r.end(); ++h) attend_head(q, kv, pos, s, h, out, scratch);
  });
}

}  // namespace sluice::cpu
