// `sluice batch` when a forward pass fails mid-job (a read error of the model): the requests of
// that pass get status_code 500 lines naming the input line and the error, every other line is
// byte-identical to a fault-free job's, and the job goes on to the end. A rerun resumes as it does
// after refused (400) lines: every line is an answer, nothing is run again or written twice.
// A job run by another engine (BatchJob::run with a runner, as `sluice serve` does) writes the same.
// Synthetic model with the built-in vocabulary: no ../shared needed.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/batch_job.hpp"
#include "engine/request_service.hpp"
#include "engine/session.hpp"
#include "tests/support/failing_forward.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Fixture {
  sluice::testing::TempDir dir;
  std::string model = dir.file("m.gguf"), input = dir.file("in.txt");
  Fixture() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 2;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from.clear();
    write_synthetic_gguf(model, synth);
    std::ofstream(input) << "Once upon a time\nThe cat sat\nA big red dog\nOne day\nShe was happy\nTim had a toy car\n";
  }
  JobOptions job(const std::string& output) const {
    JobOptions o;
    o.input = input;
    o.output = output;
    o.model_path = model;
    o.model_name = "synth";
    o.default_max_tokens = 6;
    o.fsync_seconds = 0;
    o.batch = {2, 2, 512};
    return o;
  }
  SessionOptions session() const {
    SessionOptions s;
    s.model = model;
    s.n_ctx = 64;
    s.n_seq = 2;
    return s;
  }
};

TEST(BatchJobFaults, AFailedPassFailsItsRequestsOnlyAndResumeKeepsThem) {
  Fixture f;
  std::ostringstream log;
  Session session(f.session());
  const std::string clean = f.dir.file("clean.jsonl"), faulty = f.dir.file("faulty.jsonl");
  {
    sluice::testing::FailingForward forward(session.forward(), 0);
    const JobSummary s = BatchJob(f.job(clean), log).run(session, forward);
    ASSERT_EQ(s.ok, 6u);
  }
  {
    sluice::testing::FailingForward forward(session.forward(), 3);  // the 2 sequences of the 3rd pass fail
    const JobSummary s = BatchJob(f.job(faulty), log).run(session, forward);
    EXPECT_EQ(s.ok, 4u);
    EXPECT_EQ(s.failed, 2u);
  }
  const auto want = read_lines(clean), got = read_lines(faulty);
  ASSERT_EQ(got.size(), 6u);
  ASSERT_EQ(want.size(), 6u);
  std::size_t failed = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i].find("\"status_code\":500") != std::string::npos) {
      ++failed;
      EXPECT_NE(got[i].find(fmt::format("line {}: {}", i + 1, sluice::testing::kFailedPassMessage)), std::string::npos) << got[i];
      EXPECT_NE(got[i].find("\"server_error\""), std::string::npos) << got[i];
      // The same request ID as its answer: a rerun recognises the line as this request's.
      EXPECT_EQ(got[i].substr(0, 41), want[i].substr(0, 41));
    } else {
      EXPECT_EQ(got[i], want[i]) << "line " << i + 1;
    }
  }
  EXPECT_EQ(failed, 2u);

  // Resume: every line is answered; nothing runs again, nothing is added or changed.
  const std::string before = read_all(faulty);
  sluice::testing::FailingForward forward(session.forward(), 0);
  const JobSummary s = BatchJob(f.job(faulty), log).run(session, forward);
  EXPECT_EQ(s.resumed, 6u);
  EXPECT_EQ(s.ok + s.failed, 0u);
  EXPECT_EQ(forward.passes, 0u);
  EXPECT_EQ(read_all(faulty), before);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// BatchJob::run(session, runner) as `sluice serve` uses it: the requests answered by another
// engine (a RequestService's, on its own thread), results handed back in reverse order with
// their source order as index. The output is byte-identical to the job's own engine's.
TEST(BatchJobRunner, AnotherEnginesResultsInAnyOrderGiveTheSameOutput) {
  Fixture f;
  std::ostringstream log;
  Session session(f.session());
  const std::string own = f.dir.file("own.jsonl"), served = f.dir.file("served.jsonl");
  ASSERT_EQ(BatchJob(f.job(own), log).run(session).ok, 6u);

  BatchOptions bo;
  bo.n_parallel = 2;
  bo.source_may_resume = true;
  Engine engine(session, bo);
  RequestService service(engine, 64);
  std::size_t passes = 0;
  const JobSummary s = BatchJob(f.job(served), log).run(session, [&](const auto& source, const auto& sink, const auto& on_pass) {
    std::vector<std::future<SeqResult>> futures;
    while (std::optional<SeqRequest> r = source()) futures.push_back(*service.submit(std::move(*r)));
    for (std::size_t i = futures.size(); i-- > 0;) {
      SeqResult r = futures[i].get();
      r.index = i;
      sink(std::move(r));
      on_pass(PassInfo{++passes, 1, 1});
    }
    return BatchRunStats{};
  });
  EXPECT_EQ(s.ok, 6u);
  EXPECT_EQ(read_all(served), read_all(own));
}

}  // namespace
}  // namespace sluice
