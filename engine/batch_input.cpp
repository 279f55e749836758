#include "engine/batch_input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <xxhash.h>
#include "common/error.hpp"

namespace sluice {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxStops = 4;  // the OpenAI API's limit

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

// A field sluice does not act on is refused, never ignored: a request that asked for something
// (a penalty, logprobs, tools) would otherwise get an answer without it and not know. OpenAI's
// fields that change nothing at their neutral value are accepted at that value; metadata fields
// (user, metadata, store, ...) change no answer and are accepted as they are.
std::string check_fields(const json& body, bool top_level_id) {
  static const std::set<std::string, std::less<>> kRead = {"messages", "prompt",      "max_tokens", "max_completion_tokens",
                                                         "temperature", "top_p",    "seed",       "stop",
                                                         "n",        "stream",      "model"};
  static const std::set<std::string, std::less<>> kMetadata = {"user", "metadata", "store", "service_tier", "stream_options",
                                                             "parallel_tool_calls"};
  auto neutral = [](const std::string& key, const json& v) {
    if (v.is_null()) return true;
    if (key == "logprobs" || key == "echo") return v.is_boolean() ? !v.get<bool>() : v.is_number_integer() && v.get<std::int64_t>() == 0;
    if (key == "top_logprobs" || key == "frequency_penalty" || key == "presence_penalty") return v.is_number() && v.get<double>() == 0.0;
    if (key == "best_of") return v.is_number_integer() && v.get<std::int64_t>() == 1;
    if (key == "logit_bias") return v.is_object() && v.empty();
    if (key == "suffix") return v.is_string() && v.get<std::string>().empty();
    if (key == "response_format") return v.is_object() && v.value("type", "") == "text";
    if (key == "tools" || key == "functions") return v.is_array() && v.empty();
    if (key == "tool_choice" || key == "function_call") return v.is_string() && v.get<std::string>() == "none";
    return false;
  };
  static const std::set<std::string, std::less<>> kNeutral = {"logprobs",   "echo",     "top_logprobs", "frequency_penalty",
                                                            "presence_penalty", "best_of", "logit_bias", "suffix",
                                                            "response_format", "tools", "functions", "tool_choice",
                                                            "function_call"};
  for (const auto& [key, value] : body.items()) {
    if (kRead.count(key) || kMetadata.count(key) || (top_level_id && key == "id")) continue;
    if (kNeutral.count(key)) {
      if (neutral(key, value)) continue;
      return fmt::format("\"{}\": {} is not supported (sluice samples with temperature, top_p, seed, stop and max_tokens)", key,
                         value.dump());
    }
    return fmt::format("unknown field \"{}\" (sluice reads messages or prompt, max_tokens, temperature, top_p, seed, stop, n, "
                       "stream)",
                       key);
  }
  return "";
}

// Reads the body fields shared by both JSON formats into `r`; returns an error message or "".
std::string read_body(const json& body, JobRequest& r, bool top_level_id = false) {
  if (!body.is_object()) return "the body is not a JSON object";
  if (std::string e = check_fields(body, top_level_id); !e.empty()) return e;
  const bool has_messages = body.contains("messages"), has_prompt = body.contains("prompt");
  if (r.chat && !has_messages) return "a chat completion needs \"messages\"";
  if (!r.chat && !has_prompt) return "a completion needs \"prompt\"";
  if (r.chat) {
    const json& messages = body["messages"];
    if (!messages.is_array() || messages.empty()) return "\"messages\" must be a non-empty array";
    for (const json& m : messages) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) return "every message needs a string \"role\"";
      if (!m.contains("content")) return "every message needs \"content\"";
      ChatMessage msg;
      msg.role = m["role"].get<std::string>();
      const json& content = m["content"];
      if (content.is_string()) {
        msg.content = content.get<std::string>();
      } else if (content.is_array()) {  // [{"type": "text", "text": ...}, ...]
        for (const json& part : content) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
            return "message content parts must be {\"type\": \"text\", \"text\": ...} (text only)";
          }
          msg.content += part["text"].get<std::string>();
        }
      } else {
        return "message \"content\" must be a string or an array of text parts";
      }
      r.messages.push_back(std::move(msg));
    }
  } else {
    const json& prompt = body["prompt"];
    if (!prompt.is_string()) return "\"prompt\" must be a string";
    r.prompt = prompt.get<std::string>();
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    const json& v = body[key];
    // At least 1: an answer of no tokens is no answer (and would pass for a successful one).
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > (1 << 24)) {
      return fmt::format("\"{}\" must be an integer between 1 and {}", key, 1 << 24);
    }
    r.max_tokens = static_cast<std::int32_t>(v.get<std::int64_t>());
  }
  auto number = [&](const char* key, float lo, float hi, std::optional<float>& out) -> std::string {
    if (!body.contains(key) || body[key].is_null()) return "";
    const json& v = body[key];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi) {
      return fmt::format("\"{}\" must be a number between {} and {}", key, lo, hi);
    }
    out = v.get<float>();
    return "";
  };
  if (auto e = number("temperature", 0.0f, 2.0f, r.temperature); !e.empty()) return e;
  if (auto e = number("top_p", 0.0f, 1.0f, r.top_p); !e.empty()) return e;
  if (body.contains("seed") && !body["seed"].is_null()) {
    const json& v = body["seed"];
    if (!v.is_number_integer()) return "\"seed\" must be an integer";
    r.seed = v.is_number_unsigned() ? v.get<std::uint64_t>() : static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& v = body["stop"];
    if (v.is_string()) {
      r.stop.push_back(v.get<std::string>());
    } else if (v.is_array() && v.size() <= kMaxStops) {
      for (const json& s : v) {
        if (!s.is_string()) return "\"stop\" entries must be strings";
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      return fmt::format("\"stop\" must be a string or an array of at most {} strings", kMaxStops);
    }
    for (const auto& s : r.stop) {
      if (s.empty()) return "\"stop\" strings must not be empty";
    }
  }
  if (body.contains("n") && !(body["n"].is_number_integer() && body["n"].get<std::int64_t>() == 1)) {
    return "only \"n\": 1 is supported";
  }
  if (body.contains("stream") && body["stream"].is_boolean() && body["stream"].get<bool>()) {
    return "\"stream\": true is not available in a batch";
  }
  return "";
}

}  // namespace

