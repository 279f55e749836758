// `sluice serve`: an OpenAI-compatible HTTP server (cpp-httplib) over one model.
//   POST /v1/chat/completions, /v1/completions  (stream: true as server-sent events)
//   GET  /v1/models, /health, /metrics (Prometheus text)
//   The Batch API with --state-dir (tools/serve_batches.hpp): /v1/files (upload, list, get,
//   content, delete) and /v1/batches (create, get, list, cancel), run through the same engine and
//   resumed after a restart; output byte-identical to `sluice batch` on the same file.
// Every request goes through one engine (engine/request_service.hpp): concurrent requests join
// the same layer-major passes, so a streamed block read once serves every client in flight.
// Bound to 127.0.0.1 unless --host says otherwise; --api-key requires "Authorization: Bearer KEY"
// (not on /health). Limits: body size (413), waiting requests (503), worker threads (one per
// connection; uploads to /v1/files up to --max-file-size); a bad request gets a JSON 4xx naming
// what is wrong, never a crash.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>
#include <nlohmann/json.hpp>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "common/units.hpp"
#include "engine/batch_input.hpp"
#include "engine/batch_job.hpp"
#include "engine/batch_wire.hpp"
#include "engine/request_service.hpp"
#include "engine/session.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"
#include "tools/serve_batches.hpp"
#include "tools/session_flags.hpp"

namespace sluice {
namespace {

using json = nlohmann::ordered_json;

// Text the model generated need not be valid UTF-8 (a token can be part of a character): invalid
// bytes become U+FFFD instead of an exception.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct ServeOptions {
  SessionFlags flags;
  std::string host = "127.0.0.1", api_key, alias, chat_template;
  int port = 8080;
  std::int32_t parallel = 8;
  std::size_t max_queue = 64, max_connections = 64;
  std::string max_body = "8MiB";
  std::string state_dir, max_file_size = "200MiB";
  int timeout_s = 30;
  std::int32_t default_max_tokens = 256;
};

void send_error(httplib::Response& res, int status, const std::string& message, const char* type = "invalid_request_error") {
  res.status = status;
  res.set_content(dump(json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}}),
                  "application/json");
}

// Text pieces of one streamed answer, from the engine's thread to the connection's.
struct Stream {
  std::mutex mutex;
  std::condition_variable cv;
  std::string pending;
  std::atomic<bool> client_gone{false};
};

std::string random_id() {
  static std::mutex m;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(m);
  return fmt::format("{:016x}{:08x}", rng(), std::uint32_t(rng()));
}

class Server {
 public:
  Server(const ServeOptions& o, Session& session, RequestService& service, std::string model_name)
      : o_(o), session_(session), service_(service), model_(std::move(model_name)) {
    // Chosen as batch, chat and run choose it (engine/chat_choice.hpp): --chat-template, else the
    // model's own, with the built-in kind recognised in it as the fallback.
    chat_template_ = choose_chat_template(parse_chat_template_flag(o.chat_template),
                                          session.metadata().get_string("tokenizer.chat_template"), session.tokenizer());
  }

