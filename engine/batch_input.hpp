// Input of `sluice batch`: one request per line, in one of three formats detected per file from
// its first non-empty line:
//  - openai:  the OpenAI Batch API's JSONL, {"custom_id", "method": "POST", "url":
//             "/v1/chat/completions" | "/v1/completions", "body": {...}};
//  - jsonl:   {"id", "prompt" | "messages", ...the same sampling fields as a body};
//  - text:    one prompt per line (custom_id "line-N").
// Body fields: messages (chat) or prompt (completion), max_tokens or max_completion_tokens,
// temperature, top_p, seed, stop (a string or a list of up to 4). Every problem with a line is a
// LineError naming the line; the parser never throws on content (it is fuzzed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/chat_template.hpp"

namespace sluice {

enum class InputFormat { openai, jsonl, text };
const char* to_string(InputFormat format);
// The format of a file whose first non-empty line is `first_line`.
InputFormat detect_input_format(std::string_view first_line);

struct JobRequest {
  std::int64_t line = 0;       // 1-based line in the input file
  std::string custom_id;
  bool chat = false;           // messages (chat completion) or prompt (completion)
  std::vector<ChatMessage> messages;
  std::string prompt;
  std::optional<std::int32_t> max_tokens;
  std::optional<float> temperature, top_p;
  std::optional<std::uint64_t> seed;
  std::vector<std::string> stop;
};

struct LineError {
  std::int64_t line = 0;
  std::string custom_id;       // when the line had a readable one, else empty
  std::string message;         // names the line: "line 7: ..."
};

using ParsedLine = std::variant<JobRequest, LineError>;

// Parses one line (without its newline). An empty (or all-blank) line yields nullopt: skipped.
std::optional<ParsedLine> parse_input_line(std::string_view text, std::int64_t line, InputFormat format);

}  // namespace sluice
