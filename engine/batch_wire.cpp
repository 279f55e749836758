// engine/batch_wire.hpp: OpenAI Batch output lines and their self-checking IDs.
#include "engine/batch_wire.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>

namespace sluice {
namespace {

using json = nlohmann::ordered_json;  // output keys in the API's order: id, custom_id, response, error

constexpr std::string_view kIdPrefix = "batch_req_";
constexpr std::size_t kRequestDigits = 16, kModelDigits = 8, kIdDigits = kRequestDigits + kModelDigits;

json custom_id_json(const std::string& custom_id) { return custom_id.empty() ? json(nullptr) : json(custom_id); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string model_tag_hex(std::uint32_t model_tag) { return fmt::format("{:08x}", model_tag); }

std::string_view model_tag_of_id(std::string_view id) {
  return id.size() == kIdDigits ? id.substr(kRequestDigits, kModelDigits) : std::string_view();
}

std::string result_id(const std::string& custom_id, std::int64_t line, std::uint64_t line_hash, std::uint64_t settings_hash,
                      std::uint32_t model_tag) {
  const std::string key = fmt::format("{}\n{}\n{:016x}\n{:016x}", custom_id, line, line_hash, settings_hash);
  return fmt::format("{:016x}{}", XXH3_64bits(key.data(), key.size()), model_tag_hex(model_tag));
}

std::string error_line(const std::string& id, const std::string& custom_id, const std::string& message, ErrorLine kind) {
  const bool server = kind == ErrorLine::server_error;
  json j = {{"id", std::string(kIdPrefix) + id},
            {"custom_id", custom_id_json(custom_id)},
            {"response",
             {{"status_code", server ? 500 : 400},
              {"request_id", "req_" + id},
              {"body",
               {{"error",
                 {{"message", message},
                  {"type", server ? "server_error" : "invalid_request_error"},
                  {"param", nullptr},
                  {"code", nullptr}}}}}}},
            {"error", {{"code", server ? "server_error" : "invalid_request"}, {"message", message}}}};
  return dump(j);
}

namespace {
json completion_body(const std::string& id, bool chat, const SeqResult& r, const std::string& model, std::int64_t created) {
  const char* finish = r.finish == FinishReason::stop ? "stop" : "length";
  const auto completion = static_cast<std::int64_t>(r.generated.size());
  json usage = {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", completion}, {"total_tokens", r.prompt_tokens + completion}};
  json body;
  if (chat) {
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
  return body;
}
}  // namespace

std::string completion_body_json(const std::string& id, bool chat, const SeqResult& result, const std::string& model,
                                 std::int64_t created) {
  return dump(completion_body(id, chat, result, model, created));
}

std::string response_line(const std::string& id, const std::string& custom_id, bool chat, const SeqResult& r, const std::string& model,
                          std::int64_t created) {
  const json body = completion_body(id, chat, r, model, created);
  json j = {{"id", std::string(kIdPrefix) + id},
            {"custom_id", custom_id_json(custom_id)},
            {"response", {{"status_code", 200}, {"request_id", "req_" + id}, {"body", body}}},
            {"error", nullptr}};
  return dump(j);
}

std::optional<ResultLine> parse_result_line(std::string_view line) {
  // Cheap refusal of what is plainly not ours (a text file, a binary model) before parsing.
  if (!line.starts_with(kResultLineStart)) return std::nullopt;
  const json j = json::parse(line, nullptr, false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("custom_id") || !j.contains("response")) {
    return std::nullopt;
  }
  const std::string id = j["id"].get<std::string>();
  if (id.size() != kIdPrefix.size() + kIdDigits || !id.starts_with(kIdPrefix)) return std::nullopt;
  ResultLine r;
  r.id = id.substr(kIdPrefix.size());
  if (j["custom_id"].is_string()) {
    r.custom_id = j["custom_id"].get<std::string>();
  } else if (!j["custom_id"].is_null()) {
    return std::nullopt;
  }
  return r;
}

}  // namespace sluice
