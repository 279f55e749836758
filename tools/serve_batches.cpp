// tools/serve_batches.hpp: the Batch API of `sluice serve`: its state directory and the batch
// thread (the HTTP routes are in serve_batches_routes.cpp).
#include "tools/serve_batches.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <future>
#include <random>
#include <set>
#include <stdexcept>

#include "engine/session.hpp"
#include "tools/serve_batches_util.hpp"

namespace sluice {
namespace batch_api {

namespace fs = std::filesystem;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string pretty(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, int status, const std::string& message, const char* type) {
  res.status = status;
  res.set_content(dump(json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}}),
                  "application/json");
}

std::int64_t now_seconds() { return std::int64_t(std::time(nullptr)); }

std::string random_hex(int digits) {
  static std::mutex m;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(m);
  std::string out;
  while (int(out.size()) < digits) out += fmt::format("{:016x}", rng());
  return out.substr(0, std::size_t(digits));
}

namespace {

[[noreturn]] void fail_io(const std::string& what, const std::string& path) {
  throw std::runtime_error(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_io("cannot open the folder", dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail_io("cannot fsync the folder", dir);
}

}  // namespace

void write_atomic(const std::string& path, std::string_view data, std::int64_t mtime) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_io("cannot create", tmp);
  // A failed write (a full disk) leaves nothing behind: the temporary file would hold the space.
  auto fail = [&](const char* what) {
    const int error = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = error;
    fail_io(what, tmp);
  };
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = ENOSPC;
    if (n <= 0) fail("cannot write");
    done += std::size_t(n);
  }
  if (mtime >= 0) {
    const struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
    ::futimens(fd, times);
  }
  if (::fsync(fd) != 0) fail("cannot fsync");
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    errno = error;
    fail_io("cannot rename onto", path);
  }
  fsync_dir(fs::path(path).parent_path().string());
}

json public_view(const json& j) {
  json out = json::object();
  for (const auto& [key, value] : j.items()) {
    if (!key.starts_with("sluice_")) out[key] = value;
  }
  return out;
}

bool unfinished(const json& batch) {
  const std::string s = batch.value("status", "");
  return s == "validating" || s == "in_progress" || s == "finalizing";
}

namespace {

// Each answer of a `sluice batch` output so far, read as a stream: OUT's lines (input order),
// then those only in its journal (finishing order; its header and answers already in OUT left out).
void each_answer(const std::string& output, const std::function<void(const std::string& line, const json& answer)>& f) {
  std::set<std::string> ids;
  for (const std::string& path : {output, output + ".journal"}) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      const json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("id") || !j.contains("custom_id") || !ids.insert(j["id"].dump()).second) continue;
      f(line, j);
    }
  }
}

// Answers that succeeded and failed (status_code 200 or not).
std::pair<std::int64_t, std::int64_t> count_answers(const std::string& output) {
  std::int64_t ok = 0, failed = 0;
  each_answer(output, [&](const std::string&, const json& j) {
    const bool good = j.contains("response") && j["response"].is_object() && j["response"].value("status_code", 0) == 200;
    ++(good ? ok : failed);
  });
  return {ok, failed};
}

}  // namespace

std::int64_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::int64_t n = 0;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) ++n;
  }
  return n;
}

}  // namespace batch_api

using namespace batch_api;
using Clock = std::chrono::steady_clock;

BatchApi::BatchApi(BatchApiOptions options, Session& session, RequestService& service, std::ostream& log)
    : o_(std::move(options)), session_(session), service_(service), log_(log) {
  if (o_.state_dir.empty()) return;
  files_dir_ = (fs::path(o_.state_dir) / "files").string();
  batches_dir_ = (fs::path(o_.state_dir) / "batches").string();
  std::error_code ec;
  fs::create_directories(files_dir_, ec);
  if (!ec) fs::create_directories(batches_dir_, ec);
  if (ec) throw std::runtime_error(fmt::format("--state-dir {}: cannot create its folders: {}", o_.state_dir, ec.message()));
  // Two servers on one directory would run the same batches into the same outputs.
  const std::string lock_path = (fs::path(o_.state_dir) / "serve.lock").string();
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) fail_io("--state-dir: cannot open", lock_path);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd_);
    throw std::runtime_error(fmt::format("--state-dir {}: {}", o_.state_dir,
                                         err == EWOULDBLOCK ? "another sluice serve uses it" : std::strerror(err)));
  }
  load();
  thread_ = std::thread([this] { worker(); });
}

