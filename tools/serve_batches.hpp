// The OpenAI Batch API of `sluice serve`: /v1/files and /v1/batches, kept in --state-dir.
//
// State directory (every JSON written atomically: temp file, fsync, rename, fsync of the folder):
//   files/file-ID          an uploaded file's content (mtime set to its created_at)
//   files/file-ID.json     its metadata: OpenAI's file object + "sluice_content" (its content's
//                          path, relative to the state directory)
//   batches/batch_ID.json  OpenAI's batch object + "sluice_order" (creation order)
//   batches/batch_ID.output.jsonl (+ .journal, .lock while it runs)  the `sluice batch` output
//   serve.lock             flocked by the server using the directory: a second one is refused
// Batches run one at a time, oldest first, on a thread of their own, as engine/batch_job.hpp
// jobs whose requests go through the server's RequestService (the one engine, shared with
// interactive requests; at most --parallel - 1 of a batch's requests in flight, so an
// interactive one finds a free slot at once). Same defaults as `sluice batch` (seed 0, --max-tokens, --chat-template), so
// the output is byte-identical to `sluice batch -i INPUT -o OUT` with the same model, settings
// (-c included: a request past the context is a 400 line naming it) and input mtime (an answer's "created" is the input's mtime: the upload's created_at).
// Error lines stay in the output, as `sluice batch` writes them (status_code 400/500;
// error_file_id is always null); request_counts.failed counts them.
// Uploads (multipart, field "file", purpose "batch") are held in memory while received, up to
// --max-file-size; other bodies stay under --max-body (cmd_serve.cpp checks Content-Length).
// Restart: batches left validating/in_progress/finalizing resume (BatchJob's journal: the same
// output as an uninterrupted run); one left cancelling becomes cancelled (no output file).
// Cancel: the job stops after the requests in flight are dropped; the cancelled batch's output
// file holds what was finished (in input order first, then journaled answers in finishing order).
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <thread>

#include "engine/batch_job.hpp"
#include "engine/request_service.hpp"
#include "model/chat_template.hpp"

namespace sluice {

class Session;

struct BatchApiOptions {
  std::string state_dir;  // empty: the routes answer 501 naming --state-dir
  std::uint64_t max_file_size = 0;
  std::string model_path, model_name;
  std::optional<ChatTemplateKind> chat_template;
  std::int32_t default_max_tokens = 256;
  std::int32_t parallel = 8;          // KV slots: a batch keeps one free (with 2 or more)
  std::uint64_t test_stop_after = 0;  // crash tests: JobOptions::test_stop_after
};

class BatchApi {
 public:
  // Reads the state directory (creating it) and starts the batch thread, which resumes
  // unfinished batches. Throws std::runtime_error naming the path when it cannot.
  BatchApi(BatchApiOptions options, Session& session, RequestService& service, std::ostream& log);
  ~BatchApi();  // stop()
  BatchApi(const BatchApi&) = delete;
  BatchApi& operator=(const BatchApi&) = delete;

  void install(httplib::Server& server);
  // Stops the batch thread: a running batch stops after dropping its requests in flight and
  // keeps its status, so the next start resumes it. Call before the RequestService goes.
  void stop();

 private:
  using json = nlohmann::ordered_json;
  void load();
  void worker();
  void run_batch(const std::string& id);
  BatchRunStats run_on_service(const std::function<std::optional<SeqRequest>()>& source,
                               const std::function<void(SeqResult&&)>& sink, const std::function<void(const PassInfo&)>& on_pass,
                               const std::string& id);
  std::string next_batch() const;  // the oldest unfinished batch, or ""
  void set_batch(const std::string& id, const std::function<void(json&)>& change);  // persists
  json register_output(const std::string& batch_id, const std::string& content_rel, std::int64_t now);

  void upload(const httplib::Request& req, httplib::Response& res);
  void create_batch(const httplib::Request& req, httplib::Response& res);
  void cancel_batch(const std::string& id, httplib::Response& res);

  BatchApiOptions o_;
  Session& session_;
  RequestService& service_;
  std::ostream& log_;
  std::string files_dir_, batches_dir_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, json> files_, batches_;
  std::uint64_t order_ = 0;
  std::string running_;        // the batch the thread runs now
  bool cancel_running_ = false;
  bool stopping_ = false;
  std::atomic<int> stop_signal_{0};  // JobOptions::stop_signal of the running batch
  int lock_fd_ = -1;  // DIR/serve.lock, flocked: one server per state directory
  std::thread thread_;
};

}  // namespace sluice
