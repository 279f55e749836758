// Trace recorder: per-thread event buffers, merged, sorted and streamed out as Chrome JSON.
#include "common/trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <unordered_map>

namespace sluice {

namespace trace_detail {

struct Event {
  std::int64_t ts_ns = 0;   // relative to the recorder's start
  std::int64_t dur_ns = 0;  // 'X': duration (>= 0); 'C': the value's bits (std::bit_cast)
  std::uint32_t lane = 0;   // index into the owning ThreadBuffer's lanes
  std::uint16_t name_len = 0;
  std::uint8_t nargs = 0;
  char ph = 'X';
  std::string payload;  // name, then nargs encoded args
};
static_assert(sizeof(Event) <= 56);

// One thread's events for one recorder. Shared between the recorder (which reads it in write())
// and the thread's cache (so it survives whichever goes first). `mu` is only contended by write().
struct ThreadBuffer {
  std::mutex mu;
  std::atomic<bool> owned{true};  // a live thread cache holds it; false: free for another thread
  std::vector<std::string> lanes;
  std::uint32_t last_lane = 0;
  std::deque<Event> events;  // deque: growth never moves events (no latency spikes)

  // Index of `lane` in this buffer, added when new; nullopt once kMaxLanesPerThread are used.
  std::optional<std::uint32_t> lane_index(std::string_view lane) {
    if (last_lane < lanes.size() && lanes[last_lane] == lane) return last_lane;
    for (std::uint32_t i = 0; i < lanes.size(); ++i) {
      if (lanes[i] == lane) return last_lane = i;
    }
    if (lanes.size() >= TraceRecorder::kMaxLanesPerThread) return std::nullopt;
    lanes.emplace_back(lane);
    return last_lane = static_cast<std::uint32_t>(lanes.size() - 1);
  }
};

namespace {

static_assert(TraceRecorder::kMaxStringBytes <= 0xffff && TraceRecorder::kMaxArgs <= 0xff);

enum ArgKind : std::uint8_t { kInt = 0, kUInt, kDouble, kFalse, kTrue, kString };

std::string_view clip(std::string_view s) { return s.substr(0, TraceRecorder::kMaxStringBytes); }

void put_u16(std::string& out, std::size_t v) {
  auto u = static_cast<std::uint16_t>(v);
  out.append(reinterpret_cast<const char*>(&u), sizeof u);
}

template <class T>
void put_raw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

std::size_t encoded_size(const TraceArg& arg) {
  std::size_t n = 2 + clip(arg.key()).size() + 1;
  if (auto* sv = std::get_if<std::string_view>(&arg.value())) return n + 2 + clip(*sv).size();
  if (std::holds_alternative<bool>(arg.value())) return n;
  return n + 8;
}

}  // namespace

void append_arg(std::string& payload, const TraceArg& arg) {
  std::string_view key = clip(arg.key());
  put_u16(payload, key.size());
  payload.append(key);
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          std::string_view c = clip(v);
          payload.push_back(static_cast<char>(kString));
          put_u16(payload, c.size());
          payload.append(c);
        } else if constexpr (std::is_same_v<T, bool>) {
          payload.push_back(static_cast<char>(v ? kTrue : kFalse));
        } else {
          payload.push_back(static_cast<char>(std::is_same_v<T, std::int64_t>    ? kInt
                                              : std::is_same_v<T, std::uint64_t> ? kUInt
                                                                                 : kDouble));
          put_raw(payload, v);
        }
      },
      arg.value());
}

}  // namespace trace_detail

using trace_detail::Event;
using trace_detail::ThreadBuffer;

struct TraceRecorder::Impl {
  std::uint64_t id = 0;  // unique per recorder, never reused: keys the thread caches
  TimePoint start;
  mutable std::mutex mu;  // guards buffers and summary
  std::vector<std::shared_ptr<ThreadBuffer>> buffers;
  std::optional<nlohmann::json> summary;
  std::atomic<std::size_t> accepted{0};  // may run past the cap; recorded = min(accepted, cap)
  std::atomic<std::size_t> dropped{0};
};

