#include "engine/request_service.hpp"

#include <chrono>
#include <utility>
#include <vector>

namespace sluice {

RequestService::RequestService(Engine& engine, std::size_t max_queue, std::function<void()> after_pass)
    : engine_(engine), max_queue_(max_queue), after_pass_(std::move(after_pass)) {
  thread_ = std::thread([this] { loop(); });
}

RequestService::~RequestService() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& p : queue_) {
    SeqResult r;
    r.finish = FinishReason::error;
    r.error = "the server is shutting down";
    p->done.set_value(std::move(r));
  }
}

std::optional<std::future<SeqResult>> RequestService::submit(SeqRequest request) {
  auto pending = std::make_unique<Pending>();
  pending->request = std::move(request);
  std::future<SeqResult> future = pending->done.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queue_) return std::nullopt;
    queue_.push_back(std::move(pending));
    ++stats_.requests;
    stats_.queued = queue_.size();
  }
  wake_.notify_one();
  return future;
}

ServiceStats RequestService::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void RequestService::loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
    }
    // One engine run lasts while any request is in flight; requests that arrive meanwhile are
    // taken at the next pass. Results are matched to their promise by the run's request order.
    std::vector<std::unique_ptr<Pending>> taken;
    auto source = [&]() -> std::optional<SeqRequest> {
      std::lock_guard lock(mutex_);
      if (queue_.empty() || stopping_) return std::nullopt;
      taken.push_back(std::move(queue_.front()));
      queue_.pop_front();
      stats_.queued = queue_.size();
      ++stats_.in_flight;
      return std::move(taken.back()->request);
    };
    auto sink = [&](SeqResult&& r) {
      {
        std::lock_guard lock(mutex_);
        --stats_.in_flight;
        ++stats_.finished;
        if (r.finish == FinishReason::error) ++stats_.failed;
        stats_.prompt_tokens += r.prompt_tokens;
        stats_.generated_tokens += std::int64_t(r.generated.size());
      }
      taken[r.index]->done.set_value(std::move(r));
    };
    auto on_pass = [&](const PassInfo&) {
      {
        std::lock_guard lock(mutex_);
        ++stats_.passes;
      }
      if (after_pass_) after_pass_();
    };
    const auto started = std::chrono::steady_clock::now();
    try {
      engine_.run(source, sink, on_pass);
    } catch (...) {
      // An error outside a pass (a callback's): every request of this run not yet answered fails.
      const std::exception_ptr error = std::current_exception();
      for (auto& p : taken) {
        if (!p) continue;
        try {
          p->done.set_exception(error);
        } catch (const std::future_error&) {  // already answered
        }
      }
      std::lock_guard lock(mutex_);
      stats_.in_flight = 0;
    }
    std::lock_guard lock(mutex_);
    stats_.busy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
}

}  // namespace sluice
