// chat_template_dump: model/chat_template.hpp on JSON cases from stdin, for the llama.cpp parity
// check (tests/model/check_chat_template.py).
//
// stdin:  {"cases": [CASE, ...]} where CASE names the template one of two ways and optionally
//         carries a conversation:
//           {"kind": "llama3", "messages": [{"role": "user", "content": "Hi"}, ...]}
//           {"template": "<Jinja text>", "messages": [...]}        (kind from detect_chat_template)
// stdout: a JSON array, one RESULT per case, in order:
//           {"kind": "llama3" | null, "text": "<render_chat>"}      rendered
//           {"kind": "llama3", "error": "<message>"}                render_chat threw
//           {"kind": null}                                          unknown name / not detected
//         ("text" and "error" are absent when the case has no "messages").
// Exit status: 0 with the results; 2 with a message on stderr when stdin is not such JSON.
#include <iostream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/chat_template.hpp"

namespace {

using nlohmann::json;

json run_case(const json& c) {
  std::optional<sluice::ChatTemplateKind> kind;
  if (c.contains("kind")) {
    kind = sluice::chat_template_from_name(c.at("kind").get<std::string>());
  } else {
    kind = sluice::detect_chat_template(c.at("template").get<std::string>());
  }
  json result = {{"kind", kind ? json(sluice::to_string(*kind)) : json(nullptr)}};
  if (!kind || !c.contains("messages")) return result;
  std::vector<sluice::ChatMessage> messages;
  for (const json& m : c.at("messages")) {
    messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  }
  try {
    result["text"] = sluice::render_chat(*kind, messages);
  } catch (const std::invalid_argument& e) {
    result["error"] = e.what();
  }
  return result;
}

}  // namespace

int main() {
  try {
    const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    const json request = json::parse(input);
    json results = json::array();
    for (const json& c : request.at("cases")) results.push_back(run_case(c));
    // Rendering only trims ASCII whitespace, so valid UTF-8 in gives valid UTF-8 out; replace
    // keeps the dump from throwing should that ever not hold.
    std::cout << results.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    return 0;
  } catch (const json::exception& e) {
    std::cerr << "chat_template_dump: bad input: " << e.what() << '\n';
    return 2;
  }
}
