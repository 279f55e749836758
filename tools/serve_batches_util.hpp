// Helpers shared by tools/serve_batches.cpp (state, batch thread) and serve_batches_routes.cpp.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sluice::batch_api {

using json = nlohmann::ordered_json;

// Invalid UTF-8 (a file name, a model's text) becomes U+FFFD instead of an exception.
std::string dump(const json& j);
std::string pretty(const json& j);  // indented, for the state directory's files
// OpenAI's error object: {"error": {"message", "type", "param", "code"}}.
void send_error(httplib::Response& res, int status, const std::string& message, const char* type = "invalid_request_error");
std::int64_t now_seconds();
std::string random_hex(int digits);
// PATH replaced whole or not at all (temp file, fsync, rename, fsync of the folder): a crash
// leaves the old content or the new, never a torn one. mtime >= 0: set on the file (an upload's
// content: its created_at, which its answers' "created" is). Throws std::runtime_error naming it.
void write_atomic(const std::string& path, std::string_view data, std::int64_t mtime = -1);
// The object as OpenAI's API shows it: without sluice's own "sluice_*" fields.
json public_view(const json& j);
// validating, in_progress or finalizing: the batch thread runs it (again, after a restart).
bool unfinished(const json& batch);
// Lines with anything but blanks: a batch's request_counts.total before it runs.
std::int64_t count_lines(const std::string& path);

}  // namespace sluice::batch_api
