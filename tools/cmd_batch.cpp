// `sluice batch`: run a file of requests (OpenAI Batch JSONL, plain JSONL or one prompt per line)
// through a model, resumably, in shards if asked; `sluice batch merge` joins shard outputs.
// The job itself lives in engine/batch_job.hpp.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>
#include <limits>

#include "common/units.hpp"
#include "engine/batch_job.hpp"
#include "engine/batch_merge.hpp"
#include "engine/session.hpp"
#include "tools/cli_util.hpp"
#include "tools/session_flags.hpp"
#include "tools/speculative_flags.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct BatchCliOptions {
  JobOptions job;
  SessionFlags flags;
  SpeculativeFlags speculative;
  SessionOptions session;  // from flags, in run_job
  std::string chat_template, shard;
  std::uint32_t shard_count = 0;
  std::int32_t batch = 8;
  double progress_seconds = 10;
  std::string progress = "auto";
  std::string input_format = "auto";
  std::string fail_on_errors = "all";
  // merge
  std::vector<std::string> shard_outputs;
};

// --shard, else SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, else JOB_COMPLETION_INDEX with
// --shard-count (Kubernetes Indexed Jobs give the index only).
void resolve_shard(BatchCliOptions& o) {
  if (!o.shard.empty()) {
    std::tie(o.job.shard_index, o.job.shard_count) = parse_shard(o.shard);
    return;
  }
  const char* slurm_id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* slurm_count = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (slurm_id && slurm_count) {
    std::tie(o.job.shard_index, o.job.shard_count) = parse_shard(fmt::format("{}/{}", slurm_id, slurm_count));
    return;
  }
  if (const char* k8s = std::getenv("JOB_COMPLETION_INDEX"); k8s && o.shard_count > 0) {
    std::tie(o.job.shard_index, o.job.shard_count) = parse_shard(fmt::format("{}/{}", k8s, o.shard_count));
    return;
  }
  if (o.shard_count > 1) throw std::invalid_argument("--shard-count needs JOB_COMPLETION_INDEX (or give --shard INDEX/COUNT)");
}

