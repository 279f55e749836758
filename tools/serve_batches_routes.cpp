// tools/serve_batches.hpp: the HTTP routes of the Batch API (/v1/files, /v1/batches).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <memory>
#include <vector>

#include "tools/serve_batches.hpp"
#include "tools/serve_batches_util.hpp"

namespace sluice {

using namespace batch_api;
namespace fs = std::filesystem;

void BatchApi::upload(const httplib::Request& req, httplib::Response& res) {
  if (!req.is_multipart_form_data()) return send_error(res, 400, "POST /v1/files takes multipart/form-data with fields file and purpose");
  if (!req.has_file("file")) return send_error(res, 400, "the multipart field 'file' is missing");
  const std::string purpose = req.has_file("purpose") ? req.get_file_value("purpose").content : "";
  if (purpose != "batch") {
    return send_error(res, 400, fmt::format("purpose '{}': sluice keeps only files of purpose 'batch'", purpose));
  }
  const httplib::MultipartFormData& part = req.get_file_value("file");
  if (part.content.size() > o_.max_file_size) {
    return send_error(res, 413, fmt::format("the file is {} bytes, more than --max-file-size ({} bytes)", part.content.size(), o_.max_file_size));
  }
  const std::string id = "file-" + random_hex(24);
  const std::int64_t now = now_seconds();
  json file = {{"id", id},
               {"object", "file"},
               {"bytes", std::int64_t(part.content.size())},
               {"created_at", now},
               {"filename", part.filename.empty() ? std::string("upload.jsonl") : part.filename},
               {"purpose", purpose},
               {"status", "processed"},
               {"status_details", nullptr},
               {"sluice_content", (fs::path("files") / id).string()}};
  try {
    write_atomic((fs::path(files_dir_) / id).string(), part.content, now);
    try {
      write_atomic((fs::path(files_dir_) / (id + ".json")).string(), pretty(file));
    } catch (...) {
      std::error_code ec;
      fs::remove(fs::path(files_dir_) / id, ec);  // content without metadata would be space no one can reach
      throw;
    }
  } catch (const std::exception& e) {
    // 507 (Insufficient Storage) for a full disk: a client may retry once space is freed.
    const bool full = std::string_view(e.what()).find(std::strerror(ENOSPC)) != std::string_view::npos;
    return send_error(res, full ? 507 : 500, fmt::format("the upload could not be stored: {}", e.what()), "server_error");
  }
  {
    std::lock_guard lock(mutex_);
    files_[id] = file;
  }
  res.set_content(dump(public_view(file)), "application/json");
}

void BatchApi::create_batch(const httplib::Request& req, httplib::Response& res) {
  const json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return send_error(res, 400, "the body is not a JSON object");
  auto text = [&](const char* key) { return body.contains(key) && body[key].is_string() ? body[key].get<std::string>() : std::string(); };
  const std::string input_file_id = text("input_file_id"), endpoint = text("endpoint"), window = text("completion_window");
  if (input_file_id.empty()) return send_error(res, 400, "input_file_id (a string) is missing");
  if (endpoint != "/v1/chat/completions" && endpoint != "/v1/completions") {
    return send_error(res, 400, fmt::format("endpoint '{}': sluice runs /v1/chat/completions and /v1/completions", endpoint));
  }
  if (window != "24h") return send_error(res, 400, fmt::format("completion_window '{}': only 24h is supported", window));
  if (body.contains("metadata") && !body["metadata"].is_null() && !body["metadata"].is_object()) {
    return send_error(res, 400, "metadata must be an object of strings");
  }
  std::string input;
  {
    std::lock_guard lock(mutex_);
    auto f = files_.find(input_file_id);
    if (f == files_.end()) return send_error(res, 404, fmt::format("no file {}", input_file_id));
    if (f->second.value("purpose", "") != "batch") {
      return send_error(res, 400, fmt::format("file {} has purpose '{}', not 'batch'", input_file_id, f->second.value("purpose", "")));
    }
    input = (fs::path(o_.state_dir) / f->second.value("sluice_content", "")).string();
  }
  const std::string id = "batch_" + random_hex(24);
  const std::int64_t now = now_seconds();
  json batch = {{"id", id},
                {"object", "batch"},
                {"endpoint", endpoint},
                {"errors", nullptr},
                {"input_file_id", input_file_id},
                {"completion_window", window},
                {"status", "validating"},
                {"output_file_id", nullptr},
                {"error_file_id", nullptr},
                {"created_at", now},
                {"in_progress_at", nullptr},
                {"expires_at", now + 24 * 3600},
                {"finalizing_at", nullptr},
                {"completed_at", nullptr},
                {"failed_at", nullptr},
                {"expired_at", nullptr},
                {"cancelling_at", nullptr},
                {"cancelled_at", nullptr},
                {"request_counts", {{"total", count_lines(input)}, {"completed", 0}, {"failed", 0}}},
                {"metadata", body.contains("metadata") ? body["metadata"] : json(nullptr)}};
  try {
    std::lock_guard lock(mutex_);
    batch["sluice_order"] = ++order_;
    write_atomic((fs::path(batches_dir_) / (id + ".json")).string(), pretty(batch));
    batches_[id] = batch;
  } catch (const std::exception& e) {
    return send_error(res, 500, e.what(), "server_error");
  }
  wake_.notify_all();
  res.set_content(dump(public_view(batch)), "application/json");
}

void BatchApi::cancel_batch(const std::string& id, httplib::Response& res) {
  std::unique_lock lock(mutex_);
  auto b = batches_.find(id);
  if (b == batches_.end()) return send_error(res, 404, fmt::format("no batch {}", id));
  const std::string status = b->second.value("status", "");
  if (!unfinished(b->second) && status != "cancelling") {
    return send_error(res, 409, fmt::format("batch {} is {}: it cannot be cancelled", id, status));
  }
  if (status != "cancelling") {
    const std::int64_t now = now_seconds();
    const bool running = running_ == id;
    b->second["status"] = running ? "cancelling" : "cancelled";
    b->second[running ? "cancelling_at" : "cancelled_at"] = now;
    if (running) {
      cancel_running_ = true;
      stop_signal_ = SIGTERM;
    }
    try {
      write_atomic((fs::path(batches_dir_) / (id + ".json")).string(), pretty(b->second));
    } catch (const std::exception& e) {
      return send_error(res, 500, e.what(), "server_error");
    }
  }
  res.set_content(dump(public_view(b->second)), "application/json");
}

void BatchApi::install(httplib::Server& svr) {
  // Every route: 501 without --state-dir (nothing of the API works without a place for files).
  auto guard = [this](auto handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      if (o_.state_dir.empty()) {
        return send_error(res, 501, "the Batch API needs a place for its files: start the server with --state-dir DIR",
                          "server_error");
      }
      handler(req, res);
    };
  };
  svr.Post("/v1/files", guard([this](const httplib::Request& req, httplib::Response& res) { upload(req, res); }));
  svr.Get("/v1/files", guard([this](const httplib::Request& req, httplib::Response& res) {
    const std::string purpose = req.get_param_value("purpose");
    json data = json::array();
    std::lock_guard lock(mutex_);
    std::vector<const json*> sorted;
    for (const auto& [id, f] : files_) {
      if (purpose.empty() || f.value("purpose", "") == purpose) sorted.push_back(&f);
    }
    std::sort(sorted.begin(), sorted.end(), [](const json* a, const json* b) { return a->value("created_at", 0) > b->value("created_at", 0); });
    for (const json* f : sorted) data.push_back(public_view(*f));
    res.set_content(dump(json{{"object", "list"}, {"data", data}, {"has_more", false}}), "application/json");
  }));
  svr.Get(R"(/v1/files/([^/]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    auto f = files_.find(req.matches[1].str());
    if (f == files_.end()) return send_error(res, 404, fmt::format("no file {}", req.matches[1].str()));
    res.set_content(dump(public_view(f->second)), "application/json");
  }));
  svr.Delete(R"(/v1/files/([^/]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1].str();
    std::lock_guard lock(mutex_);
    auto f = files_.find(id);
    if (f == files_.end()) return send_error(res, 404, fmt::format("no file {}", id));
    for (const auto& [bid, b] : batches_) {
      if ((unfinished(b) || b.value("status", "") == "cancelling") && b.value("input_file_id", "") == id) {
        return send_error(res, 409, fmt::format("file {} is the input of batch {}, which is not finished", id, bid));
      }
    }
    std::error_code ec;
    fs::remove(fs::path(files_dir_) / (id + ".json"), ec);
    fs::remove(fs::path(o_.state_dir) / f->second.value("sluice_content", ""), ec);
    files_.erase(f);
    res.set_content(dump(json{{"id", id}, {"object", "file"}, {"deleted", true}}), "application/json");
  }));
  svr.Get(R"(/v1/files/([^/]+)/content)", guard([this](const httplib::Request& req, httplib::Response& res) {
    std::string path;
    {
      std::lock_guard lock(mutex_);
      auto f = files_.find(req.matches[1].str());
      if (f == files_.end()) return send_error(res, 404, fmt::format("no file {}", req.matches[1].str()));
      path = (fs::path(o_.state_dir) / f->second.value("sluice_content", "")).string();
    }
    auto in = std::make_shared<std::ifstream>(path, std::ios::binary);
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (!*in || ec) return send_error(res, 500, fmt::format("cannot read {}", path), "server_error");
    res.set_content_provider(size, "application/octet-stream", [in](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
      std::vector<char> buffer(std::min<std::size_t>(length, 1 << 20));
      in->seekg(std::streamoff(offset));
      in->read(buffer.data(), std::streamsize(buffer.size()));
      const std::streamsize got = in->gcount();
      return got > 0 && sink.write(buffer.data(), std::size_t(got));
    });
  }));
  svr.Post("/v1/batches", guard([this](const httplib::Request& req, httplib::Response& res) { create_batch(req, res); }));
  svr.Get("/v1/batches", guard([this](const httplib::Request& req, httplib::Response& res) {
    std::size_t limit = 20;
    if (req.has_param("limit")) {
      try {
        limit = std::size_t(std::clamp(std::stoll(req.get_param_value("limit")), 1LL, 100LL));
      } catch (const std::exception&) {
        return send_error(res, 400, fmt::format("limit '{}': a number from 1 to 100", req.get_param_value("limit")));
      }
    }
    const std::string after = req.get_param_value("after");
    std::lock_guard lock(mutex_);
    std::vector<const json*> sorted;
    for (const auto& [id, b] : batches_) sorted.push_back(&b);
    std::sort(sorted.begin(), sorted.end(),
              [](const json* a, const json* b) { return a->value("sluice_order", 0) > b->value("sluice_order", 0); });
    std::size_t start = 0;
    if (!after.empty()) {
      while (start < sorted.size() && (*sorted[start])["id"] != after) ++start;
      start = std::min(sorted.size(), start + 1);
    }
    json data = json::array();
    for (std::size_t i = start; i < sorted.size() && data.size() < limit; ++i) data.push_back(public_view(*sorted[i]));
    const bool more = start + data.size() < sorted.size();
    res.set_content(dump(json{{"object", "list"},
                              {"data", data},
                              {"first_id", data.empty() ? json(nullptr) : data.front()["id"]},
                              {"last_id", data.empty() ? json(nullptr) : data.back()["id"]},
                              {"has_more", more}}),
                    "application/json");
  }));
  svr.Get(R"(/v1/batches/([^/]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    auto b = batches_.find(req.matches[1].str());
    if (b == batches_.end()) return send_error(res, 404, fmt::format("no batch {}", req.matches[1].str()));
    res.set_content(dump(public_view(b->second)), "application/json");
  }));
  svr.Post(R"(/v1/batches/([^/]+)/cancel)",
           guard([this](const httplib::Request& req, httplib::Response& res) { cancel_batch(req.matches[1].str(), res); }));
}

}  // namespace sluice
