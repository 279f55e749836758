// Input of `sluice batch`: one request per line, in one of three formats, given (--input-format)
// or detected from the whole file by a vote of its lines (FormatVote), so one bad line -- the
// first included -- is one error line and never changes how the other lines are read:
//  - openai:  the OpenAI Batch API's JSONL, {"custom_id", "method": "POST", "url":
//             "/v1/chat/completions" | "/v1/completions", "body": {...}};
//  - jsonl:   {"id", "prompt" | "messages", ...the same sampling fields as a body};
//  - text:    one prompt per line (custom_id "line-N").
// Body fields: messages (chat) or prompt (completion), max_tokens or max_completion_tokens,
// temperature, top_p, seed, stop (a string or a list of up to 4). Every problem with a line is a
// LineError naming the line; the parser never throws on content (it is fuzzed).
//
// The file is read as a stream (LineReader: a bounded buffer, lines longer than a limit are
// skipped without being held) and indexed (scan_input: per line its offset, custom_id and a hash of
// its bytes); a request's line is read again (read_input_line) only when its turn comes, so the
// memory for the input does not grow with its prompts.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/chat_template.hpp"

namespace sluice {

enum class InputFormat { openai, jsonl, text };
const char* to_string(InputFormat format);
// "openai" | "jsonl" | "text"; nullopt for any other name.
std::optional<InputFormat> input_format_from_name(std::string_view name);
// The format one non-empty line looks like: openai (a JSON object with custom_id, url or body),
// jsonl (any other text starting with '{', broken JSON included), else text.
InputFormat detect_input_format(std::string_view line);

// A file's format by the vote of its non-empty lines: JSON when at least as many lines start with
// '{' as not; then openai when as many valid objects look like OpenAI Batch requests as like plain
// JSONL (and at least one does), else jsonl; otherwise text.
class FormatVote {
 public:
  void add(std::string_view line);
  InputFormat decide() const;

 private:
  std::uint64_t openai_ = 0, jsonl_ = 0, broken_json_ = 0, text_ = 0;
};

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

// The body of a /v1/chat/completions (chat) or /v1/completions request (an OpenAI API call, as
// `sluice serve` receives it), as a JobRequest, or the error message (invalid JSON, missing or
// mistyped fields). "stream" is the caller's: it is read into *stream and not refused.
std::variant<JobRequest, std::string> parse_request_body(std::string_view text, bool chat, bool* stream);

// Parses one line (without its newline). An empty (or all-blank) line yields nullopt: skipped.
std::optional<ParsedLine> parse_input_line(std::string_view text, std::int64_t line, InputFormat format);

// The longest input line read (bytes, without the newline). A prompt that fits a context of
// 32768 tokens is at most ~32768 x 64 bytes of text even for the longest tokens, and JSON escapes
// (\uXXXX) at most add 6x; longer lines cannot be answered, so they are skipped unread (an error
// line) instead of growing a buffer without bound.
inline constexpr std::size_t kMaxInputLineBytes = 32u << 20;

// Reads a regular file line by line through a fixed buffer. Not thread-safe. Throws
// std::runtime_error naming the file: unreadable, not a regular file (a pipe or device such as
// /dev/zero cannot be read twice, and may never end), or a read error.
class LineReader {
 public:
  struct Line {
    std::int64_t number = 0;     // 1-based
    std::uint64_t offset = 0;    // of its first byte in the file
    std::uint64_t bytes = 0;     // without the newline
    bool too_long = false;       // bytes > max_line_bytes: text is empty
    bool complete = true;        // ended by a newline (false: the file's last bytes)
    std::string_view text;       // valid until the next call
  };
  LineReader(const std::string& path, std::size_t max_line_bytes, const char* what = "input");
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  // The next line; false at the end of the file.
  bool next(Line& line);
  int fd() const { return fd_; }

 private:
  std::string path_;
  std::string what_;
  std::size_t max_line_bytes_;
  int fd_ = -1;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes in buffer_
  std::uint64_t file_offset_ = 0;    // of buffer_[end_]
  std::int64_t number_ = 0;
  bool eof_ = false;
  std::string line_;
};

// One non-blank input line of this shard: where it is, who it answers, and its error when it is
// not a request (invalid, or a repeated custom_id).
struct InputEntry {
  std::int64_t line = 0;
  std::uint64_t offset = 0, bytes = 0;
  std::string custom_id;       // "" when the line has none readable
  std::uint64_t line_hash = 0; // XXH3 of the line's bytes (without a trailing \r)
  bool is_error = false;
  std::string error;           // "line N: ..." when is_error
};

struct InputIndex {
  InputFormat format = InputFormat::text;
  bool format_detected = true;  // false: given
  std::vector<InputEntry> entries;
};

// Two streaming passes over `path`: the format vote (unless `format` is given), then every
// non-blank line parsed and indexed; a repeated custom_id is an error on its later lines. With
// shard_count > 1 only shard `shard_index`'s lines are kept (shard_of_line). Throws
// std::runtime_error for what LineReader throws.
InputIndex scan_input(const std::string& path, std::optional<InputFormat> format, std::uint32_t shard_index,
                      std::uint32_t shard_count);

// The shard (0..count-1) of a line: by its custom_id, or "line-N" when it has none.
std::uint32_t shard_of_line(const std::string& custom_id, std::int64_t line, std::uint32_t count);

// Reads entry's line again (pread on the input's descriptor) and parses it. Throws
// std::runtime_error when the line cannot be read, or reads differently than when it was indexed
// (the input changed during the job).
ParsedLine read_input_line(int fd, const std::string& path, const InputEntry& entry, InputFormat format);

}  // namespace sluice