// The first SIGINT/SIGTERM asks the job to stop after the current pass (it writes, fsyncs and
// exits 128 + signal); a second one ends the process at once (what is finished is on disk).
std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.load() != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop_signal.store(sig);
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int run_job(BatchCliOptions o) {
  resolve_shard(o);
  if (o.input_format != "auto") o.job.input_format = input_format_from_name(o.input_format);
  o.session = session_options(o.flags);
  o.session.n_seq = o.batch;
  o.session.log = &std::cerr;
  if (!o.chat_template.empty()) {
    o.job.chat_template = chat_template_from_name(o.chat_template);
    if (!o.job.chat_template) {
      throw std::invalid_argument(fmt::format("--chat-template {}: unknown (llama2, llama3, chatml, mistral, gemma, gpt-oss)", o.chat_template));
    }
  }
  if (o.flags.plan_only) {  // the plan for these flags: no input read, no output touched, no request run
    Speculation::prepare(o.speculative, o.session);  // a draft model's bytes come out of the target's budget
    print_plan_only(o.session, std::cout);
    return 0;
  }
  o.job.batch.n_parallel = o.batch;
  o.job.batch.batch = o.batch;
  o.job.batch.max_pass_tokens = o.session.pass_tokens;
  o.job.live_progress = o.progress == "bar" || (o.progress == "auto" && ::isatty(STDERR_FILENO));
  o.job.progress_seconds = o.progress_seconds;
  o.job.model_path = o.session.model;
  o.job.stop_signal = &g_stop_signal;
  std::shared_ptr<Speculation> speculation;  // set below, before the job runs
  o.job.prepare_engine = [&speculation, model = o.session.model](Session& session, BatchOptions& options) {
    if (speculation) speculation->attach(session, model, options, nullptr);
  };
  install_stop_handlers();
  // Input read, output locked and proven this job's before the model is loaded: a refusal is at once.
  BatchJob job(o.job, std::cerr);
  if (o.session.n_ctx == 0) {
    // No -c: the context is what the requests still to answer need (KV for a 4096 context per
    // sequence would take the budget's blocks for positions no request reaches).
    o.session.ctx_needed = job.context_needed() + (o.speculative.any() ? o.speculative.draft_max : 0);
  }
  // Before the target is planned: a draft model's bytes come out of its budget.
  speculation = Speculation::prepare(o.speculative, o.session);
  Session session(o.session);
  std::cerr << fmt::format("sluice batch: context {} tokens per sequence x {} sequences ({})\n", session.n_ctx(), o.batch,
                           o.session.n_ctx > 0 ? "-c" : fmt::format("the longest request needs at most {}; -c to set", o.session.ctx_needed));
  const JobSummary s = job.run(session);
  // Prompt and generated tokens share every pass, so the rates are per kind over the job's time:
  // each named, and the model's throughput (both kinds) apart.
  const double generated_rate = s.seconds > 0 ? double(s.generated_tokens) / s.seconds : 0.0;
  std::cerr << fmt::format(
      "sluice batch: {} requests: {} ok, {} failed, {} answered before | {} prompt + {} generated tokens in {:.1f} s: "
      "{:.2f} generated tok/s, {:.2f} tok/s through the model (prompt + generated) | {} passes, {} read, overlap {:.3f}{}\n",
      s.requests, s.ok, s.failed, s.resumed, s.prompt_tokens, s.generated_tokens, s.seconds, generated_rate, s.tokens_per_second(),
      s.passes, format_bytes(s.bytes_read), s.overlap, s.stopped_by_max_errors ? " | STOPPED: more errors than --max-errors" : "");
  session.print_stream_table(std::cerr, s.prompt_tokens + s.generated_tokens);
  if (speculation) speculation->print_summary(std::cerr, s.engine);
  if (!o.job.report.empty()) write_job_report(s, o.job, o.job.report);
  if (s.stopped_by_signal != 0) return 128 + s.stopped_by_signal;
  if (s.stopped_by_max_errors) return 3;
  // The job finished, but the engine failed some passes (a read or write error): their requests
  // have status 500 lines that a rerun keeps, so say it in the exit status, not only in the file.
  if (s.server_errors > 0) {
    std::cerr << fmt::format("sluice batch: {} requests failed with the pass they were in (status_code 500 lines in {})\n",
                             s.server_errors, o.job.output);
    return 4;
  }
  // Error lines are answers, but a job whose answers are all errors did not do its work: cron,
  // Slurm and CI see it in the exit status (--fail-on-errors).
  const bool all_failed = s.failed > 0 && s.ok == 0;
  if ((o.fail_on_errors == "all" && all_failed) || (o.fail_on_errors == "any" && s.failed > 0)) {
    std::cerr << fmt::format("sluice batch: {} of the {} requests answered by this run failed (status_code 400 lines in {}; "
                             "--fail-on-errors {})\n",
                             s.failed, s.ok + s.failed, o.job.output, o.fail_on_errors);
    return 5;
  }
  return 0;
}

}  // namespace

