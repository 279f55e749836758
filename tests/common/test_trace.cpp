// TraceRecorder / TraceScope: lanes and metadata, valid JSON, ordering, disabled mode, limits,
// write errors, and concurrency (threads coming and going, several recorders, write mid-run).
#include "common/trace.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace sluice {
namespace {

using nlohmann::json;
using sluice::testing::TempDir;
using Clock = TraceRecorder::Clock;
using namespace std::chrono_literals;

std::string worker(int i) { return fmt::format("compute/worker {}", i); }

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);  // throws (fails the test) on invalid JSON
}

// The parsed trace, indexed: lane name per tid, sort index per lane, non-metadata events.
struct Parsed {
  json doc;
  std::map<int, std::string> lane_of_tid;
  std::map<std::string, int> sort_index;
  std::vector<json> events;
  std::string process_name;

  std::vector<json> named(const std::string& name) const {
    std::vector<json> out;
    for (const json& e : events) {
      if (e.at("name") == name) out.push_back(e);
    }
    return out;
  }
  std::string lane(const json& e) const { return lane_of_tid.at(e.at("tid").get<int>()); }
};

Parsed parse(const std::string& path) {
  Parsed p;
  p.doc = read_json(path);
  EXPECT_EQ(p.doc.at("displayTimeUnit"), "ms");
  EXPECT_TRUE(p.doc.at("otherData").is_object());
  std::map<int, int> sort_of_tid;
  for (const json& e : p.doc.at("traceEvents")) {
    EXPECT_EQ(e.at("pid"), 1);
    if (e.at("ph") == "M") {
      if (e.at("name") == "process_name") p.process_name = e.at("args").at("name");
      if (e.at("name") == "thread_name") {
        EXPECT_TRUE(p.lane_of_tid.emplace(e.at("tid").get<int>(), e.at("args").at("name")).second);
      }
      if (e.at("name") == "thread_sort_index") {
        sort_of_tid[e.at("tid").get<int>()] = e.at("args").at("sort_index").get<int>();
      }
    } else {
      p.events.push_back(e);
    }
  }
  for (auto [tid, idx] : sort_of_tid) p.sort_index[p.lane_of_tid.at(tid)] = idx;
  for (const json& e : p.events) EXPECT_TRUE(p.lane_of_tid.count(e.at("tid").get<int>())) << e;
  return p;
}

std::int64_t ns(const json& us) { return std::llround(us.get<double>() * 1000.0); }

TEST(Trace, ThreadsLandOnTheirLanesWithNamesAndOrder) {
  TempDir dir;
  TraceRecorder rec(true);
  ASSERT_TRUE(rec.enabled());
  // Lanes used in scrambled order; display order must still be io, decompress, compute, h2d.
  std::vector<std::string> lanes = {"h2d", "compute/worker 10", "compute/worker 2", "decompress",
                                    "zeta", "io", "compute/worker 1"};
  std::vector<std::thread> threads;
  for (const std::string& lane : lanes) {
    threads.emplace_back([&rec, lane] {
      for (int i = 0; i < 50; ++i) {
        auto t0 = Clock::now();
        rec.complete(lane, "span on " + lane, t0, Clock::now(), {{"i", i}});
      }
    });
  }
  for (auto& t : threads) t.join();
  rec.instant("io", "marker", Clock::now());
  rec.write(dir.file("t.json"));

  Parsed p = parse(dir.file("t.json"));
  EXPECT_EQ(p.process_name, "sluice");
  ASSERT_EQ(p.lane_of_tid.size(), lanes.size());
  std::vector<std::string> by_sort(lanes.size());
  for (auto& [lane, idx] : p.sort_index) by_sort.at(idx) = lane;
  EXPECT_EQ(by_sort, (std::vector<std::string>{"io", "decompress", "compute/worker 1",
                                               "compute/worker 2", "compute/worker 10", "h2d",
                                               "zeta"}));
  // tids follow the same order (Perfetto versions that ignore sort_index order by tid).
  for (auto& [tid, lane] : p.lane_of_tid) EXPECT_EQ(p.sort_index.at(lane), tid - 1);
  for (const std::string& lane : lanes) {
    auto evs = p.named("span on " + lane);
    ASSERT_EQ(evs.size(), 50u) << lane;
    std::set<int> seen;
    for (const json& e : evs) {
      EXPECT_EQ(e.at("ph"), "X");
      EXPECT_EQ(p.lane(e), lane);
      seen.insert(e.at("args").at("i").get<int>());
    }
    EXPECT_EQ(seen.size(), 50u);
  }
  auto marker = p.named("marker");
  ASSERT_EQ(marker.size(), 1u);
  EXPECT_EQ(marker[0].at("ph"), "i");
  EXPECT_EQ(marker[0].at("s"), "t");
  EXPECT_EQ(p.lane(marker[0]), "io");
  EXPECT_EQ(rec.recorded_events(), lanes.size() * 50 + 1);
  EXPECT_EQ(p.doc.at("otherData").at("recorded_events"), lanes.size() * 50 + 1);
  EXPECT_EQ(p.doc.at("otherData").at("dropped_events"), 0);
}

