#include "engine/batch_job.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <xxhash.h>

#include "common/units.hpp"
#include "engine/batch_input.hpp"
#include "engine/session.hpp"

namespace sluice {
namespace {

using json = nlohmann::ordered_json;  // output keys in the API's order: id, custom_id, response, error
using Clock = std::chrono::steady_clock;

// One input line that belongs to this shard: a request, or the error that answers it.
struct Entry {
  std::int64_t line = 0;
  std::string custom_id;  // "" when the line has none
  std::optional<JobRequest> request;
  std::string error;
};

std::string shard_key(const std::string& custom_id, std::int64_t line) {
  return custom_id.empty() ? fmt::format("line-{}", line) : custom_id;
}

std::string hex_id(const std::string& custom_id, std::int64_t line) {
  const std::string key = fmt::format("{}\n{}", custom_id, line);
  return fmt::format("{:016x}", XXH3_64bits(key.data(), key.size()));
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read the {} {}: {}", what, path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return lines;
}

// Every non-blank input line in order, parsed; a repeated custom_id is an error on its later
// lines. With count > 1 only the lines of shard `index` are kept.
std::vector<Entry> read_entries(const std::string& input, std::uint32_t index, std::uint32_t count, InputFormat* format_out) {
  const std::string text = read_file(input, "input");
  const auto lines = split_lines(text);
  InputFormat format = InputFormat::text;
  for (auto l : lines) {
    if (l.find_first_not_of(" \t\r") != std::string_view::npos) {
      format = detect_input_format(l);
      break;
    }
  }
  if (format_out) *format_out = format;
  std::unordered_map<std::string, std::int64_t> first_line;
  std::vector<Entry> entries;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto line = static_cast<std::int64_t>(i + 1);
    auto parsed = parse_input_line(lines[i], line, format);
    if (!parsed) continue;
    Entry e;
    e.line = line;
    if (auto* r = std::get_if<JobRequest>(&*parsed)) {
      e.custom_id = r->custom_id;
      e.request = std::move(*r);
    } else {
      auto& err = std::get<LineError>(*parsed);
      e.custom_id = err.custom_id;
      e.error = err.message;
    }
    if (!e.custom_id.empty()) {
      auto [it, added] = first_line.emplace(e.custom_id, line);
      if (!added) {
        e.request.reset();
        e.error = fmt::format("line {}: duplicate custom_id \"{}\" (first on line {})", line, e.custom_id, it->second);
      }
    }
    if (count > 1 && shard_of(shard_key(e.custom_id, line), count) != index) continue;
    entries.push_back(std::move(e));
  }
  return entries;
}

json custom_id_json(const Entry& e) { return e.custom_id.empty() ? json(nullptr) : json(e.custom_id); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_line(const Entry& e, const std::string& message) {
  const std::string id = hex_id(e.custom_id, e.line);
  json j = {{"id", "batch_req_" + id},
            {"custom_id", custom_id_json(e)},
            {"response",
             {{"status_code", 400},
              {"request_id", "req_" + id},
              {"body", {{"error", {{"message", message}, {"type", "invalid_request_error"}, {"param", nullptr}, {"code", nullptr}}}}}}},
            {"error", {{"code", "invalid_request"}, {"message", message}}}};
  return dump(j);
}

std::string response_line(const Entry& e, const SeqResult& r, const std::string& model, std::int64_t created) {
  const std::string id = hex_id(e.custom_id, e.line);
  const char* finish = r.finish == FinishReason::stop ? "stop" : "length";
  const auto completion = static_cast<std::int64_t>(r.generated.size());
  json usage = {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", completion}, {"total_tokens", r.prompt_tokens + completion}};
  json body;
  if (e.request->chat) {
    body = {{"id", "chatcmpl-" + id},
            {"object", "chat.completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({{{"index", 0},
                                      {"message", {{"role", "assistant"}, {"content", r.text}}},
                                      {"logprobs", nullptr},
                                      {"finish_reason", finish}}})},
            {"usage", usage}};
  } else {
    body = {{"id", "cmpl-" + id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({{{"text", r.text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}}})},
            {"usage", usage}};
  }
  json j = {{"id", "batch_req_" + id},
            {"custom_id", custom_id_json(e)},
            {"response", {{"status_code", 200}, {"request_id", "req_" + id}, {"body", body}}},
            {"error", nullptr}};
  return dump(j);
}

