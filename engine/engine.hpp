// The one generation loop, for every front-end (`sluice run`, `sluice batch`, a server): many
// sequences through one model, layer-major. Every pass runs each active sequence's next tokens (a
// prompt chunk, or its last accepted token plus any drafted tokens to verify) through block L
// before block L+1, so one read of a block serves the whole batch. Continuous batching: up to
// n_parallel sequences hold a KV slot; when one finishes, the next request takes its slot at the
// next pass. Single-prompt generation is a batch of one through the same loop (Engine::generate).
//
// Each request has its own sampler and seed, and a row's logits do not depend on the rest of the
// batch (engine/transformer.hpp), so a request's tokens are the same whatever batch it ran in.
//
// One pass, per sequence (the step speculative decoding needs):
//   feed:   tokens[evaluated ..] (prompt chunk or the last accepted token), then up to max_draft
//           drafted tokens d1..dk; logits wanted for the last fed token and every drafted one;
//   accept: sample t1 from the first wanted row; while t_i == d_i, d_i's KV entry is valid and
//           t_{i+1} comes from the next row; the first mismatch (or the last row) ends the step.
//           The KV positions of rejected drafts are forgotten (KvCache::truncate).
// Accepting a draft only when the sampler, drawing exactly as plain decoding would, picks the
// same token keeps every request's output identical to plain decoding (greedy or seeded).
//
// Errors: when a pass throws sluice::Exception, only the sequences in that pass fail
// (FinishReason::error, the message and the exception in their result); their slots free up and
// the loop goes on with the rest. Other exceptions (and those of the callbacks) propagate.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/trace.hpp"
#include "engine/forward.hpp"
#include "engine/sampling.hpp"