namespace {

std::atomic<std::uint64_t> g_next_recorder_id{1};

// Per-thread map recorder id -> buffer, a few slots, round-robin eviction. An evicted (or, at
// thread exit, every) buffer is marked unowned so its recorder can hand it to another thread.
struct ThreadCache {
  struct Entry {
    std::uint64_t id = 0;
    std::shared_ptr<ThreadBuffer> buffer;
  };
  std::array<Entry, 8> entries;
  unsigned next = 0;

  ThreadBuffer* find(std::uint64_t id) const {
    for (const Entry& e : entries) {
      if (e.id == id) return e.buffer.get();
    }
    return nullptr;
  }
  void insert(std::uint64_t id, std::shared_ptr<ThreadBuffer> buffer) {
    Entry& slot = entries[next];
    next = (next + 1) % entries.size();
    if (slot.buffer) slot.buffer->owned.store(false, std::memory_order_release);
    slot.id = id;
    slot.buffer = std::move(buffer);
  }
  ~ThreadCache() {
    for (Entry& e : entries) {
      if (e.buffer) e.buffer->owned.store(false, std::memory_order_release);
    }
  }
};

thread_local ThreadCache t_cache;

std::int64_t ns_between(TraceRecorder::TimePoint from, TraceRecorder::TimePoint to) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
}

}  // namespace

TraceRecorder::TraceRecorder(bool enabled, std::size_t max_events)
    : enabled_(enabled), max_events_(max_events) {
  if (enabled_) {
    impl_ = std::make_unique<Impl>();
    impl_->id = g_next_recorder_id.fetch_add(1, std::memory_order_relaxed);
    impl_->start = Clock::now();
  }
}

TraceRecorder::~TraceRecorder() {
  if (!impl_) return;
  // Thread caches may still hold our buffers: free the events now, leave empty shells.
  std::lock_guard registry(impl_->mu);
  for (auto& b : impl_->buffers) {
    std::lock_guard lock(b->mu);
    std::deque<Event>().swap(b->events);
    std::vector<std::string>().swap(b->lanes);
  }
}

std::size_t TraceRecorder::recorded_events() const {
  if (!impl_) return 0;
  return std::min(impl_->accepted.load(std::memory_order_relaxed), max_events_);
}

std::size_t TraceRecorder::dropped_events() const {
  return impl_ ? impl_->dropped.load(std::memory_order_relaxed) : 0;
}

void TraceRecorder::set_summary(nlohmann::json summary) {
  if (!impl_) return;
  std::lock_guard registry(impl_->mu);
  impl_->summary = std::move(summary);
}

ThreadBuffer* TraceRecorder::thread_buffer() {
  Impl& im = *impl_;
  if (ThreadBuffer* b = t_cache.find(im.id)) return b;
  std::shared_ptr<ThreadBuffer> buffer;
  {
    std::lock_guard registry(im.mu);
    for (auto& b : im.buffers) {
      bool expected = false;
      if (b->owned.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
        buffer = b;
        break;
      }
    }
    if (!buffer) {
      if (im.buffers.size() >= kMaxThreadBuffers) return nullptr;
      buffer = std::make_shared<ThreadBuffer>();
      im.buffers.push_back(buffer);
    }
  }
  ThreadBuffer* raw = buffer.get();
  t_cache.insert(im.id, std::move(buffer));
  return raw;
}

// Appends a fully built event (allocations already done, outside the buffer lock).
void TraceRecorder::push(std::string_view lane, Event&& event) {
  Impl& im = *impl_;
  ThreadBuffer* b = thread_buffer();
  if (!b) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::lock_guard lock(b->mu);
  std::optional<std::uint32_t> idx = b->lane_index(lane.substr(0, kMaxStringBytes));
  if (!idx) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (im.accepted.fetch_add(1, std::memory_order_relaxed) >= max_events_) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  event.lane = *idx;
  try {
    b->events.push_back(std::move(event));
  } catch (...) {
    im.accepted.fetch_sub(1, std::memory_order_relaxed);
    throw;
  }
}