// The custom_id an output line answers ("" for null); throws when the line is not a result.
std::string answered_custom_id(std::string_view line, const std::string& path, std::size_t number) {
  const json j = json::parse(line, nullptr, false);
  if (!j.is_object() || !j.contains("custom_id") || !(j["custom_id"].is_string() || j["custom_id"].is_null())) {
    throw std::runtime_error(fmt::format("{} line {} is not a batch result line; not resuming into it (use another -o)", path, number));
  }
  return j["custom_id"].is_null() ? std::string() : j["custom_id"].get<std::string>();
}

// The output file, opened for appending in input order.
class OrderedWriter {
 public:
  OrderedWriter(std::string path, double fsync_seconds) : path_(std::move(path)), fsync_seconds_(fsync_seconds) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(fmt::format("cannot open the output {}: {}", path_, std::strerror(errno)));
    last_sync_ = Clock::now();
  }
  ~OrderedWriter() {
    if (fd_ >= 0) {
      ::fsync(fd_);
      ::close(fd_);
    }
  }
  // Cuts a torn last line; returns the complete lines present and the bytes cut.
  std::vector<std::string> recover(std::uint64_t* cut) {
    const std::string text = read_file(path_, "output");
    const std::size_t end = text.rfind('\n');
    const std::size_t keep = end == std::string::npos ? 0 : end + 1;
    *cut = text.size() - keep;
    if (*cut > 0 && ::ftruncate(fd_, off_t(keep)) != 0) {
      throw std::runtime_error(fmt::format("cannot truncate the torn last line of {}: {}", path_, std::strerror(errno)));
    }
    std::vector<std::string> lines;
    for (auto l : split_lines(std::string_view(text).substr(0, keep))) lines.emplace_back(l);
    return lines;
  }
  void append(const std::string& line) {
    std::string data = line + '\n';
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error(fmt::format("writing {} failed: {}", path_, std::strerror(errno)));
      done += std::size_t(n);
    }
    if (std::chrono::duration<double>(Clock::now() - last_sync_).count() >= fsync_seconds_) sync();
  }
  void sync() {
    if (::fsync(fd_) != 0) throw std::runtime_error(fmt::format("fsync of {} failed: {}", path_, std::strerror(errno)));
    last_sync_ = Clock::now();
  }

 private:
  std::string path_;
  double fsync_seconds_;
  int fd_ = -1;
  Clock::time_point last_sync_;
};

std::string format_eta(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--";
  const auto s = static_cast<std::int64_t>(seconds);
  return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60) : fmt::format("{}m{:02}s", s / 60, s % 60);
}

}  // namespace

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