std::variant<JobRequest, std::string> parse_request_body(std::string_view text, bool chat, bool* stream) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return std::string("the body is not valid JSON");
  if (!body.is_object()) return std::string("the body is not a JSON object");
  *stream = false;
  if (body.contains("stream")) {
    if (!body["stream"].is_boolean() && !body["stream"].is_null()) return std::string("\"stream\" must be a boolean");
    *stream = body["stream"].is_boolean() && body["stream"].get<bool>();
    body.erase("stream");
  }
  JobRequest r;
  r.chat = chat;
  if (std::string error = read_body(body, r); !error.empty()) return error;
  return r;
}

const char* to_string(InputFormat format) {
  switch (format) {
    case InputFormat::openai: return "openai";
    case InputFormat::jsonl: return "jsonl";
    case InputFormat::text: return "text";
  }
  return "?";
}

std::optional<InputFormat> input_format_from_name(std::string_view name) {
  for (InputFormat f : {InputFormat::openai, InputFormat::jsonl, InputFormat::text}) {
    if (name == to_string(f)) return f;
  }
  return std::nullopt;
}

namespace {
enum class LineKind { openai, jsonl, broken_json, text };

LineKind classify(std::string_view line) {
  const auto at = line.find_first_not_of(" \t\r");
  if (at == std::string_view::npos || line[at] != '{') return LineKind::text;
  const json j = json::parse(line, nullptr, false);
  if (!j.is_object()) return LineKind::broken_json;
  if (j.contains("custom_id") || j.contains("url") || j.contains("body")) return LineKind::openai;
  return LineKind::jsonl;
}
}  // namespace

InputFormat detect_input_format(std::string_view line) {
  switch (classify(line)) {
    case LineKind::openai: return InputFormat::openai;
    case LineKind::jsonl:
    case LineKind::broken_json: return InputFormat::jsonl;  // a broken JSON line is still JSON, reported per line
    case LineKind::text: return InputFormat::text;
  }
  return InputFormat::text;
}

void FormatVote::add(std::string_view line) {
  if (blank(line)) return;
  switch (classify(line)) {
    case LineKind::openai: ++openai_; break;
    case LineKind::jsonl: ++jsonl_; break;
    case LineKind::broken_json: ++broken_json_; break;
    case LineKind::text: ++text_; break;
  }
}