TEST(Trace, FileHasTheThreeLanesWhenUsed) {
  TempDir dir;
  TraceRecorder rec(true);
  auto t = Clock::now();
  rec.complete("compute", "matmul", t, t + 3ms, {{"layer", 7}});
  rec.complete("decompress", "zstd", t, t + 2ms, {{"bytes", 1048576}});
  rec.complete("io", "read extent 3", t, t + 1ms, {{"extent", 3}, {"bytes", 1048576}});
  rec.write(dir.file("t.json"));
  Parsed p = parse(dir.file("t.json"));
  std::set<std::string> names;
  for (auto& [tid, lane] : p.lane_of_tid) names.insert(lane);
  EXPECT_EQ(names, (std::set<std::string>{"io", "decompress", "compute"}));
  EXPECT_EQ(p.sort_index.at("io"), 0);
  EXPECT_EQ(p.sort_index.at("decompress"), 1);
  EXPECT_EQ(p.sort_index.at("compute"), 2);
  auto read = p.named("read extent 3");
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].at("cat"), "io");
  EXPECT_EQ(read[0].at("args").at("extent"), 3);
  EXPECT_EQ(read[0].at("args").at("bytes"), 1048576);
  EXPECT_EQ(ns(read[0].at("dur")), 1'000'000);
}

TEST(Trace, DurationsNonNegativeAndNestedScopesOrdered) {
  TempDir dir;
  TraceRecorder rec(true);
  {
    TraceScope outer(rec, "compute/worker 1", "layer 0", {{"layer", 0}});
    std::this_thread::sleep_for(1ms);
    {
      TraceScope inner(rec, "compute/worker 1", std::string("matmul ") + "q", {{"rows", 4096}});
      std::this_thread::sleep_for(1ms);
      { TraceScope innermost(rec, "compute/worker 1", "dot"); }
    }
    std::this_thread::sleep_for(1ms);
  }
  auto t = Clock::now();
  rec.complete("io", "backwards", t, t - 5ms);  // end before start: zero duration
  rec.write(dir.file("t.json"));

  Parsed p = parse(dir.file("t.json"));
  for (const json& e : p.events) {
    EXPECT_GE(ns(e.at("ts")), 0) << e;
    if (e.at("ph") == "X") {
      EXPECT_GE(ns(e.at("dur")), 0) << e;
    }
  }
  EXPECT_EQ(ns(p.named("backwards").at(0).at("dur")), 0);

  std::vector<std::string> order;
  for (const json& e : p.events) order.push_back(e.at("name"));
  std::vector<std::string> expected = {"layer 0", "matmul q", "dot", "backwards"};
  EXPECT_EQ(order, expected);
  const json outer = p.named("layer 0").at(0), inner = p.named("matmul q").at(0),
             innermost = p.named("dot").at(0);
  auto begin = [](const json& e) { return ns(e.at("ts")); };
  auto end = [](const json& e) { return ns(e.at("ts")) + ns(e.at("dur")); };
  EXPECT_LE(begin(outer), begin(inner));
  EXPECT_LE(end(inner), end(outer));
  EXPECT_LE(begin(inner), begin(innermost));
  EXPECT_LE(end(innermost), end(inner));
  EXPECT_GE(ns(outer.at("dur")), 3'000'000);
  EXPECT_EQ(inner.at("args").at("rows"), 4096);
  EXPECT_EQ(p.lane(outer), "compute/worker 1");
}

TEST(Trace, DisabledRecordsAndWritesNothing) {
  TempDir dir;
  TraceRecorder rec(false);
  EXPECT_FALSE(rec.enabled());
  auto t = Clock::now();
  rec.complete("io", "read", t, t, {{"extent", 1}});
  rec.instant("io", "x", t);
  rec.counter("io", "inflight", t, 3);
  { TraceScope scope(rec, "compute", "layer", {{"layer", 1}}); scope.arg({"late", 2}); }
  { TraceScope scope(static_cast<TraceRecorder*>(nullptr), "compute", "layer"); }
  rec.set_summary(json{{"passes", 1}});
  EXPECT_EQ(rec.recorded_events(), 0u);
  EXPECT_EQ(rec.dropped_events(), 0u);
  rec.write(dir.file("t.json"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("t.json")));
  EXPECT_NO_THROW(rec.write("/nonexistent-sluice-dir/t.json"));
}