  void install(httplib::Server& svr) {
    // The server's own limit is the larger of --max-body and --max-file-size: bodies but an
    // upload's are held to --max-body here, by their Content-Length, before they are read.
    const std::uint64_t max_body = parse_size_option("--max-body", o_.max_body);
    svr.set_pre_routing_handler([this, max_body](const httplib::Request& req, httplib::Response& res) {
      if (req.path != "/v1/files" && req.has_header("Content-Length")) {
        std::uint64_t length = 0;
        try {
          length = std::stoull(req.get_header_value("Content-Length"));
        } catch (const std::exception&) {
          length = max_body + 1;
        }
        if (length > max_body) {
          send_error(res, 413, fmt::format("the request body is too large (over --max-body, {} bytes)", max_body));
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      if (o_.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + o_.api_key) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "a valid API key is needed: Authorization: Bearer KEY", "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string why = res.status == 404   ? fmt::format("no route {} {}", req.method, req.path)
                              : res.status == 413 ? std::string("the request body is too large")
                                                  : fmt::format("HTTP {}", res.status);
      send_error(res, res.status, why);
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"ok"})", "application/json"); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json models = {{"object", "list"},
                     {"data", json::array({{{"id", model_}, {"object", "model"}, {"created", started_}, {"owned_by", "sluice"}}})}};
      res.set_content(dump(models), "application/json");
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { res.set_content(metrics(), "text/plain; version=0.0.4"); });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, true); });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, false); });
  }

  // Called on the engine's thread after each pass: the streaming counters, read there.
  void snapshot_stream_stats() {
    if (!session_.streamed()) return;
    const StreamStats s = session_.streamed()->stats();
    std::lock_guard lock(stats_mutex_);
    stream_stats_ = s;
  }

 private:
  void complete(const httplib::Request& req, httplib::Response& res, bool chat) {
    bool stream = false;
    auto parsed = parse_request_body(req.body, chat, &stream);
    if (auto* error = std::get_if<std::string>(&parsed)) return send_error(res, 400, *error);
    const JobRequest& r = std::get<JobRequest>(parsed);
    if (chat && !chat_template_.usable()) {
      return send_error(res, 400, "this model has no chat template sluice knows; start the server with --chat-template");
    }
    PromptText text;
    try {
      text = chat ? render_chat_prompt(r.messages, chat_template_) : prompt_text(r, ChatTemplateKind::chatml);
    } catch (const std::exception& e) {
      return send_error(res, 400, e.what());
    }
    SeqRequest request;
    request.prompt = tokenize_prompt(session_.tokenizer(), text, false);
    request.options.n_predict = r.max_tokens.value_or(o_.default_max_tokens);
    request.options.sampling.temperature = r.temperature.value_or(1.0f);
    request.options.sampling.top_p = r.top_p.value_or(1.0f);
    request.options.sampling.top_k = 0;
    request.options.sampling.min_p = 0.0f;
    request.options.sampling.seed = r.seed.value_or(std::random_device{}());
    request.stop = r.stop;
    if (std::int64_t(request.prompt.size()) + request.options.n_predict > session_.n_ctx()) {
      return send_error(res, 400,
                        fmt::format("the prompt ({} tokens) + max_tokens {} exceed the context of {}", request.prompt.size(),
                                    request.options.n_predict, session_.n_ctx()));
    }
    const std::string id = random_id();
    const std::int64_t created = std::int64_t(std::time(nullptr));
    auto pieces = std::make_shared<Stream>();
    if (stream) {
      request.on_text = [pieces](std::string_view piece) {
        std::lock_guard lock(pieces->mutex);
        pieces->pending += piece;
        pieces->cv.notify_one();
      };
      request.cancelled = [pieces] { return pieces->client_gone.load(); };
    }
    std::optional<std::future<SeqResult>> submitted = service_.submit(std::move(request));
    if (!submitted) return send_error(res, 503, fmt::format("the queue is full ({} requests waiting); retry later", o_.max_queue), "server_error");
    if (!stream) {
      const SeqResult result = submitted->get();
      if (result.finish == FinishReason::error) return send_error(res, result.exception ? 500 : 400, result.error, result.exception ? "server_error" : "invalid_request_error");
      res.set_content(completion_body_json(id, chat, result, model_, created), "application/json");
      return;
    }
    auto future = std::make_shared<std::future<SeqResult>>(std::move(*submitted));
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, pieces, future, id, chat, created](std::size_t, httplib::DataSink& sink) {
      auto chunk = [&](const json& delta_or_text, const json& finish) {
        json c = {{"id", (chat ? "chatcmpl-" : "cmpl-") + id},
                  {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", created},
                  {"model", model_},
                  {"choices", json::array({chat ? json{{"index", 0}, {"delta", delta_or_text}, {"finish_reason", finish}}
                                                : json{{"text", delta_or_text}, {"index", 0}, {"finish_reason", finish}}})}};
        const std::string event = "data: " + dump(c) + "\n\n";
        return sink.write(event.data(), event.size());
      };
      bool ok = !chat || chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr);
      for (bool done = false; ok && !done;) {
        std::string text;
        {
          std::unique_lock lock(pieces->mutex);
          pieces->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !pieces->pending.empty(); });
          text.swap(pieces->pending);
        }
        done = future->wait_for(std::chrono::seconds(0)) == std::future_status::ready;
        if (done) {  // what the engine streamed after the last look
          std::lock_guard lock(pieces->mutex);
          text += pieces->pending;
          pieces->pending.clear();
        }
        if (!text.empty()) ok = chat ? chunk(json{{"content", text}}, nullptr) : chunk(text, nullptr);
      }
      if (!ok) {  // the client left: its request stops at the next token
        pieces->client_gone = true;
        return false;
      }
      const SeqResult result = future->get();
      if (result.finish == FinishReason::error) {
        const std::string event = "data: " + dump(json{{"error", {{"message", result.error}, {"type", "server_error"}}}}) + "\n\n";
        sink.write(event.data(), event.size());
      } else {
        const char* finish = result.finish == FinishReason::stop ? "stop" : "length";
        chunk(chat ? json::object() : json(""), finish);
      }
      const std::string end = "data: [DONE]\n\n";
      sink.write(end.data(), end.size());
      sink.done();
      return true;
    });
  }

  std::string metrics() {
    const ServiceStats s = service_.stats();
    StreamStats st;
    {
      std::lock_guard lock(stats_mutex_);
      st = stream_stats_;
    }
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, double value) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
    };
    metric("sluice_requests_total", "counter", "Requests accepted into the queue.", double(s.requests));
    metric("sluice_requests_failed_total", "counter", "Requests refused by the engine or failed with their pass.", double(s.failed));
    metric("sluice_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", double(s.prompt_tokens));
    metric("sluice_generated_tokens_total", "counter", "Tokens generated by finished requests.", double(s.generated_tokens));
    metric("sluice_passes_total", "counter", "Forward passes of the engine.", double(s.passes));
    metric("sluice_queue_depth", "gauge", "Requests waiting for a KV slot.", double(s.queued));
    metric("sluice_requests_in_flight", "gauge", "Requests holding a KV slot.", double(s.in_flight));
    metric("sluice_generated_tokens_per_second", "gauge", "Generated tokens per second of engine time so far.",
           s.busy_seconds > 0 ? double(s.generated_tokens) / s.busy_seconds : 0.0);
    metric("sluice_bytes_read_total", "counter", "Weight bytes read from disk (streamed blocks and experts).",
           double(st.bytes_streamed + st.expert_bytes + st.embedding_bytes));
    metric("sluice_overlap", "gauge", "Streamed wall time / max(io busy, compute busy): 1.0 is perfect overlap.", st.overlap());
    return out;
  }

  const ServeOptions& o_;
  Session& session_;
  RequestService& service_;
  std::string model_;
  ChatTemplateChoice chat_template_;
  std::int64_t started_ = std::int64_t(std::time(nullptr));
  std::mutex stats_mutex_;
  StreamStats stream_stats_;
};

