// Process memory readings from /proc/self/status, for benchmarks and memory-bound tests; and the
// process's CPU time, for the streaming CPU breakdown.
#pragma once

#include <cstdint>

namespace sluice {

std::uint64_t current_rss_bytes();  // VmRSS
std::uint64_t peak_rss_bytes();     // VmHWM: the high-water mark since start or the last reset
// Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs). False if not permitted.
bool reset_peak_rss();
// MemAvailable from /proc/meminfo (0 when unknown), lowered to what this process's memory
// cgroup (v1 or v2) still allows it when one limits it.
std::uint64_t available_memory_bytes();
// The memory limit of this process's cgroup (the smallest along v1/v2 entries); 0 when none.
std::uint64_t cgroup_memory_limit_bytes();
// User + system CPU seconds of every thread of this process so far (getrusage RUSAGE_SELF).
double process_cpu_seconds();

}  // namespace sluice
