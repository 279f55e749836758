// Requests from many threads (a server's connections) through one engine (engine/engine.hpp) on
// one thread of its own: continuous batching across clients. A request submitted while others
// run joins their next pass (BatchOptions::source_may_resume), so every read of a streamed block
// serves every client in flight. Results come back through a future; text streams through the
// request's on_text, called on the engine's thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/engine.hpp"

namespace sluice {

struct ServiceStats {
  std::uint64_t requests = 0, finished = 0, failed = 0, passes = 0;
  std::int64_t prompt_tokens = 0, generated_tokens = 0;
  std::uint64_t queued = 0;     // waiting for a KV slot now
  std::uint64_t in_flight = 0;  // holding a slot now
  double busy_seconds = 0;      // inside engine runs
};

class RequestService {
 public:
  // `engine` (its own BatchOptions with source_may_resume set by the caller) is used only on
  // the service's thread; max_queue: submit() refuses beyond this many waiting.
  // after_pass (optional) runs on the service's thread after every pass (a server reads the
  // model's streaming counters there).
  RequestService(Engine& engine, std::size_t max_queue, std::function<void()> after_pass = {});
  ~RequestService();  // stops: waiting requests fail, the one run in progress finishes
  RequestService(const RequestService&) = delete;
  RequestService& operator=(const RequestService&) = delete;

  // nullopt: the queue is full. The future's result has FinishReason::error for a refused
  // request or a failed pass (SeqResult::error says why).
  std::optional<std::future<SeqResult>> submit(SeqRequest request);
  ServiceStats stats() const;

 private:
  struct Pending {
    SeqRequest request;
    std::promise<SeqResult> done;
  };
  void loop();

  Engine& engine_;
  std::size_t max_queue_;
  std::function<void()> after_pass_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool stopping_ = false;
  ServiceStats stats_;
  std::thread thread_;
};

}  // namespace sluice
