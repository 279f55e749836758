#include "common/memory.hpp"

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
std::uint64_t available_memory_bytes() { return read_kb_field("/proc/meminfo", "MemAvailable"); }

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace sluice
