#include "engine/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <stdexcept>

#include "common/assert.hpp"
#include "engine/expert_provider.hpp"

namespace sluice {

namespace {
// The width of the FFN activations (gate, up): a dense FFN's n_ff, or one expert's.
std::int64_t ffn_width(const ModelConfig& c) { return c.is_moe() ? c.n_ff_exp : c.n_ff; }

}  // namespace

cache::KvShape kv_shape(const ModelConfig& c, std::int64_t n_ctx, std::int32_t n_seq, compute::KvType type, bool rings) {
  cache::KvShape shape;
  shape.n_layer = c.n_layer;
  shape.row_floats = c.n_head_kv * c.head_dim;
  shape.n_ctx = n_ctx;
  shape.n_seq = n_seq;
  shape.type = type;
  if (rings && c.sliding_window > 0) {
    shape.window = c.sliding_window;
    shape.ring_layers.resize(std::size_t(c.n_layer));
    for (std::int64_t il = 0; il < c.n_layer; ++il) shape.ring_layers[std::size_t(il)] = c.is_local_layer(il);
  }
  return shape;
}

Transformer::Transformer(ModelConfig config, std::int64_t n_ctx, compute::Threading threading)
    : Transformer(config, cache::make_resident_kv_cache(kv_shape(config, n_ctx)), threading) {}

Transformer::Transformer(ModelConfig config, std::unique_ptr<cache::KvCache> kv, compute::Threading threading)
    : Transformer(std::move(config), std::move(kv), compute::make_cpu_backend(threading), nullptr) {}

Transformer::Transformer(ModelConfig config, std::unique_ptr<cache::KvCache> kv, compute::ComputeBackend& backend)
    : Transformer(std::move(config), std::move(kv), nullptr, &backend) {}

Transformer::Transformer(ModelConfig config, std::unique_ptr<cache::KvCache> kv,
                         std::unique_ptr<compute::ComputeBackend> own_backend, compute::ComputeBackend* borrowed)
    : config_(std::move(config)), n_ctx_(kv->shape().n_ctx), own_backend_(std::move(own_backend)),
      backend_(own_backend_ ? own_backend_.get() : borrowed), kv_dim_(config_.n_head_kv * config_.head_dim),
      kv_(std::move(kv)) {
  SLUICE_ASSERT(backend_ != nullptr);
  const compute::ComputeBackend& backend = *backend_;
  SLUICE_ASSERT(n_ctx_ > 0);
  SLUICE_ASSERT(kv_->shape().n_layer == config_.n_layer && kv_->shape().row_floats == kv_dim_);
  for (std::int64_t il = 0; il < config_.n_layer; ++il) {
    // A ring must hold the window this layer attends to.
    SLUICE_ASSERT(!kv_->shape().ring(il) || (config_.is_local_layer(il) && kv_->shape().window >= config_.sliding_window));
  }
  const compute::BackendCapabilities& caps = backend.capabilities();
  if (caps.memory != compute::MemorySpace::host) {
    throw std::invalid_argument(fmt::format("compute backend '{}' keeps its data in {} memory; the forward pass holds its "
                                            "activations and KV cache in host memory",
                                            backend.name(), compute::to_string(caps.memory)));
  }
  if (!caps.supports(kv_->shape().type)) {
    throw std::invalid_argument(fmt::format("compute backend '{}' has no attention over a {} KV cache", backend.name(),
                                            compute::to_string(kv_->shape().type)));
  }
}

Transformer::~Transformer() = default;

void Transformer::set_max_pass_tokens(std::int64_t n) {
  SLUICE_ASSERT(n >= 0);
  max_pass_tokens_ = n;
}

std::uint64_t Transformer::scratch_bytes(const ModelConfig& c, std::int64_t n_tokens) {
  // One row of each buffer of ensure_scratch(): xn, proj (d); q, att (n_head * hd); k, v (kv
  // width); gate, up (n_ff, or one expert's n_ff_exp); with experts also moe_x, moe_out (d),
  // router logits (n_expert) and the routes (4 x n_expert_used: ids and weights by row and by
  // expert; int32 and float are both 4 bytes).
  std::int64_t row = 2 * c.n_embd + 2 * c.n_head * c.head_dim + 2 * c.n_head_kv * c.head_dim + 2 * ffn_width(c);
  if (c.is_moe()) row += 2 * c.n_embd + c.n_expert + 4 * c.n_expert_used;
  return std::uint64_t(n_tokens) * std::uint64_t(row) * sizeof(float);
}

std::uint64_t Transformer::expert_provider_scratch_bytes(const ModelConfig& c, std::int64_t n_tokens) {
  if (!c.is_moe()) return 0;
  // Route outputs and chosen ids, plus the guess of the next layer's experts: its normalised
  // input (n, d), router logits (n, n_expert), routes (n, k) ids and weights, the union.
  const auto n = std::uint64_t(n_tokens), k = std::uint64_t(c.n_expert_used), e = std::uint64_t(c.n_expert), d = std::uint64_t(c.n_embd);
  return (n * k * d + 2 * e) * sizeof(float) + (n * d + n * e + 2 * n * k + e) * sizeof(float);
}

void Transformer::ensure_scratch(std::int64_t n) {
  // A pass longer than the plan's would outgrow the buffers the planner counted.
  SLUICE_ASSERT(max_pass_tokens_ == 0 || n <= max_pass_tokens_);
  if (n <= scratch_tokens_) return;
  const ModelConfig& c = config_;
  const std::size_t rows = std::size_t(n);
  xn_.resize(rows * c.n_embd);
  q_.resize(rows * c.n_head * c.head_dim);
  k_.resize(rows * kv_dim_);
  v_.resize(rows * kv_dim_);
  att_.resize(rows * c.n_head * c.head_dim);
  proj_.resize(rows * c.n_embd);
  gate_.resize(rows * ffn_width(c));
  up_.resize(rows * ffn_width(c));
  if (c.is_moe()) {
    const std::size_t routes = rows * std::size_t(c.n_expert_used);
    moe_x_.resize(rows * c.n_embd);
    moe_out_.resize(rows * c.n_embd);
    router_logits_.resize(rows * c.n_expert);
    route_ids_.resize(routes);
    route_weights_.resize(routes);
    expert_rows_.resize(routes);
    expert_weights_.resize(routes);
  }
  scratch_tokens_ = n;
}

const float* Transformer::f32(const TensorView& t, std::vector<float>& tmp) const {
  if (t.type == GgmlType::F32) return reinterpret_cast<const float*>(t.data);
  tmp.resize(std::size_t(t.elements()));
  backend_->dequantize(t, tmp.data());
  return tmp.data();
}

void Transformer::linear(const TensorView& w, const float* x, std::int64_t n, float* y) const { backend_->matmul(w, x, n, y); }

std::uint64_t Transformer::piece_out_bytes(std::int64_t n_tokens) {
  // 1 MiB, or 16 rows of a longer pass: a GEMM call of 16 rows still fills its tiles.
  return std::max<std::uint64_t>(1ull << 20, std::uint64_t(n_tokens) * 16 * sizeof(float));
}

void Transformer::project(const BlockWeights& w, const TensorView& t, const float* x, std::int64_t n, float* y) {
  if (!w.rows || !w.rows->holds(t)) {
    linear(t, x, n, y);
    return;
  }
  // The matrix arrives in pieces: each run of rows gives those columns of y, through a buffer of
  // at most piece_out_bytes(n) (a long prompt's rows in slices of the run).
  const std::int64_t out = t.rows();
  const std::int64_t slice = std::int64_t(piece_out_bytes(n) / (std::uint64_t(n) * sizeof(float)));
  w.rows->for_each_rows(t, [&](std::int64_t first, const TensorView& rows) {
    if (n == 1) {
      linear(rows, x, 1, y + first);
      return;
    }
    const std::uint64_t row_bytes = rows.bytes / std::uint64_t(rows.rows());
    for (std::int64_t r0 = 0; r0 < rows.rows(); r0 += slice) {
      const std::int64_t m = std::min(slice, rows.rows() - r0);
      TensorView part = rows;
      part.dims[1] = m;
      part.data = rows.data + std::uint64_t(r0) * row_bytes;
      part.bytes = std::uint64_t(m) * row_bytes;
      piece_out_.resize(std::size_t(n * m));
      linear(part, x, n, piece_out_.data());
      for (std::int64_t i = 0; i < n; ++i) std::copy_n(piece_out_.data() + i * m, m, y + i * out + first + r0);
    }
  });
}

void Transformer::embed(const TensorView& tok_embd, std::span<const std::int32_t> tokens, float* x) const {
  SLUICE_ASSERT(tok_embd.cols() == config_.n_embd);
  for (const std::int32_t id : tokens) {
    if (id < 0 || id >= tok_embd.rows()) {
      throw std::out_of_range(fmt::format("token id {} outside the vocabulary (0..{})", id, tok_embd.rows() - 1));
    }
  }
  backend_->get_rows(tok_embd, tokens, x);
  if (config_.embedding_scale != 1.0f) backend_->scale(x, std::int64_t(tokens.size()) * config_.n_embd, config_.embedding_scale);
}

void Transformer::block(std::int64_t il, const BlockWeights& w, const GlobalWeights& g, float* x, std::int64_t n,
                        std::int64_t pos0) {
  const SeqSpan span{0, pos0, n};
  block(il, w, g, x, std::span(&span, 1));
}

void Transformer::block(std::int64_t il, const BlockWeights& w, const GlobalWeights& g, float* x,
                        std::span<const SeqSpan> spans) {
  const ModelConfig& c = config_;
  check_spans(spans);
  std::int64_t n = 0;
  for (const SeqSpan& s : spans) n += s.n;
  ensure_scratch(n);
  const std::int64_t d = c.n_embd, hd = c.head_dim, q_dim = c.n_head * hd;
  const auto n_head = static_cast<std::int32_t>(c.n_head), n_head_kv = static_cast<std::int32_t>(c.n_head_kv);
  auto norm_rows = [&](const float* in, const TensorView& weight, float* out, std::int64_t rows, std::int64_t width,
                       std::vector<float>& tmp) {
    backend_->rms_norm(in, f32(weight, tmp), out, rows, width, c.rms_eps);
  };
  // x += branch, after gemma3's post-norm of the branch when it has one (in place).
  auto add_branch = [&](float* branch, const TensorView& post_norm) {
    if (c.post_norms) norm_rows(branch, post_norm, branch, n, d, tmp_a_);
    backend_->add(x, branch, n * d);
  };

  // Attention: x += [post_norm] Wo * attn(rope([qk_norm] Wq xn), rope([qk_norm] Wk xn), Wv xn),
  // xn = rmsnorm(x)
  norm_rows(x, w.attn_norm, xn_.data(), n, d, tmp_a_);
  project(w, w.wq, xn_.data(), n, q_.data());
  project(w, w.wk, xn_.data(), n, k_.data());
  project(w, w.wv, xn_.data(), n, v_.data());
  auto add_bias = [&](const TensorView& bias, float* rows, std::int64_t width) {
    if (bias) backend_->add_rows(rows, f32(bias, tmp_b_), n, width);
  };
  add_bias(w.bq, q_.data(), q_dim);
  add_bias(w.bk, k_.data(), kv_dim_);
  add_bias(w.bv, v_.data(), kv_dim_);
  if (c.qk_norm) {  // gemma3, qwen3moe: RMSNorm over each head of q and k (rows of head_dim), before RoPE
    norm_rows(q_.data(), w.q_norm, q_.data(), n * c.n_head, hd, tmp_a_);
    norm_rows(k_.data(), w.k_norm, k_.data(), n * c.n_head_kv, hd, tmp_b_);
  }

  const compute::RopeParams rope = rope_params(il, g);

  // With an explicit attention scale (gemma3) q is multiplied by it after RoPE and attention
  // scales by 1, in llama.cpp's order: the same products, rounded the same way.
  const bool prescale_q = c.attention_scale > 0.0f;
  compute::AttentionShape shape{n_head, n_head_kv, static_cast<std::int32_t>(hd),
                                prescale_q ? 1.0f : 1.0f / std::sqrt(float(hd)),
                                c.is_local_layer(il) ? static_cast<std::int32_t>(c.sliding_window) : 0, 0.0f};
  if (w.attn_sinks) shape.sinks = f32(w.attn_sinks, tmp_sinks_);  // gpt-oss
  kv_->begin_layer(il);
  writes_.clear();
  std::int64_t row = 0;
  for (const SeqSpan& s : spans) {
    const compute::KvLayerView kv = kv_->view(il, s.seq);
    float* qs = q_.data() + row * q_dim;  // (s.n, q_dim): this span's queries
    float* ks = k_.data() + row * kv_dim_;
    backend_->rope(qs, s.n, n_head, static_cast<std::int32_t>(hd), s.pos0, rope);
    if (prescale_q) backend_->scale(qs, s.n * q_dim, c.attention_scale);
    backend_->rope(ks, s.n, n_head_kv, static_cast<std::int32_t>(hd), s.pos0, rope);
    // A ring layer's rows are stored and attended in pieces, so no row is overwritten before
    // every query that reads it has run (KvShape::store_chunk).
    const std::int64_t piece = kv.ring ? kv_->shape().store_chunk() : s.n;
    for (std::int64_t done = 0; done < s.n; done += piece) {
      const std::int64_t m = std::min(piece, s.n - done);
      backend_->kv_store(kv, s.pos0 + done, m, kv_dim_, ks + done * kv_dim_, v_.data() + (row + done) * kv_dim_);
      backend_->attend(qs + done * q_dim, m, kv, s.pos0 + done, shape, att_.data() + (row + done) * q_dim);
    }
    writes_.push_back({s.seq, s.pos0, s.n});
    row += s.n;
  }
  kv_->end_layer(il, writes_);
  project(w, w.wo, att_.data(), n, proj_.data());
  add_bias(w.bo, proj_.data(), d);
  add_branch(proj_.data(), w.post_attn_norm);

  // Feed-forward: x += [post_norm] W_down (act(W_gate xn) * W_up xn), xn = rmsnorm(x);
  // act = silu (SwiGLU) or tanh GELU (GeGLU, gemma3); with experts, moe_ffn
  norm_rows(x, w.ffn_norm, xn_.data(), n, d, tmp_a_);
  if (c.is_moe()) {
    moe_ffn(il, w, x, n);
    add_branch(proj_.data(), w.post_ffn_norm);
    return;
  }
  project(w, w.w_gate, xn_.data(), n, gate_.data());
  project(w, w.w_up, xn_.data(), n, up_.data());
  if (c.ffn_gelu) {
    backend_->geglu(gate_.data(), up_.data(), gate_.data(), n * c.n_ff);
  } else {
    backend_->swiglu(gate_.data(), up_.data(), gate_.data(), n * c.n_ff);
  }
  project(w, w.w_down, gate_.data(), n, proj_.data());
  add_branch(proj_.data(), w.post_ffn_norm);
}

compute::RopeParams Transformer::rope_params(std::int64_t il, const GlobalWeights& g) {
  const ModelConfig& c = config_;
  // Sliding-window (local) layers rotate with their own base and scaling (gemma3: none).
  const bool local = c.is_local_layer(il);
  compute::RopeParams rope;
  rope.kind = c.rope_neox ? compute::RopeKind::neox : compute::RopeKind::adjacent;
  rope.n_rot = static_cast<std::int32_t>(c.n_rot);
  rope.freq_base = local ? c.rope_base_local : c.rope_base;
  rope.freq_scale = local ? c.rope_freq_scale_local : c.rope_freq_scale;
  if (g.rope_freqs) rope.freq_factors = f32(g.rope_freqs, tmp_rope_);
  rope.ext_factor = c.yarn_ext_factor;  // YaRN (gpt-oss); 0 and 1: plain RoPE
  rope.attn_factor = c.yarn_attn_factor;
  rope.beta_fast = c.yarn_beta_fast;
  rope.beta_slow = c.yarn_beta_slow;
  rope.n_ctx_orig = static_cast<std::int32_t>(std::min<std::int64_t>(c.n_ctx_orig_yarn, INT32_MAX));
  return rope;
}

void Transformer::guess_experts(std::int64_t il, const BlockWeights& next, const float* x, std::int64_t n, ExpertProvider& provider) {
  const ModelConfig& c = config_;
  const std::int64_t d = c.n_embd, n_expert = c.n_expert;
  const auto k = static_cast<std::int32_t>(c.n_expert_used);
  guess_xn_.resize(std::size_t(n * d));
  guess_logits_.resize(std::size_t(n * n_expert));
  guess_ids_.resize(std::size_t(n * k));
  guess_weights_.resize(std::size_t(n * k));
  backend_->rms_norm(x, f32(next.ffn_norm, tmp_b_), guess_xn_.data(), n, d, c.rms_eps);
  linear(next.router, guess_xn_.data(), n, guess_logits_.data());
  if (next.router_bias) backend_->add_rows(guess_logits_.data(), f32(next.router_bias, guess_bias_tmp_), n, n_expert);  // gpt-oss
  // Only the choice matters: top-k of the logits is the same whatever the gating function
  // (softmax is monotonic: gpt-oss's top-k-then-softmax picks the same experts).
  backend_->moe_route(guess_logits_.data(), n, n_expert, k, /*normalize=*/true, guess_ids_.data(), guess_weights_.data());
  guess_chosen_.assign(std::size_t(n_expert), 0);
  for (const std::int32_t e : guess_ids_) guess_chosen_[std::size_t(e)] = 1;
  guess_union_.clear();
  for (std::int64_t e = 0; e < n_expert; ++e) {
    if (guess_chosen_[std::size_t(e)]) guess_union_.push_back(static_cast<std::int32_t>(e));
  }
  provider.guess(il, guess_union_);
}

void Transformer::moe_ffn(std::int64_t il, const BlockWeights& w, const float* x, std::int64_t n) {
  const ModelConfig& c = config_;
  const std::int64_t d = c.n_embd, n_expert = c.n_expert;
  const auto k = static_cast<std::int32_t>(c.n_expert_used);
  // Route: router_logits (n, n_expert) = W_router xn; route_ids, route_weights (n, k).
  linear(w.router, xn_.data(), n, router_logits_.data());
  if (w.router_bias) backend_->add_rows(router_logits_.data(), f32(w.router_bias, moe_bias_tmp_[0]), n, n_expert);
  if (c.moe_select_then_softmax) {  // gpt-oss: the top-k logits, softmax over those k
    backend_->moe_route_topk_softmax(router_logits_.data(), n, n_expert, k, route_ids_.data(), route_weights_.data());
  } else {
    backend_->moe_route(router_logits_.data(), n, n_expert, k, /*normalize=*/true, route_ids_.data(), route_weights_.data());
  }
  // Group the routes by expert (a counting sort, rows ascending within an expert):
  // expert_rows_/expert_weights_[first[e] .. first[e + 1]) are the rows routed to e and their weights.
  std::vector<std::int64_t>& first = expert_first_;
  first.assign(std::size_t(n_expert) + 1, 0);
  for (std::int64_t i = 0; i < n * k; ++i) {
    const std::int32_t e = route_ids_[std::size_t(i)];
    SLUICE_ASSERT(e >= 0 && e < n_expert);  // moe_route's contract
    ++first[std::size_t(e) + 1];
  }
  for (std::int64_t e = 0; e < n_expert; ++e) first[std::size_t(e) + 1] += first[std::size_t(e)];
  std::vector<std::int64_t>& next = expert_next_;
  next.assign(first.begin(), first.end() - 1);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int32_t j = 0; j < k; ++j) {
      const std::size_t route = std::size_t(r * k + j);
      const std::size_t at = std::size_t(next[std::size_t(route_ids_[route])]++);
      expert_rows_[at] = static_cast<std::int32_t>(r);
      expert_weights_[at] = route_weights_[route];
    }
  }
  // The experts' biases (gpt-oss), row e of each, or null.
  const ExpertBiases biases{w.gate_exps_bias ? f32(w.gate_exps_bias, moe_bias_tmp_[1]) : nullptr,
                            w.up_exps_bias ? f32(w.up_exps_bias, moe_bias_tmp_[2]) : nullptr,
                            w.down_exps_bias ? f32(w.down_exps_bias, moe_bias_tmp_[3]) : nullptr};
  auto rows_of = [&](std::int64_t e) {
    const std::int64_t begin = first[std::size_t(e)];
    return std::span<const std::int32_t>(expert_rows_.data() + begin, std::size_t(first[std::size_t(e) + 1] - begin));
  };
  // proj (n, d) = sum over the routes of weight * expert output, added expert by expert in id
  // order: a row's sum does not depend on the other rows of the pass, nor on the order in which
  // experts are computed. An expert no row chose is not computed (nor read).
  std::fill_n(proj_.begin(), std::size_t(n * d), 0.0f);
  if (w.experts == nullptr) {
    for (std::int64_t e = 0; e < n_expert; ++e) {
      const std::span<const std::int32_t> rows = rows_of(e);
      if (rows.empty()) continue;
      run_expert({expert_slice(w.gate_exps, e), expert_slice(w.up_exps, e), expert_slice(w.down_exps, e), {}}, biases, e, rows,
                 moe_out_.data());
      backend_->scatter_add_rows(proj_.data(), d, rows, expert_weights_.data() + first[std::size_t(e)], moe_out_.data());
    }
    return;
  }
  // Streamed experts: ask for every chosen one (reads of the absent start), compute those in RAM
  // first and the others as their reads land, each into its own rows of route_out (n * k, d), in
  // the grouping's order; then add them to proj in id order, exactly as above.
  moe_chosen_.clear();
  for (std::int64_t e = 0; e < n_expert; ++e) {
    if (!rows_of(e).empty()) moe_chosen_.push_back(static_cast<std::int32_t>(e));
  }
  w.experts->request(il, moe_chosen_);
  // The next layer's likely experts, read while this layer computes (after its own reads).
  if (w.next != nullptr && w.next->router) guess_experts(il + 1, *w.next, x, n, *w.experts);
  moe_route_out_.resize(std::size_t(n * k * d));
  std::vector<std::int32_t>& left = moe_left_;
  left = moe_chosen_;
  while (!left.empty()) {
    auto next = std::find_if(left.begin(), left.end(), [&](std::int32_t e) { return w.experts->ready(il, e); });
    if (next == left.end()) next = left.begin();  // none in RAM yet: wait for the lowest id
    const std::int32_t e = *next;
    left.erase(next);
    const ExpertWeights ew = w.experts->acquire(il, e);
    run_expert(ew, biases, e, rows_of(e), moe_route_out_.data() + first[std::size_t(e)] * d);
  }
  for (const std::int32_t e : moe_chosen_) {
    const std::int64_t begin = first[std::size_t(e)];
    backend_->scatter_add_rows(proj_.data(), d, rows_of(e), expert_weights_.data() + begin, moe_route_out_.data() + begin * d);
  }
}

