#include "engine/batch_input.hpp"

#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace sluice {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxStops = 4;  // the OpenAI API's limit

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

// Reads the body fields shared by both JSON formats into `r`; returns an error message or "".
std::string read_body(const json& body, JobRequest& r) {
  if (!body.is_object()) return "the body is not a JSON object";
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
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > (1 << 24)) {
      return fmt::format("\"{}\" must be an integer between 0 and {}", key, 1 << 24);
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

const char* to_string(InputFormat format) {
  switch (format) {
    case InputFormat::openai: return "openai";
    case InputFormat::jsonl: return "jsonl";
    case InputFormat::text: return "text";
  }
  return "?";
}

InputFormat detect_input_format(std::string_view first_line) {
  const auto at = first_line.find_first_not_of(" \t\r");
  if (at == std::string_view::npos || first_line[at] != '{') return InputFormat::text;
  const json j = json::parse(first_line, nullptr, false);
  if (j.is_object() && (j.contains("custom_id") || j.contains("url") || j.contains("body"))) return InputFormat::openai;
  return InputFormat::jsonl;  // a broken first JSON line is still a JSON file, reported per line
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
  if (auto e = read_body(j, r); !e.empty()) return fail(e);
  return r;
}

}  // namespace sluice
