// jinja_render_dump: model/jinja.hpp on JSON cases from stdin, for the golden check against
// Python's jinja2 (tests/model/check_jinja_templates.py).
//
// stdin:  {"cases": [{"template": "<Jinja>", "messages": [{"role": .., "content": ..}, ...],
//                     "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"}, ...]}
// stdout: a JSON array, one result per case: {"text": "...", "markup": [[offset, length], ...]},
//         or {"error": "...", "raised": true|false} when the template raised or fell outside the subset.
// Exit status: 0 with the results; 2 with a message on stderr when stdin is not such JSON.
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/jinja.hpp"

namespace {

using nlohmann::json;

json run_case(const json& c) {
  std::vector<sluice::ChatMessage> messages;
  for (const json& m : c.at("messages")) messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  try {
    const sluice::jinja::Template t(c.at("template").get<std::string>());
    const sluice::RenderedChat r = t.render_chat(messages, c.value("add_generation_prompt", true), c.value("bos_token", std::string()),
                                                 c.value("eos_token", std::string()));
    json markup = json::array();
    for (const auto& [off, len] : r.markup) markup.push_back({off, len});
    return {{"text", r.text}, {"markup", markup}};
  } catch (const sluice::jinja::JinjaError& e) {
    return {{"error", e.what()}, {"raised", e.raised()}};
  }
}

}  // namespace

int main() {
  try {
    const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    const json in = json::parse(input);
    json out = json::array();
    for (const json& c : in.at("cases")) out.push_back(run_case(c));
    std::cout << out.dump() << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "jinja_render_dump: " << e.what() << '\n';
    return 2;
  }
}
