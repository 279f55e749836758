// The OpenAI Batch output format of `sluice batch`: one JSON object per line,
//   {"id": "batch_req_<ID>", "custom_id": ..., "response": {"status_code": 200 | 400 | 500,
//    "request_id": "req_<ID>", "body": {...}}, "error": null | {...}}
// in the API's key order. ID is 24 hex digits that make every line self-checking on resume:
//   - 16 digits: XXH3 of (custom_id, input line number, the line's bytes, the job settings that
//     change an answer: --max-tokens, --seed, chat template, --special, input format);
//   - 8 digits: the model's tag (engine/batch_output.hpp model_identity).
// A rerun therefore recognises an answer of this very request by this very model, and tells a
// changed request from a changed model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/engine.hpp"

namespace sluice {

// The 24-hex-digit ID of the answer to one input line (see above).
std::string result_id(const std::string& custom_id, std::int64_t line, std::uint64_t line_hash, std::uint64_t settings_hash,
                      std::uint32_t model_tag);
// A model tag as the 8 hex digits that end a result ID.
std::string model_tag_hex(std::uint32_t model_tag);
// The model-tag part of a result ID (its last 8 hex digits; "" for an ID of another shape).
std::string_view model_tag_of_id(std::string_view id);

// What an error line answers: a request refused (status_code 400: bad line, does not fit), or one
// the engine failed while running it (status_code 500: the pass it was in failed, e.g. a read
// error). Both are answers: a resumed job keeps them and does not run the request again.
enum class ErrorLine { invalid_request, server_error };
// An error line; custom_id "" is written as null.
std::string error_line(const std::string& id, const std::string& custom_id, const std::string& message,
                       ErrorLine kind = ErrorLine::invalid_request);
// A status_code 200 line: a chat.completion (chat) or a text_completion.
std::string response_line(const std::string& id, const std::string& custom_id, bool chat, const SeqResult& result,
                          const std::string& model, std::int64_t created);

// The body alone (what the HTTP API answers): {"id": "chatcmpl-<ID>" | "cmpl-<ID>", "object", "created",
// "model", "choices", "usage"}.
std::string completion_body_json(const std::string& id, bool chat, const SeqResult& result, const std::string& model,
                                 std::int64_t created);
// What a result line says about itself.
struct ResultLine {
  std::string id;         // the 24 hex digits after "batch_req_"
  std::string custom_id;  // "" for null
};
// How every result line begins (dump() writes no spaces): a file that does not begin so is not
// an output, whatever follows (see DurableOutput: a model file is refused without reading it).
inline constexpr std::string_view kResultLineStart = "{\"id\":\"batch_req_";
// nullopt when `line` is not a result line of sluice batch (not JSON, no such keys, another id shape).
std::optional<ResultLine> parse_result_line(std::string_view line);

}  // namespace sluice