BatchApi::~BatchApi() { stop(); }

void BatchApi::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    stop_signal_ = SIGTERM;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  lock_fd_ = -1;
}

void BatchApi::load() {
  for (const auto& [dir, map] : {std::pair{files_dir_, &files_}, std::pair{batches_dir_, &batches_}}) {
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (!name.ends_with(".json") || name.ends_with(".tmp")) continue;
      std::ifstream in(e.path());
      const json j = json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
        log_ << fmt::format("sluice serve: {}: not a JSON object with an id; ignored\n", e.path().string());
        continue;
      }
      (*map)[j["id"].get<std::string>()] = j;
    }
  }
  for (auto& [id, b] : batches_) {
    order_ = std::max<std::uint64_t>(order_, b.value("sluice_order", std::uint64_t(0)));
    // Cancelled before the restart, its job stopped by it: cancelled, without an output file.
    if (b.value("status", "") == "cancelling") {
      b["status"] = "cancelled";
      b["cancelled_at"] = now_seconds();
      write_atomic((fs::path(batches_dir_) / (id + ".json")).string(), pretty(b));
    }
  }
  std::size_t pending = 0;
  for (const auto& [id, b] : batches_) pending += unfinished(b);
  log_ << fmt::format("sluice serve: Batch API state in {}: {} files, {} batches ({} to run)\n", o_.state_dir, files_.size(),
                      batches_.size(), pending);
}

std::string BatchApi::next_batch() const {
  std::string best;
  std::uint64_t best_order = 0;
  for (const auto& [id, b] : batches_) {
    if (!unfinished(b)) continue;
    const std::uint64_t order = b.value("sluice_order", std::uint64_t(0));
    if (best.empty() || order < best_order) best = id, best_order = order;
  }
  return best;
}

void BatchApi::set_batch(const std::string& id, const std::function<void(json&)>& change) {
  std::lock_guard lock(mutex_);
  json& b = batches_.at(id);
  change(b);
  write_atomic((fs::path(batches_dir_) / (id + ".json")).string(), pretty(b));
}

void BatchApi::worker() {
  for (;;) {
    std::string id;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !next_batch().empty(); });
      if (stopping_) return;
      id = next_batch();
      running_ = id;
      cancel_running_ = false;
      stop_signal_ = 0;
    }
    try {
      run_batch(id);
    } catch (const std::exception& e) {  // the state directory could not be written
      log_ << fmt::format("sluice serve: batch {}: {}\n", id, e.what());
      std::lock_guard lock(mutex_);
      json& b = batches_.at(id);
      b["status"] = "failed";  // in memory at least: the next start retries it
      b["failed_at"] = now_seconds();
      b["errors"] = {{"object", "list"},
                     {"data", json::array({{{"code", "server_error"}, {"message", e.what()}, {"param", nullptr}, {"line", nullptr}}})}};
    }
    std::lock_guard lock(mutex_);
    running_.clear();
  }
}

