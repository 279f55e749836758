// Test support: a unique temporary directory removed at scope exit, and files filled with a
// position-dependent pattern so any misplaced byte is detectable.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sluice::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/sluice-test-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    path_ = ::mkdtemp(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Byte at file position `pos` for a pattern seeded by `seed`: a cheap hash, so a byte read from
// the wrong offset is almost surely different.
inline std::uint8_t pattern_byte(std::uint64_t pos, std::uint64_t seed) {
  std::uint64_t x = (pos + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  return static_cast<std::uint8_t>(x ^ (x >> 17));
}

inline void write_pattern_file(const std::string& path, std::uint64_t size, std::uint64_t seed) {
  std::vector<char> data(size);
  for (std::uint64_t i = 0; i < size; ++i) data[i] = static_cast<char>(pattern_byte(i, seed));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

}  // namespace sluice::testing
