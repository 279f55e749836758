// Chrome / Perfetto trace recorder for `sluice run/batch --trace out.json`.
//
// Events are recorded on named lanes ("io", "decompress", "compute/worker 1", "h2d", ...). In the
// written file every lane is one thread track of a single process "sluice"; thread_name and
// thread_sort_index metadata make Perfetto / chrome://tracing show the lane names with the groups
// io, decompress, compute, h2d in that order (then any other lane, alphabetically; within a group
// lanes sort naturally, so "compute/worker 2" precedes "compute/worker 10").
//
// Cost: a disabled recorder costs one branch per call (TraceScope: one branch plus three empty
// members). An enabled recorder appends to a per-thread buffer (found through a thread_local
// cache, registered once under a mutex); each buffer has its own mutex, which only write() ever
// contends for, so there is no global lock per event. The event cap is one relaxed atomic.
// Record from any thread, except from thread_local destructors (the per-thread cache may be gone).
//
// Limits: at most `max_events` events (default 4 Mi; later ones are counted as dropped and the
// count is written to otherData), kMaxArgs arguments per event (extra ones are ignored),
// names / string values truncated to kMaxStringBytes, kMaxLanesPerThread distinct lanes per thread
// and kMaxThreadBuffers concurrently registered threads (events beyond those limits are dropped
// and counted). Memory: 56 bytes per event plus, when name and args exceed 15 bytes, one heap
// block holding them (about 120 bytes in all for "read extent" with two numeric args).
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include <nlohmann/json_fwd.hpp>

namespace sluice {

// One event argument: a key and a number, bool or string. Only a parameter type: it views the
// caller's strings and must not outlive the call it is passed to.
//   recorder.complete("io", "read", t0, t1, {{"extent", 3}, {"bytes", 1048576}, {"file", path}});
class TraceArg {
 public:
  using Value = std::variant<std::int64_t, std::uint64_t, double, bool, std::string_view>;

  template <std::integral T>
  TraceArg(std::string_view key, T v) : key_(key), value_(convert(v)) {}
  template <std::floating_point T>
  TraceArg(std::string_view key, T v) : key_(key), value_(static_cast<double>(v)) {}
  TraceArg(std::string_view key, std::string_view v) : key_(key), value_(v) {}
  TraceArg(std::string_view key, const char* v) : key_(key), value_(std::string_view(v ? v : "")) {}

  std::string_view key() const { return key_; }
  const Value& value() const { return value_; }

 private:
  template <std::integral T>
  static Value convert(T v) {
    if constexpr (std::same_as<T, bool>) {
      return v;
    } else if constexpr (std::is_signed_v<T>) {
      return static_cast<std::int64_t>(v);
    } else {
      return static_cast<std::uint64_t>(v);
    }
  }

  std::string_view key_;
  Value value_;
};

namespace trace_detail {
// Events keep their name and arguments in one compact byte string (one allocation per event):
// the name, then per argument [u16 key length][key][u8 kind][8-byte number | u16 length + bytes].
// Appends `arg` to such a payload (key and string value clipped to kMaxStringBytes).
void append_arg(std::string& payload, const TraceArg& arg);
struct ThreadBuffer;
struct Event;
}  // namespace trace_detail

class TraceRecorder {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  static constexpr std::size_t kDefaultMaxEvents = std::size_t{4} << 20;
  static constexpr std::size_t kMaxArgs = 16;
  static constexpr std::size_t kMaxStringBytes = 1024;
  static constexpr std::size_t kMaxLanesPerThread = 1024;
  static constexpr std::size_t kMaxThreadBuffers = 4096;

  // Timestamps in the file are relative to the construction of the recorder.
  explicit TraceRecorder(bool enabled, std::size_t max_events = kDefaultMaxEvents);
  ~TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  bool enabled() const { return enabled_; }

  // A span [start, end] on `lane` ("ph":"X"); end before start records a zero duration.
  void complete(std::string_view lane, std::string_view name, TimePoint start, TimePoint end,
                std::initializer_list<TraceArg> args = {}) noexcept {
    if (enabled_) record(kComplete, lane, name, start, end, 0.0, args.begin(), args.size());
  }
  // A point in time on `lane` ("ph":"i", thread scope).
  void instant(std::string_view lane, std::string_view name, TimePoint time,
               std::initializer_list<TraceArg> args = {}) noexcept {
    if (enabled_) record(kInstant, lane, name, time, time, 0.0, args.begin(), args.size());
  }
  // A counter sample ("ph":"C"). Chrome counters are per process, so the track is named
  // "<lane>/<name>" to keep equal names on different lanes apart.
  void counter(std::string_view lane, std::string_view name, TimePoint time, double value) noexcept {
    if (enabled_) record(kCounter, lane, name, time, time, value, nullptr, 0);
  }

  // Stored in otherData.summary (e.g. the per-pass summary table); replaces an earlier one.
  void set_summary(nlohmann::json summary);

  // Writes {"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}} to `path`. A disabled
  // recorder writes nothing (no file is created). Throws std::runtime_error naming the path when
  // the file cannot be opened or written. Recording threads wait while it runs.
  void write(const std::string& path) const;

  // Events kept / dropped so far (dropped: over the cap or another limit, or out of memory).
  std::size_t recorded_events() const;
  std::size_t dropped_events() const;
  std::size_t max_events() const { return max_events_; }

 private:
  friend class TraceScope;
  enum Phase : char { kComplete = 'X', kInstant = 'i', kCounter = 'C' };
  struct Impl;

  void record(Phase ph, std::string_view lane, std::string_view name, TimePoint start,
              TimePoint end, double value, const TraceArg* args, std::size_t nargs) noexcept;
  void record_scope(std::string_view lane, std::string&& payload, std::size_t name_len,
                    std::size_t nargs, TimePoint start, TimePoint end) noexcept;
  trace_detail::ThreadBuffer* thread_buffer();
  void push(std::string_view lane, trace_detail::Event&& event);

  bool enabled_;
  std::size_t max_events_;
  std::unique_ptr<Impl> impl_;  // null when disabled
};

// Records a complete event from construction to destruction. Lane, name and args are copied, so
// temporaries are fine. A null or disabled recorder makes it a no-op.
//   TraceScope scope(recorder, "io", "read extent 3", {{"extent", 3}});
class TraceScope {
 public:
  TraceScope(TraceRecorder& recorder, std::string_view lane, std::string_view name,
             std::initializer_list<TraceArg> args = {})
      : TraceScope(&recorder, lane, name, args) {}
  TraceScope(TraceRecorder* recorder, std::string_view lane, std::string_view name,
             std::initializer_list<TraceArg> args = {}) {
    if (recorder && recorder->enabled()) start(recorder, lane, name, args);
  }
  ~TraceScope() {
    if (recorder_) finish();
  }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

  // Adds an argument known only later (e.g. the bytes actually read).
  void arg(const TraceArg& a) noexcept;

 private:
  void start(TraceRecorder* recorder, std::string_view lane, std::string_view name,
             std::initializer_list<TraceArg> args) noexcept;
  void finish() noexcept;

  TraceRecorder* recorder_ = nullptr;
  TraceRecorder::TimePoint start_{};
  std::string lane_;
  std::string payload_;  // name, then encoded args (see trace_detail::append_arg)
  std::uint16_t name_len_ = 0;
  std::uint8_t nargs_ = 0;
};

}  // namespace sluice
