#include "common/memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace sluice {
namespace {
// Reads "Key:   123 kB" from a /proc file; 0 when absent.
std::uint64_t read_kb_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':') {
      return std::stoull(line.substr(key.size() + 1)) * 1024;
    }
  }
  return 0;
}
}  // namespace

std::uint64_t current_rss_bytes() { return read_kb_field("/proc/self/status", "VmRSS"); }
std::uint64_t peak_rss_bytes() { return read_kb_field("/proc/self/status", "VmHWM"); }
namespace {
std::uint64_t read_number(const std::string& file) {
  std::ifstream in(file);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return 0;
  }
}
}  // namespace

std::uint64_t cgroup_memory_limit_bytes() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  std::uint64_t limit = 0;
  while (std::getline(in, line)) {
    // v1: "N:memory:/path" (or "N:cpu,memory:/path"); v2: "0::/path".
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1), path = line.substr(second + 1);
    std::uint64_t found = 0;
    if (controllers.empty()) {
      found = read_number("/sys/fs/cgroup" + path + "/memory.max");
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      found = read_number("/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes");
    }
    // v1 reports "no limit" as a huge page-rounded number.
    if (found > 0 && found < (std::uint64_t{1} << 60)) limit = limit == 0 ? found : std::min(limit, found);
  }
  return limit;
}

std::uint64_t available_memory_bytes() {
  std::uint64_t available = read_kb_field("/proc/meminfo", "MemAvailable");
  if (const std::uint64_t limit = cgroup_memory_limit_bytes(); limit > 0) {
    const std::uint64_t used = current_rss_bytes();
    available = std::min(available, limit > used ? limit - used : 0);
  }
  return available;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

double process_cpu_seconds() {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0.0;
  auto seconds = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace sluice