void TraceRecorder::record(Phase ph, std::string_view lane, std::string_view name,
                           TimePoint start, TimePoint end, double value, const TraceArg* args,
                           std::size_t nargs) noexcept {
  Impl& im = *impl_;
  if (im.accepted.load(std::memory_order_relaxed) >= max_events_) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    Event e;
    e.ph = static_cast<char>(ph);
    e.ts_ns = ns_between(im.start, start);
    if (ph == kComplete) e.dur_ns = std::max<std::int64_t>(0, ns_between(start, end));
    if (ph == kCounter) e.dur_ns = std::bit_cast<std::int64_t>(value);
    name = name.substr(0, kMaxStringBytes);
    nargs = std::min(nargs, kMaxArgs);
    std::size_t size = name.size();
    for (std::size_t i = 0; i < nargs; ++i) size += trace_detail::encoded_size(args[i]);
    e.payload.reserve(size);
    e.payload.append(name);
    for (std::size_t i = 0; i < nargs; ++i) trace_detail::append_arg(e.payload, args[i]);
    e.name_len = static_cast<std::uint16_t>(name.size());
    e.nargs = static_cast<std::uint8_t>(nargs);
    push(lane, std::move(e));
  } catch (...) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

void TraceRecorder::record_scope(std::string_view lane, std::string&& payload,
                                 std::size_t name_len, std::size_t nargs, TimePoint start,
                                 TimePoint end) noexcept {
  Impl& im = *impl_;
  if (im.accepted.load(std::memory_order_relaxed) >= max_events_) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    Event e;
    e.ph = kComplete;
    e.ts_ns = ns_between(im.start, start);
    e.dur_ns = std::max<std::int64_t>(0, ns_between(start, end));
    e.name_len = static_cast<std::uint16_t>(name_len);
    e.nargs = static_cast<std::uint8_t>(nargs);
    e.payload = std::move(payload);
    push(lane, std::move(e));
  } catch (...) {
    im.dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

// ---- TraceScope ---------------------------------------------------------------------------

void TraceScope::start(TraceRecorder* recorder, std::string_view lane, std::string_view name,
                       std::initializer_list<TraceArg> args) noexcept {
  try {
    lane_.assign(lane.substr(0, TraceRecorder::kMaxStringBytes));
    name = name.substr(0, TraceRecorder::kMaxStringBytes);
    std::size_t n = std::min(args.size(), TraceRecorder::kMaxArgs);
    std::size_t size = name.size();
    for (std::size_t i = 0; i < n; ++i) size += trace_detail::encoded_size(args.begin()[i]);
    payload_.reserve(size);
    payload_.append(name);
    for (std::size_t i = 0; i < n; ++i) trace_detail::append_arg(payload_, args.begin()[i]);
    name_len_ = static_cast<std::uint16_t>(name.size());
    nargs_ = static_cast<std::uint8_t>(n);
    recorder_ = recorder;
    start_ = TraceRecorder::Clock::now();
  } catch (...) {
    recorder->impl_->dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

void TraceScope::arg(const TraceArg& a) noexcept {
  if (!recorder_ || nargs_ >= TraceRecorder::kMaxArgs) return;
  std::size_t size = payload_.size();
  try {
    trace_detail::append_arg(payload_, a);
    ++nargs_;
  } catch (...) {
    payload_.resize(size);  // out of memory: the span is still recorded, without this argument
  }
}

void TraceScope::finish() noexcept {
  recorder_->record_scope(lane_, std::move(payload_), name_len_, nargs_, start_,
                          TraceRecorder::Clock::now());
}

// ---- writing ------------------------------------------------------------------------------

namespace {

// Lane groups in display order; a lane's group is its text before the first '/'.
int lane_rank(std::string_view lane) {
  std::string_view group = lane.substr(0, lane.find('/'));
  static constexpr std::array<std::string_view, 4> kOrder = {"io", "decompress", "compute", "h2d"};
  for (std::size_t i = 0; i < kOrder.size(); ++i) {
    if (group == kOrder[i]) return static_cast<int>(i);
  }
  return static_cast<int>(kOrder.size());
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Natural order: digit runs compare as numbers ("worker 2" < "worker 10").
int natural_compare(std::string_view a, std::string_view b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (is_digit(a[i]) && is_digit(b[j])) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && is_digit(a[ie])) ++ie;
      while (je < b.size() && is_digit(b[je])) ++je;
      std::string_view da = a.substr(i, ie - i), db = b.substr(j, je - j);
      while (da.size() > 1 && da[0] == '0') da.remove_prefix(1);
      while (db.size() > 1 && db[0] == '0') db.remove_prefix(1);
      if (da.size() != db.size()) return da.size() < db.size() ? -1 : 1;
      if (int c = da.compare(db); c != 0) return c < 0 ? -1 : 1;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]) ? -1 : 1;
      ++i;
      ++j;
    }
  }
  if (i < a.size()) return 1;
  if (j < b.size()) return -1;
  return 0;
}