InputFormat FormatVote::decide() const {
  const std::uint64_t json_like = openai_ + jsonl_ + broken_json_;
  if (json_like == 0 || json_like < text_) return InputFormat::text;
  return openai_ > 0 && openai_ >= jsonl_ ? InputFormat::openai : InputFormat::jsonl;
}

std::optional<ParsedLine> parse_input_line(std::string_view text, std::int64_t line, InputFormat format) {
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  if (blank(text)) return std::nullopt;
  JobRequest r;
  r.line = line;
  auto fail = [&](const std::string& message) -> ParsedLine { return LineError{line, r.custom_id, fmt::format("line {}: {}", line, message)}; };
  if (format == InputFormat::text) {
    r.custom_id = fmt::format("line-{}", line);
    r.prompt = std::string(text);
    return r;
  }
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return fail("invalid JSON");
  if (!j.is_object()) return fail("expected a JSON object");
  if (format == InputFormat::openai) {
    if (j.contains("custom_id") && j["custom_id"].is_string()) r.custom_id = j["custom_id"].get<std::string>();
    if (r.custom_id.empty()) return fail("missing \"custom_id\" (a non-empty string)");
    if (j.value("method", "") != "POST") return fail("\"method\" must be \"POST\"");
    if (!j.contains("url") || !j["url"].is_string()) return fail("missing \"url\"");
    const std::string url = j["url"].get<std::string>();
    if (url == "/v1/chat/completions") {
      r.chat = true;
    } else if (url != "/v1/completions") {
      return fail(fmt::format("unknown url \"{}\" (sluice serves /v1/chat/completions and /v1/completions)", url));
    }
    if (!j.contains("body")) return fail("missing \"body\"");
    if (auto e = read_body(j["body"], r); !e.empty()) return fail(e);
    return r;
  }
  // jsonl: the request's fields at the top level.
  if (j.contains("id")) {
    if (j["id"].is_string()) {
      r.custom_id = j["id"].get<std::string>();
    } else if (j["id"].is_number_integer()) {
      r.custom_id = j["id"].dump();
    }
    if (r.custom_id.empty()) return fail("\"id\" must be a non-empty string or an integer");
  } else {
    r.custom_id = fmt::format("line-{}", line);
  }
  r.chat = j.contains("messages");
  if (r.chat && j.contains("prompt")) return fail("give \"prompt\" or \"messages\", not both");
  if (!r.chat && !j.contains("prompt")) return fail("missing \"prompt\" or \"messages\"");
  if (auto e = read_body(j, r, /*top_level_id=*/true); !e.empty()) return fail(e);
  return r;
}

// LineReader's buffer: large enough that a read() returns many lines, small enough to ignore.
constexpr std::size_t kReadChunkBytes = 1u << 20;

LineReader::LineReader(const std::string& path, std::size_t max_line_bytes, const char* what)
    : path_(path), what_(what), max_line_bytes_(max_line_bytes) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0)
    throw Exception(ErrorContext{ErrorKind::io, path},
                    fmt::format("cannot read the {} {}: {}", what_, path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw Exception(ErrorContext{ErrorKind::invalid, path},
                    fmt::format("the {} {} is not a regular file (a pipe or a device): sluice batch reads it more than "
                                "once and needs it to end; save it to a file first",
                                what_, path));
  }
  buffer_.resize(kReadChunkBytes);
}

LineReader::~LineReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool LineReader::next(Line& line) {
  line_.clear();
  line = Line{};
  line.offset = file_offset_ - (end_ - begin_);
  std::uint64_t bytes = 0;
  for (;;) {
    if (begin_ == end_) {
      if (eof_) break;
      ssize_t n;
      do {
        n = ::read(fd_, buffer_.data(), buffer_.size());
      } while (n < 0 && errno == EINTR);  // a signal (SIGTERM is handled) interrupted the read: retry
      if (n < 0)
        throw Exception(ErrorContext{ErrorKind::io, path_},
                        fmt::format("reading the {} {} failed: {}", what_, path_, std::strerror(errno)));
      begin_ = 0;
      end_ = std::size_t(n);
      file_offset_ += std::uint64_t(n);
      if (n == 0) {
        eof_ = true;
        break;
      }
    }
    const char* start = buffer_.data() + begin_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', end_ - begin_));
    const std::size_t take = nl ? std::size_t(nl - start) : end_ - begin_;
    if (!line.too_long) {
      if (bytes + take > max_line_bytes_) {
        line.too_long = true;
        line_.clear();
        line_.shrink_to_fit();
      } else {
        line_.append(start, take);
      }
    }
    bytes += take;
    begin_ += take;
    if (nl) {
      ++begin_;
      line.number = ++number_;
      line.bytes = bytes;
      line.complete = true;
      line.text = line.too_long ? std::string_view() : std::string_view(line_);
      return true;
    }
  }
  if (bytes == 0) return false;
  line.number = ++number_;
  line.bytes = bytes;
  line.complete = false;
  line.text = line.too_long ? std::string_view() : std::string_view(line_);
  return true;
}