JobSummary run_batch_job(Session& session, const JobOptions& o, std::ostream& log) {
  const auto started = Clock::now();
  InputFormat format = InputFormat::text;
  std::vector<Entry> entries = read_entries(o.input, o.shard_index, o.shard_count, &format);
  JobSummary summary;
  summary.requests = entries.size();

  OrderedWriter writer(o.output, o.fsync_seconds);
  std::uint64_t cut = 0;
  const std::vector<std::string> existing = writer.recover(&cut);
  if (cut > 0) log << fmt::format("sluice batch: cut a torn last line ({} bytes) from {}\n", cut, o.output);
  if (existing.size() > entries.size()) {
    throw std::runtime_error(fmt::format("{} has {} lines but {} (shard {}/{}) has only {} requests: it belongs to another job",
                                         o.output, existing.size(), o.input, o.shard_index, o.shard_count, entries.size()));
  }
  for (std::size_t i = 0; i < existing.size(); ++i) {
    const std::string got = answered_custom_id(existing[i], o.output, i + 1);
    if (got != entries[i].custom_id) {
      throw std::runtime_error(fmt::format("{} line {} answers custom_id \"{}\" but request {} of {} is \"{}\" (input line {}): "
                                           "the output belongs to another input or shard; use another -o",
                                           o.output, i + 1, got, i + 1, o.input, entries[i].custom_id, entries[i].line));
    }
  }
  summary.resumed = existing.size();
  log << fmt::format("sluice batch: {} requests in {} ({} format){}{}\n", entries.size(), o.input, to_string(format),
                     o.shard_count > 1 ? fmt::format(", shard {}/{}", o.shard_index, o.shard_count) : "",
                     summary.resumed ? fmt::format("; resuming after {} already answered", summary.resumed) : "");

  // The chat template: the override, else recognised from the model's own.
  std::optional<ChatTemplateKind> chat_template = o.chat_template;
  const std::optional<std::string> model_template = session.metadata().get_string("tokenizer.chat_template");
  if (!chat_template && model_template) chat_template = detect_chat_template(*model_template);

  struct stat st {};
  const std::int64_t created = ::stat(o.input.c_str(), &st) == 0 ? std::int64_t(st.st_mtime) : 0;
  const std::int64_t n_ctx = session.n_ctx();
  const std::size_t n = entries.size();
  std::vector<std::optional<std::string>> ready(n);
  std::size_t written = summary.resumed, next = summary.resumed;
  std::vector<std::size_t> position_of;  // SeqResult::index -> entry position
  std::uint64_t errors = 0;
  auto flush = [&] {
    while (written < n && ready[written]) {
      writer.append(*ready[written]);
      ready[written].reset();
      ++written;
    }
  };
  auto answer_error = [&](std::size_t pos, const std::string& message) {
    ready[pos] = error_line(entries[pos], message);
    ++summary.failed;
    ++errors;
    if (o.max_errors >= 0 && std::int64_t(errors) > o.max_errors) summary.stopped_by_max_errors = true;
  };

  auto source = [&]() -> std::optional<SeqRequest> {
    while (next < n && !summary.stopped_by_max_errors) {
      const std::size_t pos = next++;
      const Entry& e = entries[pos];
      if (!e.request) {
        answer_error(pos, e.error);
        flush();
        continue;
      }
      const JobRequest& r = *e.request;
      std::string text = r.prompt;
      if (r.chat) {
        if (!chat_template) {
          answer_error(pos, fmt::format("line {}: messages need a chat template, and this model's is {}; pass --chat-template "
                                        "(llama2, llama3, chatml, mistral or gemma)",
                                        e.line, model_template ? "not one sluice knows" : "missing"));
          flush();
          continue;
        }
        try {
          text = render_chat(*chat_template, r.messages);
        } catch (const std::exception& ex) {
          answer_error(pos, fmt::format("line {}: {}", e.line, ex.what()));
          flush();
          continue;
        }
      }
      SeqRequest request;
      request.prompt = session.tokenizer().encode(text, true, r.chat);
      request.options.n_predict = r.max_tokens.value_or(o.default_max_tokens);
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
        flush();
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
      answer_error(pos, fmt::format("line {}: {}", entries[pos].line, r.error));
    } else {
      ready[pos] = response_line(entries[pos], r, o.model_name, created);
      ++summary.ok;
      summary.prompt_tokens += r.prompt_tokens;
      summary.generated_tokens += std::int64_t(r.generated.size());
    }
    flush();
  };
  auto last_log = Clock::now();
  std::int64_t processed = 0;  // tokens through the model so far (prompt chunks and generated)
  auto on_pass = [&](const PassInfo& pass) {
    processed += pass.tokens;
    const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    const std::uint64_t done = written;
    const std::uint64_t done_now = done - summary.resumed;
    const double eta = done_now > 0 ? elapsed / double(done_now) * double(n - done) : -1.0;
    const double tps = elapsed > 0 ? double(processed) / elapsed : 0.0;
    if (o.live_progress) {
      constexpr int kWidth = 30;
      const int filled = n ? int(double(done) / double(n) * kWidth) : kWidth;
      log << fmt::format("\r[{}{}] {}/{} | {:.1f} tok/s | ETA {} | pass {} ({} seq) ", std::string(std::size_t(filled), '#'),
                         std::string(std::size_t(kWidth - filled), '.'), done, n, tps, format_eta(eta), pass.pass, pass.sequences)
          << std::flush;
    } else if (std::chrono::duration<double>(Clock::now() - last_log).count() >= o.progress_seconds) {
      last_log = Clock::now();
      log << fmt::format("sluice batch: {}/{} done | {:.1f} tok/s | ETA {} | pass {} ({} sequences)\n", done, n, tps,
                         format_eta(eta), pass.pass, pass.sequences)
          << std::flush;
    }
  };

  BatchRunStats stats = BatchGenerator(session.forward(), session.transformer(), session.tokenizer(), o.batch).run(source, sink, on_pass);
  (void)source();  // lines after the last request (errors only) are answered too, unless stopped
  flush();
  writer.sync();
  if (o.live_progress) log << "\n";
  summary.passes = stats.passes;
  summary.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (StreamedModel* s = session.streamed()) {
    const StreamStats ss = s->stats();
    summary.bytes_read = ss.bytes_streamed + ss.embedding_bytes;
    summary.overlap = ss.overlap();
  }
  return summary;
}

