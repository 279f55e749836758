// `sluice batch`: a file of requests through one model, overnight, unattended (DESIGN.md §1).
//  - Requests run with continuous batching on the layer-major engine (engine/batch_generate.hpp);
//    each has its own seed (given, or derived from its custom_id), so its answer does not depend on
//    the batch it ran in.
//  - Output is OpenAI Batch output JSONL in input order. A line is written whole with one write()
//    once every earlier line is written; the file is fsync'ed at a bounded interval and at the end.
//  - Resume: rerunning the same command truncates a torn last line, checks that the lines present
//    answer this input's first requests (by custom_id), and continues after them.
//  - Bad lines (invalid JSON, missing fields, unknown url, duplicate custom_id, a prompt that does
//    not fit the context, messages without a chat template) get a status_code 400 line naming the
//    input line; --max-errors stops a job that is mostly garbage.
//  - Sharding: request i goes to shard hash(custom_id) mod COUNT (line-N without a custom_id);
//    merge_shard_outputs() interleaves the shards' outputs back into input order.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "engine/batch_generate.hpp"
#include "model/chat_template.hpp"

namespace sluice {

class Session;

struct JobOptions {
  std::string input, output, report;
  std::int64_t max_errors = -1;          // stop after more error lines than this (-1: never)
  std::int32_t default_max_tokens = 256;
  std::optional<ChatTemplateKind> chat_template;  // overrides the model's
  std::uint32_t shard_index = 0, shard_count = 1;
  double fsync_seconds = 2.0;
  double progress_seconds = 10.0;        // log-line interval when stderr is not a terminal
  bool live_progress = false;            // a redrawn progress bar (stderr is a terminal)
  std::uint64_t seed = 0;                // mixed into the seed of requests that give none
  std::string model_name;
  BatchOptions batch;
};

struct JobSummary {
  std::uint64_t requests = 0;            // this shard's, in the input
  std::uint64_t resumed = 0;             // already answered in the output when the job started
  std::uint64_t ok = 0, failed = 0;      // answered by this run
  std::int64_t prompt_tokens = 0, generated_tokens = 0;
  double seconds = 0;
  std::uint64_t passes = 0;
  std::uint64_t bytes_read = 0;
  double overlap = 0;
  bool stopped_by_max_errors = false;
  double tokens_per_second() const { return seconds > 0 ? double(prompt_tokens + generated_tokens) / seconds : 0.0; }
};

// The shard (0..count-1) of an input line: by its custom_id, or "line-N" when it has none.
std::uint32_t shard_of(const std::string& key, std::uint32_t count);
// "INDEX/COUNT" -> {index, count}; throws std::invalid_argument.
std::pair<std::uint32_t, std::uint32_t> parse_shard(const std::string& text);

// Runs (or resumes) the job. Throws std::runtime_error for what stops the job as a whole (input
// unreadable, output from another input); everything finished before is already written.
JobSummary run_batch_job(Session& session, const JobOptions& options, std::ostream& log);
void write_job_report(const JobSummary& summary, const JobOptions& options, const std::string& path);

// Interleaves shard outputs (shards[i] = shard i's output) into `output` in the input's order.
// Returns the number of requests missing (each is named on `log`); 0 means complete.
std::uint64_t merge_shard_outputs(const std::string& input, const std::vector<std::string>& shards, const std::string& output,
                                  std::ostream& log);

}  // namespace sluice