void Transformer::run_expert(const ExpertWeights& ew, const ExpertBiases& biases, std::int64_t e,
                             std::span<const std::int32_t> rows, float* out) {
  // out (m, d) = down_e(act(gate_e x [+ b_gate]) * (up_e x [+ b_up])) [+ b_down], with moe_x
  // (m, d) the gathered rows and gate, up (m, ff); act = silu, or SwiGLU-OAI (gpt-oss).
  const ModelConfig& c = config_;
  const std::int64_t d = c.n_embd, ff = c.n_ff_exp;
  const auto m = std::int64_t(rows.size());
  backend_->gather_rows(xn_.data(), d, rows, moe_x_.data());
  linear(ew.gate, moe_x_.data(), m, gate_.data());
  linear(ew.up, moe_x_.data(), m, up_.data());
  if (biases.gate) backend_->add_rows(gate_.data(), biases.gate + e * ff, m, ff);
  if (biases.up) backend_->add_rows(up_.data(), biases.up + e * ff, m, ff);
  if (c.ffn_swiglu_oai) {
    backend_->swiglu_oai(gate_.data(), up_.data(), gate_.data(), m * ff, {c.swiglu_oai_alpha, c.swiglu_oai_limit});
  } else {
    backend_->swiglu(gate_.data(), up_.data(), gate_.data(), m * ff);
  }
  linear(ew.down, gate_.data(), m, out);
  if (biases.down) backend_->add_rows(out, biases.down + e * d, m, d);
}

