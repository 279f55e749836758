// A fault-injecting Backend wrapper for tests (rocksdb's FaultInjectionFS, SQLite's ioerr
// sweeps): wraps io_uring or pread and, from a seed, fails the N-th operation (once, or from then
// on), reports short reads, or flips bits in the data returned. Deterministic for a given seed
// and operation order. io::File numbers its writes through the same wrapper (decide_write), so
// one plan covers a file's reads and writes; a shared counter numbers the operations of several
// files together, so an engine-wide sweep can fail "the N-th I/O of the whole run".
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <unordered_map>

#include "io/backend.hpp"

namespace sluice::io {

struct FaultPlan {
  std::uint64_t seed = 1;
  std::uint64_t fail_op = 0;  // 1-based operation number to fail; 0 = none
  int fail_errno = EIO;
  bool persistent = false;  // false: only operation fail_op fails; true: it and every later one
  double short_read_probability = 0.0;  // a successful read reports fewer bytes than it read
  double bit_flip_probability = 0.0;    // a successful read has one bit of its data flipped
  std::uint64_t flip_op = 0;            // flip one bit in this operation's data (1-based; 0 = none)
  // Sleep this long before each reap of real completions, so reads stay in flight long enough
  // for a test to act while they are (destroy or cancel with reads outstanding).
  std::chrono::microseconds reap_delay{0};
  // When set, operations are numbered by this counter, shared with every other backend and file
  // given the same plan (fail_op then counts across all of them); it must outlive them. Null:
  // each backend numbers its own operations.
  std::atomic<std::uint64_t>* shared_operations = nullptr;
};

struct FaultStats {
  std::uint64_t operations = 0;
  std::uint64_t injected_errors = 0;
  std::uint64_t short_reads = 0;
  std::uint64_t bit_flips = 0;
};

class FaultBackend final : public Backend {
 public:
  FaultBackend(std::unique_ptr<Backend> inner, FaultPlan plan);

  const char* name() const override { return "fault"; }
  bool direct() const override { return inner_->direct(); }
  int fd() const override { return inner_->fd(); }
  unsigned queue_depth() const override { return inner_->queue_depth(); }
  Status register_buffers(std::span<const iovec> regions) override { return inner_->register_buffers(regions); }
  bool buffers_registered() const override { return inner_->buffers_registered(); }
  void prepare(const RawRead& read) override;
  Status submit() override { return inner_->submit(); }
  Result<std::size_t> reap(std::span<RawCompletion> out, std::size_t min_complete) override;

  // For an operation that is not a read through prepare() (io::File's writes): numbers it like a
  // read and returns -errno to inject, or how many of `length` bytes to report written (fewer
  // than length: a short write, with short_read_probability). Same thread rules as prepare().
  std::int64_t decide_write(std::uint64_t length);

  const FaultStats& stats() const { return stats_; }
  Backend& inner() { return *inner_; }

 private:
  struct Pending {
    RawRead read;
    std::uint64_t op_number = 0;
  };
  void mangle(RawCompletion& completion);
  std::uint64_t next_operation();  // numbers one operation (1-based)
  bool fails(std::uint64_t op) const;

  std::unique_ptr<Backend> inner_;
  FaultPlan plan_;
  std::mt19937_64 rng_;
  FaultStats stats_;
  std::deque<RawCompletion> injected_;  // failures answered without reaching the inner backend
  std::unordered_map<std::uint64_t, Pending> passed_;  // by tag
};

// A BackendWrapper that puts a FaultBackend with (a copy of) `plan` over each backend it wraps.
BackendWrapper fault_wrapper(const FaultPlan& plan);

}  // namespace sluice::io
