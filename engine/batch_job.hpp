// `sluice batch`: a file of requests through one model, overnight, unattended (DESIGN.md §1), safe
// for the user's files.
//  - Input (engine/batch_input.hpp): a regular file read as a stream, its format voted by all
//    its lines or given (--input-format); lines longer than a limit are skipped unread.
//  - Requests run with continuous batching on the layer-major engine (engine/engine.hpp);
//    each has its own seed (given, or derived from its custom_id), so its answer does not depend on
//    the batch it ran in.
//  - Output (engine/batch_output.hpp): OpenAI Batch output JSONL in input order, every line
//    naming (in its id) the request and the model it answers; finished answers are journaled at
//    once in any order (OUT.journal), so a slow request holds back nothing; the output is locked
//    (OUT.lock) for the job's life; fsync at a bounded interval and at the end; every write checked.
//  - Resume: rerun the same command. Nothing in an existing OUT is changed until it is proven to
//    be this job's (same input lines, same settings, same model); a changed request under the same
//    custom_id, another model, another input or a file that is not an output is refused, naming
//    the line or the model. -o equal to -i is refused. An OUT that is not a regular file
//    (/dev/stdout as a pipe) is written without resume.
//  - Stopping: SIGINT/SIGTERM (JobOptions::stop_signal) end the job after the current pass; what
//    is finished is written and fsynced, and a rerun resumes.
//  - Bad lines (invalid JSON, missing fields, bad values, unknown url, duplicate custom_id, a
//    prompt that does not fit the context -- refused by its byte length before it is tokenized
//    when it cannot fit --, messages without a chat template) get a status_code 400 line naming
//    the input line; --max-errors stops a job that is mostly garbage.
//  - Chat messages are tokenized as text: only the chat template's own markers become special
//    tokens, so a message cannot open a turn (--special: parse special tokens in content too).
//  - Sharding: request i goes to shard hash(custom_id) mod COUNT (line-N without a custom_id);
//    merge_shard_outputs() (engine/batch_merge.hpp) interleaves the shards' outputs back into input order.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/batch_input.hpp"
#include "engine/chat_choice.hpp"
#include "model/chat_template.hpp"