void add_batch_command(CLI::App& app) {
  auto o = std::make_shared<BatchCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "batch",
      "Answer a file of requests, one per line: OpenAI Batch JSONL ({custom_id, method, url, body}), plain JSONL\n"
      "({id, prompt | messages, max_tokens, temperature, top_p, seed, stop}) or plain text (one prompt per line).\n"
      "The format is voted by all lines (or --input-format); a bad line, the first included, is one error line.\n"
      "Output: OpenAI Batch output JSONL in input order; each line's id names its request and model.\n"
      "Finished answers go at once to OUT.journal (any order), so a kill loses at most --fsync-interval of work;\n"
      "OUT.lock keeps a second process off the same output (it is refused, naming the holder's PID).\n"
      "Rerun the same command after a crash, a kill or Ctrl-C to resume; an existing OUT is changed only once\n"
      "proven this job's (same input lines, settings and model), else refused naming the line or the model.\n"
      "-o /dev/stdout (a pipe) or another non-regular file is written without resume.\n"
      "SIGINT/SIGTERM: finish the pass, fsync, exit 130/143 (a second signal exits at once).\n"
      "Bad lines get a status_code 400 line naming the input line; the job goes on. When a pass fails (an I/O\n"
      "error), only its requests fail, with a status_code 500 line each; the job goes on.\n"
      "Exit: 0 done, 1 error (nothing finished is lost), 3 --max-errors, 4 done but some passes failed (500 lines),\n"
      "5 done but every request failed (or any, with --fail-on-errors any), 130/143 stopped by a signal.");
  cmd->require_subcommand(0, 1);
  add_session_flags(cmd, o->flags, kOmitNone, /*model_required=*/false);  // `batch merge` needs no model
  cmd->add_option("-i,--input", o->job.input, "Requests file")->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", o->job.output, "Results file (appended; resumed when it exists and is this job's)");
  cmd->add_option("--input-format", o->input_format, "auto (voted by the lines) | openai | jsonl | text")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "openai", "jsonl", "text"}));
  cmd->add_flag("--special", o->job.special,
                "Parse special tokens (e.g. <|im_start|>) written in prompts and message contents (default: they are text)");
  cmd->add_option("--batch,-b", o->batch, "Sequences sharing every pass (continuous batching)")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--max-tokens", o->job.default_max_tokens, "max_tokens for requests that give none (>= 1)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--max-errors", o->job.max_errors, "Stop (exit 3) after more error lines than this (-1: never)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(-1), std::numeric_limits<std::int64_t>::max()));
  cmd->add_option("--fail-on-errors", o->fail_on_errors,
                  "Exit 5 when the requests this run answered failed: all (every one failed) | any (at least one) | never")
      ->capture_default_str()
      ->check(CLI::IsMember({"all", "any", "never"}));
  cmd->add_option("--chat-template", o->chat_template, "llama2 | llama3 | chatml | mistral | gemma | gpt-oss (default: the model's)");
  cmd->add_option("--shard", o->shard, "INDEX/COUNT: answer only this shard's requests (default: SLURM_ARRAY_TASK_ID/COUNT)");
  cmd->add_option("--shard-count", o->shard_count, "COUNT for a Kubernetes Indexed Job (the index is JOB_COMPLETION_INDEX)");
  cmd->add_option("--report", o->job.report, "Write the summary as JSON to this file");
  cmd->add_option("--progress", o->progress, "auto (a bar on a terminal, else log lines) | bar | log")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "log"}));
  // Both checked by validate_job_options (finite, and > 0 / >= 0), with a readable message.
  cmd->add_option("--progress-interval", o->progress_seconds, "Seconds between log lines (> 0)")->capture_default_str();
  cmd->add_option("--fsync-interval", o->job.fsync_seconds, "Most seconds between fsyncs of the output and journal (0: every answer)")
      ->capture_default_str();
  // Crash tests only (hidden): SIGSTOP itself after N answers, so a test kills or signals it at a known point.
  cmd->add_option("--test-stop-after", o->job.test_stop_after)->group("");
  add_speculative_flags(cmd, o->speculative);
  cmd->add_option("--seed", o->job.seed, "Mixed into the seed of requests that give none")->capture_default_str();
  cmd->callback([o, cmd] {
    if (!cmd->get_subcommands().empty()) return;
    if (o->flags.plan_only && o->flags.session.model.empty()) throw CLI::ValidationError("batch", "--plan-only needs -m MODEL");
    if (!o->flags.plan_only && (o->flags.session.model.empty() || o->job.input.empty() || o->job.output.empty())) {
      throw CLI::ValidationError("batch", "needs -m MODEL -i INPUT -o OUTPUT");
    }
    const int status = run_job(*o);
    if (status != 0) std::exit(status);
  });

  CLI::App* merge = cmd->add_subcommand("merge", "Join shard outputs (given in shard order 0..COUNT-1) into one file in input order");
  auto input = std::make_shared<std::string>(), output = std::make_shared<std::string>();
  auto shards = std::make_shared<std::vector<std::string>>();
  merge->add_option("-i,--input", *input, "The requests file the shards ran")->required()->check(CLI::ExistingFile);
  merge->add_option("-o,--output", *output, "Merged results")->required();
  merge->add_option("shards", *shards, "Shard outputs, shard 0 first")->required()->check(CLI::ExistingFile);
  merge->callback([input, output, shards] {
    if (merge_shard_outputs(*input, *shards, *output, std::cerr) > 0) std::exit(1);
  });
}

}  // namespace sluice