TEST(Trace, CapCountsDrops) {
  TempDir dir;
  TraceRecorder rec(true, 10);
  EXPECT_EQ(rec.max_events(), 10u);
  auto t = Clock::now();
  for (int i = 0; i < 25; ++i) rec.complete("io", "read", t, t + 1us, {{"i", i}});
  { TraceScope scope(rec, "io", "scope over the cap"); }
  EXPECT_EQ(rec.recorded_events(), 10u);
  EXPECT_EQ(rec.dropped_events(), 16u);
  rec.write(dir.file("t.json"));
  Parsed p = parse(dir.file("t.json"));
  EXPECT_EQ(p.events.size(), 10u);
  for (const json& e : p.events) EXPECT_LT(e.at("args").at("i").get<int>(), 10);
  EXPECT_EQ(p.doc.at("otherData").at("dropped_events"), 16);
  EXPECT_EQ(p.doc.at("otherData").at("recorded_events"), 10);
  EXPECT_EQ(p.doc.at("otherData").at("event_cap"), 10);
}

TEST(Trace, CapHoldsUnderConcurrency) {
  TempDir dir;
  TraceRecorder rec(true, 1000);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&rec, w] {
      std::string lane = worker(w);
      for (int i = 0; i < 1000; ++i) rec.instant(lane, "tick", Clock::now());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(rec.recorded_events(), 1000u);
  EXPECT_EQ(rec.dropped_events(), 3000u);
  rec.write(dir.file("t.json"));
  Parsed p = parse(dir.file("t.json"));
  EXPECT_EQ(p.events.size(), 1000u);
  EXPECT_EQ(p.doc.at("otherData").at("dropped_events"), 3000);
}

TEST(Trace, UnwritablePathThrowsNamingIt) {
  TraceRecorder rec(true);
  rec.instant("io", "x", Clock::now());
  const std::string bad = "/nonexistent-sluice-dir/sub/trace.json";
  try {
    rec.write(bad);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  // Open succeeds, the write itself fails (ENOSPC at flush).
  if (std::filesystem::exists("/dev/full")) {
    try {
      rec.write("/dev/full");
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("/dev/full"), std::string::npos) << e.what();
    }
  }
}

TEST(Trace, ArgsCountersSummaryAndEscaping) {
  TempDir dir;
  TraceRecorder rec(true);
  auto t = Clock::now();
  std::string path = "/models/a \"quoted\"\n\\name.pack";
  rec.complete("io", "read \"x\"\t\x01", t, t + 10us,
               {{"extent", 3},
                {"bytes", std::uint64_t{1} << 20},
                {"big", std::numeric_limits<std::uint64_t>::max()},
                {"neg", -5},
                {"ratio", 0.25},
                {"inf", std::numeric_limits<double>::infinity()},
                {"ok", true},
                {"file", path},
                {"codec", "zstd"},
                {"bad utf8", std::string_view("\xff\xfe")}});
  rec.counter("io", "inflight bytes", t, 4096);
  rec.counter("compute/worker 1", "queue", t + 1us, 2.5);
  rec.set_summary(json{{"passes", json::array({{{"pass", 0}, {"gb_s", 3.5}}})}});
  rec.set_summary(json{{"passes", json::array({{{"pass", 1}, {"gb_s", 4.5}}})}});  // replaces
  rec.write(dir.file("t.json"));

  Parsed p = parse(dir.file("t.json"));
  auto read = p.named("read \"x\"\t\x01");
  ASSERT_EQ(read.size(), 1u);
  const json& a = read[0].at("args");
  EXPECT_EQ(a.at("extent"), 3);
  EXPECT_EQ(a.at("bytes"), 1u << 20);
  EXPECT_EQ(a.at("big").get<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(a.at("neg"), -5);
  EXPECT_DOUBLE_EQ(a.at("ratio").get<double>(), 0.25);
  EXPECT_TRUE(a.at("inf").is_null());
  EXPECT_EQ(a.at("ok"), true);
  EXPECT_EQ(a.at("file"), path);
  EXPECT_EQ(a.at("codec"), "zstd");
  EXPECT_TRUE(a.at("bad utf8").is_string());

  auto c1 = p.named("io/inflight bytes");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].at("ph"), "C");
  EXPECT_EQ(c1[0].at("args").at("value"), 4096);
  auto c2 = p.named("compute/worker 1/queue");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_DOUBLE_EQ(c2[0].at("args").at("value").get<double>(), 2.5);
  EXPECT_EQ(p.doc.at("otherData").at("summary").at("passes").at(0).at("pass"), 1);
}

