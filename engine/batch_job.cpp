// engine/batch_job.hpp: one `sluice batch` job, from the input's index to the last fsync. The
// output's durability and checks live in engine/batch_output.cpp, the wire format in
// engine/batch_wire.cpp, the input in engine/batch_input.cpp, merging shards in
// engine/batch_merge.cpp.
#include "engine/batch_job.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <xxhash.h>

#include "common/error.hpp"
#include "common/units.hpp"
#include "engine/batch_output.hpp"
#include "engine/batch_wire.hpp"
#include "engine/session.hpp"
#include "model/jinja.hpp"

namespace sluice {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// Bytes a model's own chat template may add beyond the widest built-in one (context_needed).
constexpr std::size_t kModelTemplateAllowance = 256;

// The most bytes any UTF-8 character has: <unk> may stand for one.
constexpr std::size_t kMaxUtf8Bytes = 4;

// Thrown from the generator's callbacks when a stop signal arrived; caught by run().
struct Stopped {
  int signal;
};

std::string format_eta(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--";
  const auto s = static_cast<std::int64_t>(seconds);
  return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60) : fmt::format("{}m{:02}s", s / 60, s % 60);
}

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// What changes an answer besides the line itself and the model (engine/batch_wire.hpp).
std::uint64_t settings_hash(const JobOptions& o, InputFormat format) {
  const std::string key = fmt::format("format={}\nmax_tokens={}\nseed={}\nchat_template={}\nspecial={}", to_string(format),
                                      o.default_max_tokens, o.seed, o.chat_template ? to_string(*o.chat_template) : "model",
                                      o.special ? 1 : 0);
  return XXH3_64bits(key.data(), key.size());
}

}  // namespace

PromptText prompt_text(const JobRequest& r, ChatTemplateKind chat_template, const ModelChatTemplate* model) {
  if (!r.chat) return {r.prompt, {}};
  return render_chat_prompt(r.messages, chat_template, model);
}

std::vector<std::int32_t> tokenize_prompt(const tok::Tokenizer& tokenizer, const PromptText& prompt, bool special) {
  if (special) return tokenizer.encode(prompt.text, true, true);
  return tokenizer.encode(prompt.text, true, std::span(prompt.markup));
}

std::size_t max_token_bytes(const tok::Tokenizer& tokenizer) {
  std::size_t most = kMaxUtf8Bytes;
  for (std::size_t id = 0; id < tokenizer.size(); ++id) {
    most = std::max(most, tokenizer.token_to_piece(std::int32_t(id), true).size());
  }
  return most;
}

void validate_job_options(const JobOptions& o) {
  if (o.default_max_tokens < 1) {
    throw std::invalid_argument(fmt::format("--max-tokens must be at least 1, got {}", o.default_max_tokens));
  }
  if (o.max_errors < -1) throw std::invalid_argument(fmt::format("--max-errors must be -1 (never stop) or more, got {}", o.max_errors));
  if (!std::isfinite(o.fsync_seconds) || o.fsync_seconds < 0) {
    throw std::invalid_argument(fmt::format("--fsync-interval must be a number of seconds >= 0, got {}", o.fsync_seconds));
  }
  if (!std::isfinite(o.progress_seconds) || o.progress_seconds <= 0) {
    throw std::invalid_argument(fmt::format("--progress-interval must be a number of seconds > 0, got {}", o.progress_seconds));
  }
  if (o.shard_count == 0 || o.shard_index >= o.shard_count) {
    throw std::invalid_argument(fmt::format("shard {}/{} is out of range", o.shard_index, o.shard_count));
  }
}

double job_eta(std::uint64_t requests_left, std::uint64_t answered, std::int64_t answered_tokens, std::int64_t processed_tokens,
               double tokens_per_second) {
  if (answered == 0 || tokens_per_second <= 0) return -1.0;
  const double per_request = double(answered_tokens) / double(answered);
  const double in_flight = std::max(0.0, double(processed_tokens - answered_tokens));
  return std::max(0.0, per_request * double(requests_left) - in_flight) / tokens_per_second;
}

std::uint32_t shard_of(const std::string& key, std::uint32_t count) {
  return count <= 1 ? 0 : static_cast<std::uint32_t>(XXH3_64bits(key.data(), key.size()) % count);
}

