// Test support: the N-th-fault sweep of STYLE.md (SQLite's test/ioerr.test) over io::FaultPlan.
// A run is first counted with a fault-free plan; then, for every N of its operations, it runs
// again with the N-th failing once with EINTR (transient: the readers must retry and change
// nothing) and with every operation from the N-th on failing with EIO (persistent: the run must
// fail cleanly, naming the file and offset). One counter numbers the operations of every reader
// and writer given the plan (FaultPlan::shared_operations), so N counts across the whole run.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "io/fault_backend.hpp"

namespace sluice::testing {

// The plan that fails operation n (1-based) once with EINTR, or persistently from n on with EIO,
// numbering operations with `operations` (which must outlive every backend given the plan).
inline io::FaultPlan nth_fault(std::uint64_t n, bool persistent, std::atomic<std::uint64_t>& operations) {
  io::FaultPlan plan;
  plan.fail_op = n;
  plan.persistent = persistent;
  plan.fail_errno = persistent ? EIO : EINTR;
  plan.shared_operations = &operations;
  return plan;
}

// For n = 1 .. total, transient then persistent: resets `operations` and calls
// body(plan, persistent) under a SCOPED_TRACE naming the fault.
template <typename Body>
void sweep_nth_fault(std::uint64_t total, std::atomic<std::uint64_t>& operations, Body&& body) {
  for (std::uint64_t n = 1; n <= total; ++n) {
    for (bool persistent : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "I/O " << n << " of " << total << (persistent ? ", persistent EIO" : ", one EINTR"));
      operations = 0;
      io::FaultPlan plan = nth_fault(n, persistent, operations);
      body(plan, persistent);
    }
  }
}

}  // namespace sluice::testing