void BatchApi::run_batch(const std::string& id) {
  std::string input;
  {
    std::lock_guard lock(mutex_);
    const json& b = batches_.at(id);
    auto f = files_.find(b.value("input_file_id", ""));
    if (f != files_.end()) input = (fs::path(o_.state_dir) / f->second.value("sluice_content", "")).string();
  }
  const std::string output_rel = (fs::path("batches") / (id + ".output.jsonl")).string();
  auto fail = [&](const std::string& code, const std::string& message) {
    log_ << fmt::format("sluice serve: batch {} failed: {}\n", id, message);
    set_batch(id, [&](json& b) {
      b["status"] = "failed";
      b["failed_at"] = now_seconds();
      b["errors"] = {{"object", "list"},
                     {"data", json::array({{{"code", code}, {"message", message}, {"param", nullptr}, {"line", nullptr}}})}};
    });
  };
  if (input.empty()) return fail("invalid_input_file", "the input file was deleted");

  JobOptions jo;  // `sluice batch`'s defaults, but for what serve's flags set the same way
  jo.input = input;
  jo.output = (fs::path(o_.state_dir) / output_rel).string();
  jo.model_path = o_.model_path;
  jo.model_name = o_.model_name;
  jo.chat_template = o_.chat_template;
  jo.default_max_tokens = o_.default_max_tokens;
  jo.stop_signal = &stop_signal_;
  jo.test_stop_after = o_.test_stop_after;
  std::unique_ptr<BatchJob> job;
  try {
    job = std::make_unique<BatchJob>(jo, log_);
  } catch (const std::exception& e) {
    return fail("invalid_input_file", e.what());
  }
  // A resumed batch counts what its earlier runs answered (runner: what this one does).
  const auto [done_ok, done_failed] = count_answers(jo.output);
  set_batch(id, [&](json& b) {
    b["request_counts"]["completed"] = done_ok;
    b["request_counts"]["failed"] = done_failed;
    if (b["in_progress_at"].is_null()) b["in_progress_at"] = now_seconds();
    if (b["status"] == "validating") b["status"] = "in_progress";
  });
  JobSummary summary;
  try {
    summary = job->run(session_, [&](const auto& source, const auto& sink, const auto& on_pass) {
      return run_on_service(source, sink, on_pass, id);
    });
  } catch (const std::exception& e) {
    return fail("server_error", e.what());
  }
  job.reset();  // unlocks the output
  bool cancelled = false;
  {
    std::lock_guard lock(mutex_);
    cancelled = cancel_running_ && summary.stopped_by_signal != 0;  // else it finished first: completed
  }
  if (summary.stopped_by_signal != 0 && !cancelled) {  // the server stops: resumed at the next start
    set_batch(id, [](json&) {});                          // with the request_counts so far
    return;
  }
  const std::int64_t now = now_seconds();
  std::string content_rel = output_rel;
  if (summary.stopped_by_signal != 0) {
    // Cancelled: the answers in input order, then those only journaled so far.
    content_rel = (fs::path("batches") / (id + ".cancelled.jsonl")).string();
    std::string text;
    each_answer(jo.output, [&](const std::string& line, const json&) { text += line + "\n"; });
    write_atomic((fs::path(o_.state_dir) / content_rel).string(), text);
  } else {
    set_batch(id, [&](json& b) {
      b["status"] = "finalizing";
      b["finalizing_at"] = now;
    });
  }
  const json file = register_output(id, content_rel, now);
  const auto [ok, failed] = count_answers((fs::path(o_.state_dir) / content_rel).string());
  set_batch(id, [&](json& b) {
    b["status"] = cancelled ? "cancelled" : "completed";
    b[cancelled ? "cancelled_at" : "completed_at"] = now;
    b["output_file_id"] = file["id"];
    if (!cancelled) b["request_counts"]["total"] = ok + failed;
    b["request_counts"]["completed"] = ok;
    b["request_counts"]["failed"] = failed;
  });
  log_ << fmt::format("sluice serve: batch {} {}: {} answered, {} failed; output {}\n", id, cancelled ? "cancelled" : "completed", ok,
                      failed, file["id"].get<std::string>());
}