std::pair<std::uint32_t, std::uint32_t> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("no slash");
    const unsigned long index = std::stoul(text.substr(0, slash)), count = std::stoul(text.substr(slash + 1));
    if (count == 0 || index >= count || count > 1000000) throw std::invalid_argument("range");
    return {std::uint32_t(index), std::uint32_t(count)};
  } catch (const std::exception&) {
    throw std::invalid_argument(fmt::format("--shard expects INDEX/COUNT with 0 <= INDEX < COUNT, got '{}'", text));
  }
}

struct BatchJob::State {
  JobOptions o;
  std::ostream& log;
  InputIndex input;
  ExpectedResults expected;
  std::unique_ptr<DurableOutput> output;
  int input_fd = -1;

  State(const JobOptions& options, std::ostream& l) : o(options), log(l) {}
  ~State() {
    if (input_fd >= 0) ::close(input_fd);
  }
};

BatchJob::BatchJob(const JobOptions& options, std::ostream& log) : state_(std::make_unique<State>(options, log)) {
  State& s = *state_;
  validate_job_options(s.o);
  s.input = scan_input(s.o.input, s.o.input_format, s.o.shard_index, s.o.shard_count);
  s.input_fd = ::open(s.o.input.c_str(), O_RDONLY | O_CLOEXEC);
  if (s.input_fd < 0) {
    const int err = errno;
    throw Exception(ErrorContext{ErrorKind::io, s.o.input, {}, -1, -1, err},
                    fmt::format("cannot read the input {}: {}", s.o.input, std::strerror(err)));
  }
  s.expected.input = s.o.input;
  s.expected.model = model_identity(s.o.model_path);
  const std::uint64_t settings = settings_hash(s.o, s.input.format);
  for (const InputEntry& e : s.input.entries) {
    s.expected.ids.push_back(result_id(e.custom_id, e.line, e.line_hash, settings, s.expected.model.tag()));
    s.expected.custom_ids.push_back(e.custom_id);
    s.expected.lines.push_back(e.line);
  }
  s.output = std::make_unique<DurableOutput>(OutputOptions{s.o.output, s.o.fsync_seconds}, s.expected, log);
}

BatchJob::~BatchJob() = default;

std::int64_t BatchJob::context_needed() const {
  const State& s = *state_;
  constexpr ChatTemplateKind kAll[] = {ChatTemplateKind::llama2,  ChatTemplateKind::llama3, ChatTemplateKind::chatml,
                                       ChatTemplateKind::mistral, ChatTemplateKind::gemma,  ChatTemplateKind::gpt_oss};
  std::int64_t most = 1;
  for (std::size_t pos = 0; pos < s.input.entries.size(); ++pos) {
    const InputEntry& e = s.input.entries[pos];
    if (e.is_error || s.output->answered(pos)) continue;
    const ParsedLine parsed = read_input_line(s.input_fd, s.o.input, e, s.input.format);
    const JobRequest* r = std::get_if<JobRequest>(&parsed);
    if (!r) continue;
    std::size_t bytes = 0;
    bool fits_a_template = false;
    // Before the model is loaded its template is unknown: the widest one that could render it.
    for (const ChatTemplateKind kind : kAll) {
      if (r->chat && s.o.chat_template && kind != *s.o.chat_template) continue;
      try {
        bytes = std::max(bytes, prompt_text(*r, kind).text.size());
        fits_a_template = true;
      } catch (const std::invalid_argument&) {
      }
      if (!r->chat) break;  // a completion's prompt is its text, whatever the template
    }
    if (!fits_a_template) continue;
    // The model's own template (rendered when no --chat-template is given) may write more than
    // the built-in ones: a default system prompt (Qwen2.5: 70 bytes), a date line (Llama 3.1).
    if (r->chat && !s.o.chat_template) bytes += kModelTemplateAllowance;
    most = std::max(most, std::int64_t(bytes) + 2 + r->max_tokens.value_or(s.o.default_max_tokens));
  }
  return most;
}