namespace sluice {

namespace tok {
class Tokenizer;
}
class Session;

struct GenerateOptions {
  std::int32_t n_predict = 64;
  SamplingParams sampling;
  bool stop_at_eog = true;  // stop at end-of-generation tokens (eos, eot)
};

struct SeqRequest {
  std::vector<std::int32_t> prompt;
  GenerateOptions options;
  // Generation ends when the text contains one of these; the text is cut before it (finish "stop").
  std::vector<std::string> stop;
  // Optional: receives the text as it is generated (whole UTF-8 characters). Text that could be
  // the start of a stop string is held back until it cannot, so the pieces add up to the result's
  // text exactly. Called on the loop's thread.
  std::function<void(std::string_view)> on_text;
  // The first `cached` tokens of `prompt` are already in the KV slot the request lands in (the
  // caller's previous request there left them: a chat's earlier turns), so only the rest is run.
  // At most prompt.size() - 1 is used (the last token's logits are needed). Only for a caller
  // that knows the slot: Engine::generate's is slot 0.
  std::int64_t cached = 0;
  // Optional: asked after every token; true ends the request (FinishReason::stop) with what it
  // has (a chat's Ctrl-C). Called on the loop's thread.
  std::function<bool()> cancelled;
};

enum class FinishReason { length, stop, error };
const char* to_string(FinishReason reason);

struct SeqResult {
  std::size_t index = 0;  // the request's order from the source (0, 1, ...)
  std::vector<std::int32_t> generated;
  std::string text;
  std::int64_t prompt_tokens = 0;
  FinishReason finish = FinishReason::length;
  // When finish == error: why (the request was refused and nothing ran, or its pass failed) and,
  // for a failed pass, the exception it threw (a sluice::Exception: kind, file, offset).
  std::string error;
  std::exception_ptr exception;
  std::chrono::nanoseconds prompt_time{0};      // admitted -> first token sampled
  std::chrono::nanoseconds generation_time{0};  // first token sampled -> finished
  std::int64_t drafted = 0, accepted = 0;       // drafted tokens fed / accepted (speculative)
};

// One sequence's request for drafted tokens this pass (speculative decoding): propose up to `max`
// tokens to follow `tokens` (the request's prompt and accepted tokens so far) into `draft`.
// Fewer or none: a plain step for it. Token ids must be below n_vocab.
struct DraftRequest {
  std::int32_t slot = 0;   // the sequence's KV slot (0 .. n_parallel-1): a drafter's per-sequence state
  std::size_t index = 0;   // the request's SeqResult::index
  std::span<const std::int32_t> tokens;
  std::int32_t max = 0;
  std::vector<std::int32_t> draft;  // out
};

// Drafts for every sequence of a pass at once (engine/speculative.hpp: a draft model batches
// them through one pass of its own; prompt lookup; tests feed a known continuation).
using Drafter = std::function<void(std::span<DraftRequest> requests)>;

// How many tokens to draft per sequence and pass (engine/speculative.hpp DraftLength): fixed,
// or chosen from the measured acceptance rate and pass costs.
class DraftLength;

struct BatchOptions {
  std::int32_t n_parallel = 4;         // KV slots: sequences in flight (the Transformer's n_seq)
  std::int32_t batch = 0;              // sequences per pass (0: n_parallel)
  std::int64_t max_pass_tokens = 512;  // prompt chunks (and drafts) are cut so a pass holds at most this many tokens
  Drafter drafter;                     // optional
  std::int32_t max_draft = 0;          // most drafted tokens per sequence per pass
  // Optional (with a drafter): picks the draft length each pass, at most max_draft, and is told
  // what each pass cost and how many drafts were accepted. Null: always max_draft. Not owned.
  DraftLength* draft_length = nullptr;
  TraceRecorder* trace = nullptr;      // optional: draft and verify spans on the "speculative" lane
  // A server's queue: the source's nullopt means "nothing now", not "no more": it is asked again
  // every pass (requests that arrive join the passes in flight), and run() returns once no
  // sequence is in flight and the source has nothing.
  bool source_may_resume = false;
};

struct BatchRunStats {
  std::uint64_t passes = 0;
  std::uint64_t failed_passes = 0;  // passes that threw sluice::Exception (their sequences failed)
  std::uint64_t requests = 0;
  std::uint64_t failed = 0;  // refused requests and sequences of failed passes
  std::int64_t prompt_tokens = 0;
  std::int64_t generated_tokens = 0;
  std::int64_t drafted_tokens = 0, accepted_tokens = 0;
  std::uint64_t draft_passes = 0;             // passes that verified at least one drafted token
  std::chrono::nanoseconds draft_time{0};     // in the drafter
  std::chrono::nanoseconds forward_time{0};   // in the model's passes (verification included)
  std::uint64_t sequence_steps = 0;  // summed sequences per pass (/ passes = mean batch)
  std::chrono::nanoseconds wall{0};
  double tokens_per_second() const;  // prompt + generated tokens / wall
  double generated_per_second() const;
  // Generated tokens per sequence step (1 without speculation) and accepted / drafted.
  double tokens_per_step() const;
  double acceptance() const;
};

struct PassInfo {
  std::uint64_t pass = 0;
  std::int32_t sequences = 0;
  std::int64_t tokens = 0;
  std::int64_t drafted = 0, accepted = 0;  // this pass's drafted tokens and how many were accepted
  std::uint64_t finished = 0;  // requests finished so far
  std::int32_t failed = 0;     // sequences of this pass that failed with it (0: the pass ran)
};

class Engine {
 public:
  // Throws std::invalid_argument when n_parallel exceeds the cache's KV slots.
  Engine(Forward& model, Transformer& transformer, const tok::Tokenizer& tokenizer, BatchOptions options = {});
  // The session's model, cache and tokenizer; max_pass_tokens defaults to the session's.
  explicit Engine(Session& session, std::optional<BatchOptions> options = std::nullopt);

  // Pulls requests from `source` (nullopt: no more) as slots free up and hands each result to
  // `sink` when its request finishes (not in request order); refused requests (empty prompt,
  // prompt + n_predict past the context) are answered with FinishReason::error at once. `on_pass`
  // (optional) is called after every pass, failed ones included. Not thread-safe.
  BatchRunStats run(const std::function<std::optional<SeqRequest>()>& source, const std::function<void(SeqResult&&)>& sink,
                    const std::function<void(const PassInfo&)>& on_pass = {});

  // One request alone through the same loop (request.on_text streams it). Throws sluice::Exception
  // (ErrorKind::invalid) when the request is refused, and rethrows what a failed pass threw.
  SeqResult generate(SeqRequest request);
  // The statistics of the last run() (or generate()).
  const BatchRunStats& last_run() const { return last_run_; }

 private:
  Forward& model_;
  Transformer& transformer_;
  const tok::Tokenizer& tokenizer_;
  BatchOptions options_;
  BatchRunStats last_run_;
};

// The name the batch front-ends know the engine by.
using BatchGenerator = Engine;

}  // namespace sluice
