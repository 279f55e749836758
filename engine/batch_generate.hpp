// Many sequences through one model, layer-major: every pass runs each active sequence's next
// tokens (a prompt chunk or one generated token) through block L before block L+1, so one read
// of a block serves the whole batch. Continuous batching: up to n_parallel sequences hold a KV
// slot; when one finishes, the next request takes its slot at the next pass. Each request has
// its own sampler and seed, and a row's logits do not depend on the rest of the batch
// (engine/transformer.hpp), so a request's tokens are the same whatever batch it ran in, and the
// same as engine/generate.hpp's single-sequence generate().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/forward.hpp"
#include "engine/generate.hpp"

namespace sluice {

namespace tok {
class Tokenizer;
}

struct SeqRequest {
  std::vector<std::int32_t> prompt;
  GenerateOptions options;
  // Generation ends when the text contains one of these; the text is cut before it (finish "stop").
  std::vector<std::string> stop;
};

enum class FinishReason { length, stop, error };
const char* to_string(FinishReason reason);

struct SeqResult {
  std::size_t index = 0;  // the request's order from the source (0, 1, ...)
  std::vector<std::int32_t> generated;
  std::string text;
  std::int64_t prompt_tokens = 0;
  FinishReason finish = FinishReason::length;
  std::string error;  // when finish == error: why (the request was refused, nothing ran)
};

struct BatchOptions {
  std::int32_t n_parallel = 4;      // KV slots: sequences in flight (the Transformer's n_seq)
  std::int32_t batch = 0;           // sequences per pass (0: n_parallel)
  std::int64_t max_pass_tokens = 512;  // prompt chunks are cut so a pass holds at most this many tokens
};

struct BatchRunStats {
  std::uint64_t passes = 0;
  std::uint64_t requests = 0;
  std::uint64_t failed = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t generated_tokens = 0;
  std::uint64_t sequence_steps = 0;  // summed sequences per pass (/ passes = mean batch)
  std::chrono::nanoseconds wall{0};
  double tokens_per_second() const;  // prompt + generated tokens / wall
  double generated_per_second() const;
};

struct PassInfo {
  std::uint64_t pass = 0;
  std::int32_t sequences = 0;
  std::int64_t tokens = 0;
  std::uint64_t finished = 0;  // requests finished so far
};

class BatchGenerator {
 public:
  BatchGenerator(Forward& model, Transformer& transformer, const tok::Tokenizer& tokenizer, BatchOptions options);

  // Pulls requests from `source` (nullopt: no more) as slots free up and hands each result to
  // `sink` when its request finishes (not in request order). `on_pass` (optional) is called
  // after every pass. Exceptions from the forward pass propagate; finished results were already
  // handed to the sink.
  BatchRunStats run(const std::function<std::optional<SeqRequest>()>& source, const std::function<void(SeqResult&&)>& sink,
                    const std::function<void(const PassInfo&)>& on_pass = {});

 private:
  Forward& model_;
  Transformer& transformer_;
  const tok::Tokenizer& tokenizer_;
  BatchOptions options_;
};

}  // namespace sluice
