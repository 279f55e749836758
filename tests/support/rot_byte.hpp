// Test support: bit rot in a file. Flips bits of one byte and puts the file's modification time
// back, so a checksum sidecar that stamps the file (size, mtime) still matches it and only the
// content check can catch the change.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

namespace sluice::testing {

inline void rot_byte(const std::string& path, std::uint64_t offset, std::byte mask = std::byte{0x10}) {
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  std::byte b{};
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1) << path << " at " << offset;
  b ^= mask;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1) << path << " at " << offset;
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::futimens(fd, times), 0) << path;
  ::close(fd);
}

}  // namespace sluice::testing