bool lane_less(const std::string& a, const std::string& b) {
  int ra = lane_rank(a), rb = lane_rank(b);
  if (ra != rb) return ra < rb;
  if (int c = natural_compare(a, b); c != 0) return c < 0;
  return a < b;
}

using Buffer = fmt::memory_buffer;

void put(Buffer& out, std::string_view s) { out.append(s.data(), s.data() + s.size()); }

// A JSON string literal. Plain ASCII is copied; anything else goes through nlohmann, which
// escapes control characters and replaces invalid UTF-8 (names may come from files).
void put_string(Buffer& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
  });
  if (plain) {
    out.push_back('"');
    put(out, s);
    out.push_back('"');
  } else {
    put(out, nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

void put_double(Buffer& out, double v) {
  if (std::isfinite(v)) {
    fmt::format_to(std::back_inserter(out), "{}", v);
  } else {
    put(out, "null");  // JSON has no inf / nan
  }
}

// Microseconds with nanosecond resolution.
void put_us(Buffer& out, std::int64_t ns) {
  fmt::format_to(std::back_inserter(out), "{:.3f}", static_cast<double>(ns) / 1e3);
}

// Decodes the args of `e` (see trace_detail::append_arg) as a JSON object.
void put_args(Buffer& out, const Event& e) {
  const char* p = e.payload.data() + e.name_len;
  auto take = [&p](auto& v) {
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
  };
  auto take_string = [&]() {
    std::uint16_t len;
    take(len);
    std::string_view s(p, len);
    p += len;
    return s;
  };
  out.push_back('{');
  for (unsigned i = 0; i < e.nargs; ++i) {
    if (i > 0) out.push_back(',');
    put_string(out, take_string());
    out.push_back(':');
    std::uint8_t kind;
    take(kind);
    switch (kind) {
      case trace_detail::kInt: {
        std::int64_t v;
        take(v);
        fmt::format_to(std::back_inserter(out), "{}", v);
        break;
      }
      case trace_detail::kUInt: {
        std::uint64_t v;
        take(v);
        fmt::format_to(std::back_inserter(out), "{}", v);
        break;
      }
      case trace_detail::kDouble: {
        double v;
        take(v);
        put_double(out, v);
        break;
      }
      case trace_detail::kFalse: put(out, "false"); break;
      case trace_detail::kTrue: put(out, "true"); break;
      default: put_string(out, take_string()); break;
    }
  }
  out.push_back('}');
}

constexpr int kPid = 1;

class FileSink {
 public:
  explicit FileSink(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) fail(errno);
  }
  ~FileSink() {
    if (f_) std::fclose(f_);
  }
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void flush_if_large(Buffer& buf) {
    if (buf.size() >= (std::size_t{1} << 20)) flush(buf);
  }
  void flush(Buffer& buf) {
    if (buf.size() > 0 && std::fwrite(buf.data(), 1, buf.size(), f_) != buf.size()) fail(errno);
    buf.clear();
  }
  void close() {
    std::FILE* f = f_;
    f_ = nullptr;
    if (std::fflush(f) != 0) {
      int err = errno;
      std::fclose(f);
      fail(err);
    }
    if (std::fclose(f) != 0) fail(errno);
  }

 private:
  [[noreturn]] void fail(int err) const {
    throw std::runtime_error(
        fmt::format("trace: cannot write '{}': {}", path_, err ? std::strerror(err) : "I/O error"));
  }
  std::string path_;
  std::FILE* f_;
};

}  // namespace