// Messages without a chat template are a problem of the whole job, said once before it starts:
// refused when every request still to answer is a chat, else a warning (those lines get 400s).
void BatchJob::check_chat_requests(bool model_has_template) const {
  const State& s = *state_;
  std::size_t pending = 0, chats = 0;
  for (std::size_t pos = 0; pos < s.input.entries.size(); ++pos) {
    const InputEntry& e = s.input.entries[pos];
    if (e.is_error || s.output->answered(pos)) continue;
    const ParsedLine parsed = read_input_line(s.input_fd, s.o.input, e, s.input.format);
    const JobRequest* r = std::get_if<JobRequest>(&parsed);
    if (!r) continue;
    ++pending;
    if (r->chat) ++chats;
  }
  if (chats == 0) return;
  const std::string why = fmt::format(
      "{} of the {} requests still to answer use messages, and this model's chat template is {}; pass --chat-template "
      "(llama2, llama3, chatml, mistral, gemma or gpt-oss)",
      chats, pending, model_has_template ? "not one sluice knows" : "missing");
  if (chats == pending) throw std::invalid_argument(fmt::format("{}: nothing was run", why));
  s.log << fmt::format("sluice batch: warning: {}; they are answered with status 400\n", why);
}

JobSummary BatchJob::run(Session& session) { return run(session, session.forward()); }

JobSummary BatchJob::run(Session& session, Forward& forward) {
  const JobOptions& o = state_->o;
  JobSummary summary = run(session, [&](const auto& source, const auto& sink, const auto& on_pass) {
    BatchOptions batch_options = o.batch;
    if (o.prepare_engine) o.prepare_engine(session, batch_options);
    return Engine(forward, session.transformer(), session.tokenizer(), batch_options).run(source, sink, on_pass);
  });
  // Read here, not in the Runner overload: with a runner on another thread's engine (a server),
  // the streaming counters belong to that thread.
  if (StreamedModel* sm = session.streamed()) {
    const StreamStats ss = sm->stats();
    summary.bytes_read = ss.bytes_streamed + ss.embedding_bytes;
    summary.overlap = ss.overlap();
  }
  return summary;
}