namespace sluice {

class Session;

struct JobOptions {
  std::string input, output, report;
  std::string model_path;                // for the model's identity (engine/batch_output.hpp)
  std::optional<InputFormat> input_format;  // nullopt: voted by the file's lines
  std::int64_t max_errors = -1;          // stop after more error lines than this (-1: never)
  std::int32_t default_max_tokens = 256;
  std::optional<ChatTemplateKind> chat_template;  // overrides the model's
  bool special = false;                  // parse special tokens in prompts and message contents
  std::uint32_t shard_index = 0, shard_count = 1;
  double fsync_seconds = 2.0;            // 0: after every answer
  double progress_seconds = 10.0;        // log-line interval when stderr is not a terminal
  bool live_progress = false;            // a redrawn progress bar (stderr is a terminal)
  std::uint64_t seed = 0;                // mixed into the seed of requests that give none
  std::string model_name;
  BatchOptions batch;
  // Optional: called with the session and `batch` before the engine is made (speculative
  // decoding sets its drafter there, once the target is loaded).
  std::function<void(Session&, BatchOptions&)> prepare_engine;
  // Set (to the signal's number) by a SIGINT/SIGTERM handler: the job stops after the current
  // pass. Null: never stopped.
  const std::atomic<int>* stop_signal = nullptr;
  // Crash tests only: raise SIGSTOP once this many answers have been recorded by this run (0:
  // never), so a test can kill or signal the job at a known point without timing.
  std::uint64_t test_stop_after = 0;
};

namespace tok {
class Tokenizer;
}

// Throws std::invalid_argument when the messages do not fit the template (model/chat_template.hpp),
// or when the model's own template refuses them (its raise_exception). With `model`, a chat is
// rendered by the model's own template, and by the built-in `chat_template` only where the Jinja
// subset cannot render it.
PromptText prompt_text(const JobRequest& request, ChatTemplateKind chat_template, const ModelChatTemplate* model = nullptr);
// BOS as the vocabulary asks, then the text; special tokens only inside the markup unless
// `special` (then anywhere, as llama.cpp's server does). Thread-safe.
std::vector<std::int32_t> tokenize_prompt(const tok::Tokenizer& tokenizer, const PromptText& prompt, bool special);
// The most bytes of text one token of this vocabulary stands for (special tokens' text and a
// 4-byte character behind <unk> included): a text of B bytes is at least B / this many tokens.
std::size_t max_token_bytes(const tok::Tokenizer& tokenizer);

// Checks JobOptions' values; throws std::invalid_argument naming the option.
void validate_job_options(const JobOptions& options);

struct JobSummary {
  std::uint64_t requests = 0;            // this shard's, in the input
  std::uint64_t resumed = 0;             // already answered (output or journal) when the job started
  std::uint64_t ok = 0, failed = 0;      // answered by this run
  std::uint64_t server_errors = 0;       // of `failed`: requests whose pass failed (status 500 lines), not bad requests
  std::int64_t prompt_tokens = 0, generated_tokens = 0;
  double seconds = 0;
  std::uint64_t passes = 0;
  std::int64_t drafted_tokens = 0, accepted_tokens = 0;  // speculative decoding
  BatchRunStats engine;                  // the engine's own statistics of this run
  std::uint64_t bytes_read = 0;
  double overlap = 0;
  bool stopped_by_max_errors = false;
  int stopped_by_signal = 0;             // SIGINT / SIGTERM, or 0
  std::string input_format;
  double tokens_per_second() const { return seconds > 0 ? double(prompt_tokens + generated_tokens) / seconds : 0.0; }
};

// Seconds left in a job, from token throughput: requests_left x the tokens an answered request
// took on average (answered_tokens / answered), less the tokens the requests in flight have been
// through (processed_tokens - answered_tokens), at tokens_per_second. -1 (unknown) until one
// request is answered.
double job_eta(std::uint64_t requests_left, std::uint64_t answered, std::int64_t answered_tokens, std::int64_t processed_tokens,
               double tokens_per_second);

// The shard (0..count-1) of an input line: by its custom_id, or "line-N" when it has none.
std::uint32_t shard_of(const std::string& key, std::uint32_t count);
// "INDEX/COUNT" -> {index, count}; throws std::invalid_argument.
std::pair<std::uint32_t, std::uint32_t> parse_shard(const std::string& text);

// One job. The constructor does everything that can refuse the job before a model is loaded:
// reads the input, locks and verifies the output (sluice::Exception naming the file, line or
// model). run() answers what is left; it throws sluice::Exception for what stops the job as a
// whole (a failed write, an I/O error), with everything finished before already written.
class BatchJob {
 public:
  BatchJob(const JobOptions& options, std::ostream& log);
  ~BatchJob();
  BatchJob(const BatchJob&) = delete;
  BatchJob& operator=(const BatchJob&) = delete;
  // The context (tokens per sequence) the requests still to answer need: for each, an upper
  // bound on its prompt's tokens (its bytes, as rendered by the widest chat template that could
  // apply, + 256 for what a model's own template may add without --chat-template, + 2 for BOS
  // and a leading space) + its max_tokens; the most of these, at least 1.
  // Reads every pending line once more (~1 ms per thousand). A line that will be refused
  // (unparsable, messages that fit no template) adds nothing.
  std::int64_t context_needed() const;
  JobSummary run(Session& session);
  // The same with every pass run by `forward` over the session's transformer (tests: a Forward
  // that fails a chosen pass).
  JobSummary run(Session& session, Forward& forward);
  // What answers the job's requests: pulls them from `source` until it returns nullopt, hands
  // each result to `sink` with SeqResult::index = the request's order from `source`, and calls
  // `on_pass` now and then (the stop signal is seen there and in `source`, by an exception that
  // must pass through). All three on the caller's thread. The default is an Engine over the
  // session; a server passes one that submits to its shared engine (tools/serve_batches.hpp).
  using Runner = std::function<BatchRunStats(const std::function<std::optional<SeqRequest>()>& source,
                                             const std::function<void(SeqResult&&)>& sink,
                                             const std::function<void(const PassInfo&)>& on_pass)>;
  // The session gives the tokenizer, the chat template and the context; `runner` runs requests.
  JobSummary run(Session& session, const Runner& runner);

 private:
  void check_chat_requests(bool model_has_template) const;
  struct State;
  std::unique_ptr<State> state_;
};

// BatchJob(options, log).run(session).
JobSummary run_batch_job(Session& session, const JobOptions& options, std::ostream& log);
void write_job_report(const JobSummary& summary, const JobOptions& options, const std::string& path);

}  // namespace sluice
