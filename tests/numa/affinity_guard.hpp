// Test helper: restores the calling thread's CPU affinity when a test that changes it ends, so
// later tests in the same process see the affinity the process started with.
#pragma once

#include <sched.h>

#include <vector>

#include "numa/threads.hpp"

namespace sluice::numa::testing {

// Sets the calling thread's affinity to `cpus` (OS indices below CPU_SETSIZE); true on success.
inline bool set_thread_cpus(const std::vector<unsigned>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned cpu : cpus) {
    if (cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
  }
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

class AffinityGuard {
 public:
  AffinityGuard() : saved_(current_thread_cpus()) {}
  ~AffinityGuard() { set_thread_cpus(saved_); }
  AffinityGuard(const AffinityGuard&) = delete;
  AffinityGuard& operator=(const AffinityGuard&) = delete;
  const std::vector<unsigned>& saved() const { return saved_; }

 private:
  std::vector<unsigned> saved_;
};

}  // namespace sluice::numa::testing