JobSummary BatchJob::run(Session& session, const Runner& runner) {
  State& s = *state_;
  const JobOptions& o = s.o;
  std::ostream& log = s.log;
  DurableOutput& out = *s.output;
  const std::vector<InputEntry>& entries = s.input.entries;
  const auto started = Clock::now();
  JobSummary summary;
  summary.requests = entries.size();
  summary.resumed = out.resumed();
  summary.input_format = to_string(s.input.format);
  log << fmt::format("sluice batch: {} requests in {} ({} format{}){}{}\n", entries.size(), o.input, to_string(s.input.format),
                     s.input.format_detected ? ", detected" : "",
                     o.shard_count > 1 ? fmt::format(", shard {}/{}", o.shard_index, o.shard_count) : "",
                     summary.resumed ? fmt::format("; resuming: {} already answered", summary.resumed) : "");

  // The chat template: the override, else the model's own (engine/chat_choice.hpp), with the
  // built-in kind recognised in it as the fallback for messages the Jinja subset cannot render.
  const std::optional<std::string> model_template = session.metadata().get_string("tokenizer.chat_template");
  ChatTemplateChoice choice = choose_chat_template(o.chat_template, model_template, session.tokenizer());
  if (!choice.unparsed.empty()) {
    log << fmt::format("sluice batch: the model's chat template is outside the Jinja subset sluice renders ({}); {}\n", choice.unparsed,
                       choice.builtin ? fmt::format("using the built-in {} template", to_string(*choice.builtin)) : "no chat template");
  }
  const std::optional<ChatTemplateKind> chat_template = choice.builtin;
  const std::optional<ModelChatTemplate>& own_template = choice.own;
  if (!chat_template && !own_template) check_chat_requests(model_template.has_value());

  struct stat st {};
  const std::int64_t created = ::fstat(s.input_fd, &st) == 0 ? std::int64_t(st.st_mtime) : 0;
  // The "model" of every answer: the one given, else the model's own name, else its file's stem.
  const std::string model_name =
      !o.model_name.empty() ? o.model_name
                            : session.metadata().get_string("general.name").value_or(std::filesystem::path(o.model_path).stem().string());
  const std::int64_t n_ctx = session.n_ctx();
  const std::size_t token_bytes = max_token_bytes(session.tokenizer());
  const std::size_t n = entries.size();
  std::size_t next = 0;
  std::vector<std::size_t> position_of;  // SeqResult::index -> entry position
  std::uint64_t errors = 0;
  auto check_stop = [&] {
    if (o.stop_signal && o.stop_signal->load() != 0) throw Stopped{o.stop_signal->load()};
  };
  auto record = [&](std::size_t pos, const std::string& line) {
    out.put(pos, line);
    if (o.test_stop_after > 0 && out.recorded() == o.test_stop_after) ::raise(SIGSTOP);
  };
  auto answer_error = [&](std::size_t pos, const std::string& message, ErrorLine kind = ErrorLine::invalid_request) {
    record(pos, error_line(s.expected.ids[pos], entries[pos].custom_id, message, kind));
    ++summary.failed;
    ++errors;
    if (o.max_errors >= 0 && std::int64_t(errors) > o.max_errors) summary.stopped_by_max_errors = true;
  };
  std::vector<bool> chat_of(n, false);

  auto source = [&]() -> std::optional<SeqRequest> {
    check_stop();
    while (next < n && !summary.stopped_by_max_errors) {
      const std::size_t pos = next++;
      if (out.answered(pos)) continue;
      const InputEntry& e = entries[pos];
      if (e.is_error) {
        answer_error(pos, e.error);
        continue;
      }
      ParsedLine parsed = read_input_line(s.input_fd, o.input, e, s.input.format);
      if (auto* err = std::get_if<LineError>(&parsed)) {
        answer_error(pos, err->message);
        continue;
      }
      const JobRequest& r = std::get<JobRequest>(parsed);
      chat_of[pos] = r.chat;
      if (r.chat && !chat_template && !own_template) {
        answer_error(pos, fmt::format("line {}: messages need a chat template, and this model's is {}; pass --chat-template "
                                      "(llama2, llama3, chatml, mistral or gemma)",
                                      e.line, model_template ? "not one sluice knows" : "missing"));
        continue;
      }
      PromptText text;
      try {
        text = prompt_text(r, chat_template.value_or(ChatTemplateKind::chatml), own_template ? &*own_template : nullptr);
      } catch (const std::exception& ex) {
        answer_error(pos, fmt::format("line {}: {}", e.line, ex.what()));
        continue;
      }
      SeqRequest request;
      request.options.n_predict = r.max_tokens.value_or(o.default_max_tokens);
      // A text of B bytes is at least B / token_bytes tokens: a prompt longer than that bound
      // cannot fit, and is refused before tokenizing it (which costs ~40x its size in memory).
      const std::int64_t room = n_ctx - request.options.n_predict;
      if (room < 1 || std::uint64_t(text.text.size()) > std::uint64_t(room) * token_bytes) {
        answer_error(pos, fmt::format("line {}: the prompt ({} bytes, at least {} tokens) + max_tokens {} exceed the context of {} "
                                      "(raise -c)",
                                      e.line, text.text.size(), (text.text.size() + token_bytes - 1) / token_bytes,
                                      request.options.n_predict, n_ctx));
        continue;
      }
      request.prompt = tokenize_prompt(session.tokenizer(), text, o.special);
      request.options.sampling.temperature = r.temperature.value_or(1.0f);
      request.options.sampling.top_p = r.top_p.value_or(1.0f);
      request.options.sampling.top_k = 0;
      request.options.sampling.min_p = 0.0f;
      // No seed given: one derived from the custom_id, so a rerun (or resume) answers the same.
      request.options.sampling.seed = r.seed.value_or(XXH3_64bits_withSeed(e.custom_id.data(), e.custom_id.size(), o.seed));
      request.stop = r.stop;
      const std::int64_t need = std::int64_t(request.prompt.size()) + request.options.n_predict;
      if (need > n_ctx) {
        answer_error(pos, fmt::format("line {}: the prompt ({} tokens) + max_tokens {} exceed the context of {} (raise -c)", e.line,
                                      request.prompt.size(), request.options.n_predict, n_ctx));
        continue;
      }
      position_of.push_back(pos);
      return request;
    }
    return std::nullopt;
  };
  auto sink = [&](SeqResult&& r) {
    const std::size_t pos = position_of[r.index];
    if (r.finish == FinishReason::error) {
      // r.exception: the pass it was in failed (the engine went on with the other requests).
      answer_error(pos, fmt::format("line {}: {}", entries[pos].line, r.error),
                   r.exception ? ErrorLine::server_error : ErrorLine::invalid_request);
      if (r.exception) ++summary.server_errors;
    } else {
      record(pos, response_line(s.expected.ids[pos], entries[pos].custom_id, chat_of[pos], r, model_name, created));
      ++summary.ok;
      summary.prompt_tokens += r.prompt_tokens;
      summary.generated_tokens += std::int64_t(r.generated.size());
    }
  };
  auto last_log = Clock::now();
  std::int64_t processed = 0;  // tokens through the model so far (prompt chunks and generated)
  auto on_pass = [&](const PassInfo& pass) {
    processed += pass.tokens;
    summary.passes = pass.pass;  // kept when a stop signal ends run() early
    const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    const std::uint64_t done = summary.resumed + out.recorded();
    const double tps = elapsed > 0 ? double(processed) / elapsed : 0.0;
    const double eta = job_eta(n - std::min<std::uint64_t>(done, n), summary.ok, summary.prompt_tokens + summary.generated_tokens,
                               processed, tps);
    if (o.live_progress) {
      constexpr int kWidth = 30;
      const int filled = n ? int(double(std::min<std::uint64_t>(done, n)) / double(n) * kWidth) : kWidth;
      log << fmt::format("\r[{}{}] {}/{} | {:.1f} tok/s | ETA {} | pass {} ({} seq) ", std::string(std::size_t(filled), '#'),
                         std::string(std::size_t(kWidth - filled), '.'), done, n, tps, format_eta(eta), pass.pass, pass.sequences)
          << std::flush;
    } else if (std::chrono::duration<double>(Clock::now() - last_log).count() >= o.progress_seconds) {
      last_log = Clock::now();
      log << fmt::format("sluice batch: {}/{} done | {:.1f} tok/s | ETA {} | pass {} ({} sequences)\n", done, n, tps,
                         format_eta(eta), pass.pass, pass.sequences)
          << std::flush;
    }
    check_stop();
  };

  BatchRunStats stats;
  try {
    check_stop();
    // The engine asks `source` until it says no more, so every line (error lines after the last
    // request included) is answered when run() returns.
    stats = runner(source, sink, on_pass);
    out.finish();
  } catch (const Stopped& stop) {
    summary.stopped_by_signal = stop.signal;
    out.sync();
    if (o.live_progress) log << "\n";
    log << fmt::format("sluice batch: stopped by {}: {} of {} requests answered ({} by this run), fsynced to {}{}; rerun the same "
                       "command to resume\n",
                       signal_name(stop.signal), summary.resumed + out.recorded(), n, out.recorded(), o.output,
                       out.streaming() ? "" : " and its journal");
  } catch (const std::exception& ex) {
    try {
      out.sync();
    } catch (...) {  // the error below already says what failed
    }
    const std::string message = fmt::format(
        "{}; {} of {} requests are answered{} -- rerun the same command to resume once this is fixed", ex.what(),
        summary.resumed + out.recorded(), n, out.streaming() ? "" : fmt::format(" and safe in {} and its journal", o.output));
    // The same kind, file and offset as what stopped the job.
    if (const auto* typed = dynamic_cast<const Exception*>(&ex)) throw Exception(typed->context(), message);
    throw std::runtime_error(message);
  }
  if (o.live_progress && !summary.stopped_by_signal) log << "\n";
  summary.passes = std::max(summary.passes, stats.passes);
  summary.drafted_tokens = stats.drafted_tokens;
  summary.accepted_tokens = stats.accepted_tokens;
  summary.engine = stats;
  summary.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return summary;
}