void write_job_report(const JobSummary& s, const JobOptions& o, const std::string& path) {
  json j = {{"input", o.input},
            {"output", o.output},
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
            {"bytes_read", s.bytes_read},
            {"overlap", s.overlap},
            {"stopped_by_max_errors", s.stopped_by_max_errors}};
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw std::runtime_error(fmt::format("cannot write the report {}", path));
}

std::uint64_t merge_shard_outputs(const std::string& input, const std::vector<std::string>& shards, const std::string& output,
                                  std::ostream& log) {
  const auto count = static_cast<std::uint32_t>(shards.size());
  if (count == 0) throw std::invalid_argument("merge needs the shard outputs");
  const std::vector<Entry> entries = read_entries(input, 0, 1, nullptr);
  std::vector<std::vector<std::string>> lines(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string text = read_file(shards[i], "shard output");
    const std::size_t end = text.rfind('\n');
    for (auto l : split_lines(std::string_view(text).substr(0, end == std::string::npos ? 0 : end + 1))) lines[i].emplace_back(l);
  }
  std::vector<std::size_t> taken(count, 0);
  std::string merged;
  std::uint64_t missing = 0;
  for (const Entry& e : entries) {
    const std::uint32_t s = shard_of(shard_key(e.custom_id, e.line), count);
    if (taken[s] >= lines[s].size()) {
      ++missing;
      log << fmt::format("missing: input line {} (custom_id {}) of shard {}/{}: {} has {} lines\n", e.line,
                         e.custom_id.empty() ? "none" : "\"" + e.custom_id + "\"", s, count, shards[s], lines[s].size());
      continue;
    }
    const std::string& line = lines[s][taken[s]++];
    const std::string got = answered_custom_id(line, shards[s], taken[s]);
    if (got != e.custom_id) {
      throw std::runtime_error(fmt::format("{} line {} answers \"{}\" where input line {} (\"{}\") was expected: is it shard {}/{} "
                                           "of {}?",
                                           shards[s], taken[s], got, e.line, e.custom_id, s, count, input));
    }
    merged += line;
    merged += '\n';
  }
  for (std::uint32_t s = 0; s < count; ++s) {
    if (taken[s] < lines[s].size()) {
      throw std::runtime_error(fmt::format("{} has {} lines but shard {}/{} of {} has only {} requests", shards[s], lines[s].size(), s,
                                           count, input, taken[s]));
    }
  }
  const std::string tmp = output + ".merging";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << merged;
    out.flush();
    if (!out) throw std::runtime_error(fmt::format("cannot write {}", tmp));
  }
  std::filesystem::rename(tmp, output);
  log << fmt::format("sluice batch merge: {} lines from {} shards into {}{}\n", entries.size() - missing, count, output,
                     missing ? fmt::format("; {} missing", missing) : "");
  return missing;
}

}  // namespace sluice