TEST(Trace, LimitsOnArgsAndStrings) {
  TempDir dir;
  TraceRecorder rec(true);
  std::string long_name(5000, 'n');
  auto t = Clock::now();
  rec.complete("io", long_name, t, t,
               {{"a0", 0}, {"a1", 1}, {"a2", 2}, {"a3", 3}, {"a4", 4}, {"a5", 5}, {"a6", 6},
                {"a7", 7}, {"a8", 8}, {"a9", 9}, {"a10", 10}, {"a11", 11}, {"a12", 12},
                {"a13", 13}, {"a14", 14}, {"a15", 15}, {"a16", 16}, {"a17", 17}});
  {
    TraceScope scope(rec, "io", "scope");
    for (int i = 0; i < 40; ++i) scope.arg({fmt::format("late{}", i), i});
  }
  rec.write(dir.file("t.json"));
  Parsed p = parse(dir.file("t.json"));
  ASSERT_EQ(p.events.size(), 2u);
  for (const json& e : p.events) {
    EXPECT_LE(e.at("name").get<std::string>().size(), TraceRecorder::kMaxStringBytes);
    EXPECT_EQ(e.at("args").size(), TraceRecorder::kMaxArgs);
  }
}

TEST(Trace, ShortLivedThreadsAndManyRecorders) {
  TempDir dir;
  // Threads come and go (buffers are handed on); every event survives.
  TraceRecorder rec(true);
  for (int i = 0; i < 64; ++i) {
    std::thread([&rec, i] {
      rec.instant(worker(i % 4), fmt::format("ev {}", i), Clock::now());
    }).join();
  }
  // More recorders than the per-thread cache has slots, used round-robin from one thread.
  std::vector<std::unique_ptr<TraceRecorder>> many;
  for (int r = 0; r < 12; ++r) many.push_back(std::make_unique<TraceRecorder>(true));
  for (int round = 0; round < 3; ++round) {
    for (int r = 0; r < 12; ++r) many[r]->instant("io", fmt::format("r{}", r), Clock::now());
  }
  rec.write(dir.file("a.json"));
  Parsed p = parse(dir.file("a.json"));
  EXPECT_EQ(p.events.size(), 64u);
  for (int i = 0; i < 64; ++i) {
    auto e = p.named(fmt::format("ev {}", i));
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(p.lane(e[0]), worker(i % 4));
  }
  for (int r = 0; r < 12; ++r) {
    std::string f = dir.file(fmt::format("r{}.json", r));
    many[r]->write(f);
    Parsed q = parse(f);
    EXPECT_EQ(q.events.size(), 3u);
    EXPECT_EQ(q.named(fmt::format("r{}", r)).size(), 3u);
  }
  // A new recorder (maybe at a freed address) starts empty.
  many.clear();
  for (int i = 0; i < 3; ++i) {
    TraceRecorder fresh(true);
    fresh.instant("io", "only", Clock::now());
    fresh.write(dir.file("fresh.json"));
    EXPECT_EQ(parse(dir.file("fresh.json")).events.size(), 1u);
  }
}

TEST(Trace, WriteWhileRecording) {
  TempDir dir;
  TraceRecorder rec(true, 50000);  // bounded: the writers spin
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      std::string lane = w == 0 ? "io" : w == 1 ? "decompress" : "compute/worker 1";
      while (!stop.load()) {
        TraceScope scope(rec, lane, "work", {{"w", w}});
        std::this_thread::sleep_for(10us);
      }
    });
  }
  for (int i = 0; i < 5; ++i) {
    rec.write(dir.file("t.json"));
    Parsed p = parse(dir.file("t.json"));
    EXPECT_EQ(p.doc.at("otherData").at("recorded_events").get<std::size_t>(), p.events.size());
  }
  stop = true;
  for (auto& t : threads) t.join();
  rec.write(dir.file("t.json"));
  EXPECT_EQ(parse(dir.file("t.json")).events.size(), rec.recorded_events());
}

}  // namespace
}  // namespace sluice