void Transformer::check_spans(std::span<const SeqSpan> spans) const {
  for (const SeqSpan& s : spans) {
    if (s.pos0 < 0 || s.pos0 + s.n > n_ctx_) {
      throw std::length_error(fmt::format("context full: positions {}..{} of sequence {} exceed the context of {}", s.pos0,
                                          s.pos0 + s.n - 1, s.seq, n_ctx_));
    }
    SLUICE_ASSERT(s.seq >= 0 && s.seq < n_seq());
  }
}

void Transformer::head_rows(const GlobalWeights& g, const float* x, std::span<const std::int64_t> rows, float* logits) {
  if (rows.empty()) return;
  head_norm(g, x, rows);
  linear(g.output, xn_.data(), std::int64_t(rows.size()), logits);
  head_finish(logits, std::int64_t(rows.size()), g.output.rows());
}

void Transformer::head_norm(const GlobalWeights& g, const float* x, std::span<const std::int64_t> rows) {
  const std::int64_t d = config_.n_embd;
  const auto n_rows = static_cast<std::int64_t>(rows.size());
  ensure_scratch(n_rows);
  const float* norm = f32(g.output_norm, tmp_a_);
  // The wanted rows need not be adjacent in x: one call per row.
  for (std::int64_t r = 0; r < n_rows; ++r) backend_->rms_norm(x + rows[std::size_t(r)] * d, norm, xn_.data() + r * d, 1, d, config_.rms_eps);
  head_rows_ = n_rows;
}

void Transformer::head_part(const TensorView& output_rows, std::int64_t v0, float* logits, std::int64_t n_vocab) {
  const std::int64_t count = output_rows.rows();
  SLUICE_ASSERT(v0 >= 0 && v0 + count <= n_vocab && head_rows_ > 0);
  head_tmp_.resize(std::size_t(head_rows_ * count));
  linear(output_rows, xn_.data(), head_rows_, head_tmp_.data());
  for (std::int64_t r = 0; r < head_rows_; ++r) {
    std::copy_n(head_tmp_.data() + r * count, count, logits + r * n_vocab + v0);
  }
}

void Transformer::head_finish(float* logits, std::int64_t n_rows, std::int64_t n_vocab) {
  if (config_.final_softcap > 0.0f) backend_->softcap(logits, n_rows * n_vocab, config_.final_softcap);
}

}  // namespace sluice
