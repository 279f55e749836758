// The batch-input parser's fuzz entry, shared by the libFuzzer target (fuzz_batch_input.cpp,
// clang only) and the BatchInputFuzzSmoke gtest. Input: byte 0 picks the format (openai, jsonl,
// text); the rest is one line. Checked on every input (a violation aborts): the parser returns
// (never throws), a request has a non-empty custom_id and either messages (chat) or a prompt,
// max_tokens is in range, and an error message starts by naming the line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "engine/batch_input.hpp"

namespace sluice::fuzz {

inline void run_batch_input(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  const auto format = static_cast<InputFormat>(data[0] % 3);
  const std::string_view line(reinterpret_cast<const char*>(data + 1), size - 1);
  auto fail = [](const char* what) {
    std::fprintf(stderr, "batch input fuzz: %s\n", what);
    std::abort();
  };
  std::optional<ParsedLine> parsed;
  try {
    parsed = parse_input_line(line, 42, format);
  } catch (...) {
    fail("parse_input_line threw");
  }
  if (!parsed) return;
  if (const auto* r = std::get_if<JobRequest>(&*parsed)) {
    if (r->custom_id.empty()) fail("a request without a custom_id");
    if (r->chat && r->messages.empty()) fail("a chat request without messages");
    if (r->max_tokens && (*r->max_tokens < 1 || *r->max_tokens > (1 << 24))) fail("max_tokens out of range");
    if (r->line != 42) fail("wrong line number");
  } else if (std::get<LineError>(*parsed).message.rfind("line 42: ", 0) != 0) {
    fail("an error message that does not name the line");
  }
}

}  // namespace sluice::fuzz