std::uint32_t shard_of_line(const std::string& custom_id, std::int64_t line, std::uint32_t count) {
  if (count <= 1) return 0;
  const std::string key = custom_id.empty() ? fmt::format("line-{}", line) : custom_id;
  return static_cast<std::uint32_t>(XXH3_64bits(key.data(), key.size()) % count);
}

namespace {
std::string_view without_cr(std::string_view text) {
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  return text;
}
}  // namespace

InputIndex scan_input(const std::string& path, std::optional<InputFormat> format, std::uint32_t shard_index,
                      std::uint32_t shard_count) {
  InputIndex index;
  LineReader::Line l;
  if (format) {
    index.format = *format;
    index.format_detected = false;
  } else {
    FormatVote vote;
    LineReader reader(path, kMaxInputLineBytes);
    while (reader.next(l)) {
      if (!l.too_long) vote.add(l.text);
    }
    index.format = vote.decide();
  }
  LineReader reader(path, kMaxInputLineBytes);
  std::unordered_map<std::string, std::int64_t> first_line;
  while (reader.next(l)) {
    InputEntry e;
    e.line = l.number;
    e.offset = l.offset;
    e.bytes = l.bytes;
    if (l.too_long) {
      e.is_error = true;
      e.error = fmt::format("line {}: {} bytes, longer than the {} bytes a request line may have", l.number, l.bytes,
                            kMaxInputLineBytes);
      e.line_hash = XXH3_64bits_withSeed(nullptr, 0, l.bytes);
    } else {
      const std::string_view text = without_cr(l.text);
      std::optional<ParsedLine> parsed = parse_input_line(text, l.number, index.format);
      if (!parsed) continue;
      e.line_hash = XXH3_64bits(text.data(), text.size());
      if (auto* r = std::get_if<JobRequest>(&*parsed)) {
        e.custom_id = std::move(r->custom_id);
      } else {
        auto& err = std::get<LineError>(*parsed);
        e.custom_id = std::move(err.custom_id);
        e.is_error = true;
        e.error = std::move(err.message);
      }
    }
    if (!e.custom_id.empty()) {
      auto [it, added] = first_line.emplace(e.custom_id, e.line);
      if (!added) {
        e.is_error = true;
        e.error = fmt::format("line {}: duplicate custom_id \"{}\" (first on line {})", e.line, e.custom_id, it->second);
      }
    }
    if (shard_count > 1 && shard_of_line(e.custom_id, e.line, shard_count) != shard_index) continue;
    index.entries.push_back(std::move(e));
  }
  return index;
}

ParsedLine read_input_line(int fd, const std::string& path, const InputEntry& entry, InputFormat format) {
  std::string text(entry.bytes, '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::pread(fd, text.data() + done, text.size() - done, off_t(entry.offset + done));
    if (n < 0 && errno == EINTR) continue;  // interrupted by a (handled) signal: retry
    if (n <= 0) {
      throw Exception(ErrorContext{ErrorKind::io, path, {}, -1, std::int64_t(entry.offset)},
                      fmt::format("reading line {} of {} (offset {}) failed: {}", entry.line, path, entry.offset,
                                  n == 0 ? "the file is shorter than when the job started" : std::strerror(errno)));
    }
    done += std::size_t(n);
  }
  const std::string_view line = without_cr(text);
  if (XXH3_64bits(line.data(), line.size()) != entry.line_hash) {
    throw Exception(ErrorContext{ErrorKind::invalid, path},
                    fmt::format("line {} of {} changed while the job ran; rerun to resume with the new input", entry.line, path));
  }
  std::optional<ParsedLine> parsed = parse_input_line(line, entry.line, format);
  if (!parsed)
    throw Exception(ErrorContext{ErrorKind::invalid, path},
                    fmt::format("line {} of {} changed while the job ran", entry.line, path));
  return std::move(*parsed);
}

}  // namespace sluice