void TraceRecorder::write(const std::string& path) const {
  if (!impl_) return;
  const Impl& im = *impl_;
  // Hold the registry and every buffer for the whole write: a consistent snapshot, no copies.
  std::lock_guard registry(im.mu);
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(im.buffers.size());
  for (const auto& b : im.buffers) locks.emplace_back(b->mu);

  // Lanes -> tids in display order.
  std::set<std::string> lane_set;
  for (const auto& b : im.buffers) lane_set.insert(b->lanes.begin(), b->lanes.end());
  std::vector<std::string> lanes(lane_set.begin(), lane_set.end());
  std::sort(lanes.begin(), lanes.end(), lane_less);
  std::unordered_map<std::string_view, int> tid_of;
  for (std::size_t i = 0; i < lanes.size(); ++i) tid_of.emplace(lanes[i], static_cast<int>(i) + 1);

  struct Ref {
    const Event* event;
    int tid;
  };
  std::vector<Ref> refs;
  std::size_t total = 0;
  for (const auto& b : im.buffers) total += b->events.size();
  refs.reserve(total);
  for (const auto& b : im.buffers) {
    std::vector<int> tids(b->lanes.size());
    for (std::size_t i = 0; i < b->lanes.size(); ++i) tids[i] = tid_of.at(b->lanes[i]);
    for (const Event& e : b->events) refs.push_back({&e, tids[e.lane]});
  }
  // By start time; at equal starts the longer span first so enclosing spans precede nested ones.
  auto span = [](const Event* e) { return e->ph == kComplete ? e->dur_ns : 0; };
  std::stable_sort(refs.begin(), refs.end(), [&span](const Ref& a, const Ref& b) {
    if (a.event->ts_ns != b.event->ts_ns) return a.event->ts_ns < b.event->ts_ns;
    return span(a.event) > span(b.event);
  });

  FileSink sink(path);
  Buffer out;
  put(out, "{\"traceEvents\":[\n");
  fmt::format_to(std::back_inserter(out),
                 "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{0},\"tid\":0,"
                 "\"args\":{{\"name\":\"sluice\"}}}}",
                 kPid);
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    int tid = static_cast<int>(i) + 1;
    fmt::format_to(std::back_inserter(out),
                   ",\n{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{},\"tid\":{},\"args\":{{\"name\":",
                   kPid, tid);
    put_string(out, lanes[i]);
    fmt::format_to(std::back_inserter(out),
                   "}}}},\n{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{},\"tid\":{},"
                   "\"args\":{{\"sort_index\":{}}}}}",
                   kPid, tid, i);
  }
  for (const Ref& r : refs) {
    const Event& e = *r.event;
    std::string_view lane = lanes[r.tid - 1];
    std::string_view name(e.payload.data(), e.name_len);
    std::string_view group = lane.substr(0, lane.find('/'));
    put(out, ",\n{\"ph\":\"");
    out.push_back(e.ph);
    put(out, "\",\"name\":");
    if (e.ph == kCounter) {
      put_string(out, fmt::format("{}/{}", lane, name));
    } else {
      put_string(out, name);
    }
    put(out, ",\"cat\":");
    put_string(out, group);
    fmt::format_to(std::back_inserter(out), ",\"pid\":{},\"tid\":{},\"ts\":", kPid, r.tid);
    put_us(out, e.ts_ns);
    if (e.ph == kComplete) {
      put(out, ",\"dur\":");
      put_us(out, e.dur_ns);
    } else if (e.ph == kInstant) {
      put(out, ",\"s\":\"t\"");
    }
    put(out, ",\"args\":");
    if (e.ph == kCounter) {
      put(out, "{\"value\":");
      put_double(out, std::bit_cast<double>(e.dur_ns));
      out.push_back('}');
    } else {
      put_args(out, e);
    }
    out.push_back('}');
    sink.flush_if_large(out);
  }

  nlohmann::json other = {
      {"tool", "sluice"},
      {"event_cap", max_events_},
      {"recorded_events", refs.size()},
      {"dropped_events", im.dropped.load(std::memory_order_relaxed)},
  };
  if (im.summary) other["summary"] = *im.summary;
  put(out, "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":");
  put(out, other.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  put(out, "}\n");
  sink.flush(out);
  sink.close();
}

}  // namespace sluice
