#include "io/fault_backend.hpp"

#include <thread>

#include <algorithm>

#include "common/assert.hpp"

namespace sluice::io {

FaultBackend::FaultBackend(std::unique_ptr<Backend> inner, FaultPlan plan)
    : inner_(std::move(inner)), plan_(plan), rng_(plan.seed) {
  SLUICE_ASSERT(inner_ != nullptr);
}

std::uint64_t FaultBackend::next_operation() {
  ++stats_.operations;
  return plan_.shared_operations ? plan_.shared_operations->fetch_add(1) + 1 : stats_.operations;
}

bool FaultBackend::fails(std::uint64_t op) const {
  return plan_.fail_op != 0 && (op == plan_.fail_op || (plan_.persistent && op > plan_.fail_op));
}

std::int64_t FaultBackend::decide_write(std::uint64_t length) {
  const std::uint64_t op = next_operation();
  if (fails(op)) {
    ++stats_.injected_errors;
    return -plan_.fail_errno;
  }
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  if (length > 1 && plan_.short_read_probability > 0 && coin(rng_) < plan_.short_read_probability) {
    ++stats_.short_reads;
    return static_cast<std::int64_t>(1 + rng_() % (length - 1));
  }
  return static_cast<std::int64_t>(length);
}

void FaultBackend::prepare(const RawRead& read) {
  std::uint64_t op = next_operation();
  if (fails(op)) {
    ++stats_.injected_errors;
    injected_.push_back(RawCompletion{read.tag, -plan_.fail_errno});
    return;
  }
  SLUICE_ASSERT_MSG(passed_.count(read.tag) == 0, "fault backend: tag reused while in flight");
  passed_.emplace(read.tag, Pending{read, op});
  inner_->prepare(read);
}

void FaultBackend::mangle(RawCompletion& completion) {
  auto it = passed_.find(completion.tag);
  SLUICE_ASSERT(it != passed_.end());
  Pending pending = it->second;
  passed_.erase(it);
  if (completion.result <= 0) return;
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  bool flip = pending.op_number == plan_.flip_op || (plan_.bit_flip_probability > 0 && coin(rng_) < plan_.bit_flip_probability);
  if (flip) {
    std::uint64_t byte = rng_() % static_cast<std::uint64_t>(completion.result);
    pending.read.dest[byte] ^= std::byte{static_cast<unsigned char>(1u << (rng_() % 8))};
    ++stats_.bit_flips;
  }
  if (completion.result > 1 && plan_.short_read_probability > 0 && coin(rng_) < plan_.short_read_probability) {
    // Report between 1 and result-1 bytes: the data past that point is still in the buffer, but
    // the reader must not trust it and has to ask again.
    completion.result = static_cast<std::int32_t>(1 + rng_() % static_cast<std::uint64_t>(completion.result - 1));
    ++stats_.short_reads;
  }
}

Result<std::size_t> FaultBackend::reap(std::span<RawCompletion> out, std::size_t min_complete) {
  std::size_t n = 0;
  while (n < out.size() && !injected_.empty()) {
    out[n++] = injected_.front();
    injected_.pop_front();
  }
  if (n == out.size() || passed_.empty()) return n;
  std::size_t inner_min = min_complete > n ? min_complete - n : 0;
  if (plan_.reap_delay.count() > 0) std::this_thread::sleep_for(plan_.reap_delay);
  Result<std::size_t> got = inner_->reap(out.subspan(n), inner_min);
  if (!got) return got;
  for (std::size_t i = n; i < n + got.value(); ++i) mangle(out[i]);
  return n + got.value();
}

}  // namespace sluice::io

namespace sluice::io {

BackendWrapper fault_wrapper(const FaultPlan& plan) {
  return [plan](std::unique_ptr<Backend> inner) -> std::unique_ptr<Backend> {
    return std::make_unique<FaultBackend>(std::move(inner), plan);
  };
}

}  // namespace sluice::io
