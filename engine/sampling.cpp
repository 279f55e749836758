#include "engine/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace sluice {

std::int32_t argmax(std::span<const float> logits) {
  std::int32_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[std::size_t(best)]) best = static_cast<std::int32_t>(i);
  }
  return best;
}

Sampler::Sampler(SamplingParams params) : params_(params), rng_(params.seed) {}

std::int32_t Sampler::sample(std::span<const float> logits, std::span<const std::int32_t> history) {
  const SamplingParams& p = params_;
  candidates_.resize(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) candidates_[i] = {logits[i], static_cast<std::int32_t>(i)};

  if (p.repeat_penalty != 1.0f && p.repeat_last_n != 0) {
    std::size_t window = p.repeat_last_n < 0 ? history.size() : std::min<std::size_t>(history.size(), std::size_t(p.repeat_last_n));
    std::unordered_set<std::int32_t> recent(history.end() - std::ptrdiff_t(window), history.end());
    for (std::int32_t id : recent) {
      if (id < 0 || std::size_t(id) >= candidates_.size()) continue;
      float& l = candidates_[std::size_t(id)].first;
      l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;  // as CTRL / llama.cpp
    }
  }
  if (p.temperature <= 0.0f) {
    auto best = std::max_element(candidates_.begin(), candidates_.end(),
                                 [](const auto& a, const auto& b) { return a.first < b.first || (a.first == b.first && a.second > b.second); });
    return best->second;
  }

  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::size_t keep = candidates_.size();
  if (p.top_k > 0 && std::size_t(p.top_k) < keep) {
    keep = std::size_t(p.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + std::ptrdiff_t(keep), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);

  // Softmax over the survivors (sorted, descending).
  std::vector<double> probs(keep);
  double sum = 0.0;
  for (std::size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(double(candidates_[i].first - candidates_[0].first));
  for (double& q : probs) q /= sum;

  if (p.top_p < 1.0f) {
    double cumulative = 0.0;
    std::size_t cut = keep;
    for (std::size_t i = 0; i < keep; ++i) {
      cumulative += probs[i];
      if (cumulative >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  if (p.min_p > 0.0f) {
    std::size_t cut = 1;
    while (cut < keep && probs[cut] >= p.min_p * probs[0]) ++cut;
    keep = cut;
  }

  // Temperature, then draw.
  std::vector<double> weights(keep);
  for (std::size_t i = 0; i < keep; ++i) weights[i] = std::exp(double(candidates_[i].first - candidates_[0].first) / p.temperature);
  std::discrete_distribution<std::size_t> draw(weights.begin(), weights.end());
  return candidates_[draw(rng_)].second;
}

}  // namespace sluice