// The output as a file of purpose batch_output; its id follows from the batch's, so a restart
// during finalizing registers the same file again.
BatchApi::json BatchApi::register_output(const std::string& batch_id, const std::string& content_rel, std::int64_t now) {
  const std::string id = "file-" + batch_id.substr(std::string("batch_").size());
  std::error_code ec;
  const auto bytes = fs::file_size(fs::path(o_.state_dir) / content_rel, ec);
  json file = {{"id", id},         {"object", "file"},           {"bytes", ec ? 0 : std::int64_t(bytes)},
               {"created_at", now}, {"filename", batch_id + "_output.jsonl"}, {"purpose", "batch_output"},
               {"status", "processed"}, {"status_details", nullptr},  {"sluice_content", content_rel}};
  write_atomic((fs::path(files_dir_) / (id + ".json")).string(), pretty(file));
  std::lock_guard lock(mutex_);
  files_[id] = file;
  return file;
}

// The batch's requests through the server's engine: at most --parallel - 1 in flight, results given
// to `sink` on this thread with their order from `source` as SeqResult::index.
BatchRunStats BatchApi::run_on_service(const std::function<std::optional<SeqRequest>()>& source,
                                       const std::function<void(SeqResult&&)>& sink,
                                       const std::function<void(const PassInfo&)>& on_pass, const std::string& id) {
  struct InFlight {
    std::size_t index;
    std::future<SeqResult> future;
  };
  // Set when this run ends early (a stop or cancel thrown through on_pass or source): the
  // requests still in the engine are dropped at its next token.
  auto abandoned = std::make_shared<std::atomic<bool>>(false);
  struct Abandon {
    std::shared_ptr<std::atomic<bool>> flag;
    ~Abandon() { flag->store(true); }
  } abandon{abandoned};
  std::deque<InFlight> flight;
  std::size_t next_index = 0;
  bool more = true;
  BatchRunStats stats;
  PassInfo info;
  std::int64_t tokens = 0;
  auto last_pass = Clock::now();
  auto report = [&] {
    info.pass += 1;
    info.sequences = std::int32_t(flight.size());
    info.tokens = tokens;
    tokens = 0;
    last_pass = Clock::now();
    on_pass(info);
  };
  while (more || !flight.empty()) {
    // One KV slot stays free for interactive requests (with 2 or more): on a streamed model a
    // batch request can hold its slot for minutes, and a chat should not wait for it.
    while (more && flight.size() < std::size_t(std::max(1, o_.parallel - 1))) {
      std::optional<SeqRequest> request = source();
      if (!request) {
        more = false;
        break;
      }
      request->cancelled = [abandoned] { return abandoned->load(); };
      std::optional<std::future<SeqResult>> future;
      while (!(future = service_.submit(*request))) {  // the queue is full of interactive requests
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        report();
      }
      flight.push_back({next_index++, std::move(*future)});
      ++stats.requests;
    }
    bool got = false;
    for (auto it = flight.begin(); it != flight.end();) {
      if (it->future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        ++it;
        continue;
      }
      SeqResult r;
      try {
        r = it->future.get();
      } catch (const std::exception& e) {  // the engine's run failed outside a pass
        r.finish = FinishReason::error;
        r.error = e.what();
        r.exception = std::current_exception();
      }
      r.index = it->index;
      it = flight.erase(it);
      got = true;
      tokens += r.prompt_tokens + std::int64_t(r.generated.size());
      stats.prompt_tokens += r.prompt_tokens;
      stats.generated_tokens += std::int64_t(r.generated.size());
      const bool ok = r.finish != FinishReason::error;
      if (!ok) ++stats.failed;
      ++info.finished;
      sink(std::move(r));
      std::lock_guard lock(mutex_);
      json& counts = batches_.at(id)["request_counts"];
      counts[ok ? "completed" : "failed"] = counts.value(ok ? "completed" : "failed", 0) + 1;
    }
    if (!got && !flight.empty()) flight.front().future.wait_for(std::chrono::milliseconds(5));  // a poll: results come in any order
    if (got || Clock::now() - last_pass > std::chrono::milliseconds(200)) report();
  }
  stats.passes = info.pass;
  return stats;
}

}  // namespace sluice