void serve(const ServeOptions& o) {
  SessionOptions session_opts = session_options(o.flags);
  session_opts.n_seq = o.parallel;
  session_opts.log = &std::cerr;
  if (o.flags.plan_only) {
    print_plan_only(session_opts, std::cout);
    return;
  }
  const std::uint64_t max_body = parse_size_option("--max-body", o.max_body);
  const std::uint64_t max_file_size = parse_size_option("--max-file-size", o.max_file_size);
  // SIGINT/SIGTERM stop the server from a thread of its own (no work in a signal handler); the
  // mask is set before any thread starts, so every thread inherits it.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Session session(session_opts);
  const std::string model_name =
      !o.alias.empty() ? o.alias
                       : session.metadata().get_string("general.name").value_or(std::filesystem::path(o.flags.session.model).stem().string());
  BatchOptions bo;
  bo.n_parallel = o.parallel;
  bo.max_pass_tokens = session_opts.pass_tokens;
  bo.source_may_resume = true;
  Engine engine(session, bo);
  Server* server_ptr = nullptr;
  RequestService service(engine, o.max_queue, [&] {
    if (server_ptr) server_ptr->snapshot_stream_stats();
  });
  Server server(o, session, service, model_name);
  server_ptr = &server;
  BatchApiOptions batch_options;
  batch_options.state_dir = o.state_dir;
  batch_options.max_file_size = max_file_size;
  batch_options.model_path = o.flags.session.model;
  batch_options.model_name = model_name;
  batch_options.chat_template = parse_chat_template_flag(o.chat_template);
  batch_options.default_max_tokens = o.default_max_tokens;
  batch_options.parallel = o.parallel;
  // Crash tests only: the batch thread SIGSTOPs the server after this many answers (JobOptions::test_stop_after).
  if (const char* n = std::getenv("SLUICE_TEST_BATCH_STOP_AFTER")) batch_options.test_stop_after = std::stoull(n);
  BatchApi batches(batch_options, session, service, std::cerr);

  httplib::Server svr;
  svr.new_task_queue = [n = o.max_connections] { return new httplib::ThreadPool(n); };
  svr.set_payload_max_length(std::max(max_body, max_file_size + (1u << 20)));  // + multipart's headers
  svr.set_read_timeout(o.timeout_s, 0);  // a client that stops sending mid-request is dropped
  svr.set_write_timeout(o.timeout_s, 0);  // and one that stops reading its answer
  server.install(svr);
  batches.install(svr);
  // cpp-httplib listens with a backlog of 5 (compiled into Debian's libcpp-httplib): a burst of
  // clients connecting while the machine is busy overflowed it and some got "connection reset"
  // (seen at 32 clients under load). listen() again on the bound socket raises it (the kernel
  // caps it at net.core.somaxconn). Its default options also set SO_REUSEPORT, which let a second
  // server bind the same port and take half the connections: SO_REUSEADDR only (a restart still
  // binds past TIME_WAIT), so a second server is told the port is in use.
  int listen_fd = -1;
  svr.set_socket_options([&listen_fd](auto sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = sock;
  });
  if (!svr.bind_to_port(o.host, o.port)) {
    throw std::runtime_error(fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)", o.host, o.port));
  }
  if (listen_fd >= 0 && ::listen(listen_fd, 4096) != 0) {
    std::cerr << fmt::format("sluice serve: warning: could not raise the listen backlog: {}\n", std::strerror(errno));
  }
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    svr.stop();
  });
  std::cerr << fmt::format("sluice serve: {} as \"{}\" on http://{}:{} ({} KV slots, context {}, {}); Ctrl-C stops\n",
                           o.flags.session.model, model_name, o.host, o.port, o.parallel, session.n_ctx(), session.describe())
            << std::flush;
  svr.listen_after_bind();
  pthread_kill(stopper.native_handle(), SIGTERM);  // stopped some other way: release the waiting thread
  stopper.join();
  batches.stop();  // before the engine's service: a running batch keeps its status, resumed at the next start
  std::cerr << "sluice serve: stopped\n";
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "An OpenAI-compatible HTTP server: POST /v1/chat/completions and /v1/completions (\"stream\": true as server-sent\n"
      "events), GET /v1/models, /health and /metrics (Prometheus). Concurrent requests share every pass (continuous\n"
      "batching over --parallel KV slots), so each read of a streamed block serves all clients in flight. Listens on\n"
      "127.0.0.1 unless --host says otherwise.\n"
      "With --state-dir DIR, the OpenAI Batch API: /v1/files (upload purpose=batch, list, get, content, delete) and\n"
      "/v1/batches (create, get, list, cancel). Batches run one at a time through the same engine, beside interactive\n"
      "requests; their output is what `sluice batch` writes for the same file (error lines included; error_file_id is\n"
      "null), and a batch left unfinished by a crash or a stop resumes when the server starts again.");
  add_session_flags(cmd, o->flags);
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port")->capture_default_str()->check(CLI::Range(1, 65535));
  cmd->add_option("--api-key", o->api_key, "Require \"Authorization: Bearer KEY\" (all routes but /health)");
  cmd->add_option("--alias", o->alias, "The model's name in answers and /v1/models (default: its general.name)");
  cmd->add_option("--chat-template", o->chat_template, "llama2 | llama3 | chatml | mistral | gemma | gpt-oss (default: the model's)");
  cmd->add_option("--parallel", o->parallel, "KV slots: requests computed together (also -np)")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--max-queue", o->max_queue, "Requests waiting for a slot before new ones get 503")->capture_default_str();
  cmd->add_option("--max-connections", o->max_connections, "Connections served at once (worker threads)")->capture_default_str();
  cmd->add_option("--max-body", o->max_body, "Largest request body (larger: 413)")->capture_default_str();
  cmd->add_option("--state-dir", o->state_dir,
                  "Folder for the Batch API's files and batches (default: none, and /v1/files, /v1/batches answer 501)");
  cmd->add_option("--max-file-size", o->max_file_size, "Largest upload to /v1/files (larger: 413; held in memory while it is received)")->capture_default_str();
  cmd->add_option("--timeout", o->timeout_s, "Seconds a client may stall sending its request or reading its answer before it is dropped")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--max-tokens", o->default_max_tokens, "max_tokens for requests that give none")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  cmd->callback([o] { serve(*o); });
}

}  // namespace sluice