JobSummary run_batch_job(Session& session, const JobOptions& options, std::ostream& log) {
  return BatchJob(options, log).run(session);
}

void write_job_report(const JobSummary& s, const JobOptions& o, const std::string& path) {
  json j = {{"input", o.input},
            {"output", o.output},
            {"input_format", s.input_format},
            {"shard", fmt::format("{}/{}", o.shard_index, o.shard_count)},
            {"requests", s.requests},
            {"resumed", s.resumed},
            {"ok", s.ok},
            {"failed", s.failed},
            {"prompt_tokens", s.prompt_tokens},
            {"generated_tokens", s.generated_tokens},
            {"seconds", s.seconds},
            {"tokens_per_second", s.tokens_per_second()},
            {"passes", s.passes},
            {"drafted_tokens", s.drafted_tokens},
            {"accepted_tokens", s.accepted_tokens},
            {"tokens_per_sequence_step", s.engine.tokens_per_step()},
            {"bytes_read", s.bytes_read},
            {"overlap", s.overlap},
            {"stopped_by_max_errors", s.stopped_by_max_errors},
            {"stopped_by_signal", s.stopped_by_signal}};
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  out.flush();
  if (!out) throw Exception(ErrorContext{ErrorKind::io, path}, fmt::format("cannot write the report {}", path));
}

}  // namespace sluice
