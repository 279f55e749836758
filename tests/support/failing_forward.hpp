// A Forward test double: passes through to another Forward, except that its fail_at-th pass
// (1-based; 0: none) throws a sluice::Exception before computing anything, as a read error of the
// model would.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/error.hpp"
#include "engine/forward.hpp"

namespace sluice::testing {

inline constexpr const char* kFailedPassMessage = "reading model.sluice at offset 4096 failed";

class FailingForward final : public Forward {
 public:
  FailingForward(Forward& inner, std::uint64_t fail_at) : inner_(inner), fail_at_(fail_at) {}
  const ModelConfig& config() const override { return inner_.config(); }
  std::uint64_t passes = 0;

 protected:
  void forward_pass(Transformer& transformer, const Batch& batch, float* logits) override {
    if (++passes == fail_at_) {
      throw Exception(ErrorContext{ErrorKind::io, "model.sluice", "blk.1", 3, 4096, 5}, kFailedPassMessage);
    }
    inner_.forward(transformer, batch, out_);
    std::copy(out_.begin(), out_.end(), logits);
  }

 private:
  Forward& inner_;
  std::uint64_t fail_at_;
  std::vector<float> out_;
};

}  // namespace sluice::testing
