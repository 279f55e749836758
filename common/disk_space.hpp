// Free disk space of a directory, for the writers that check before they write (synth, the KV
// spill plan, demo) rather than fail part-way.
#pragma once

#include <sys/statvfs.h>

#include <cstdint>
#include <optional>
#include <string>

namespace sluice {

// Free bytes for an unprivileged writer in `dir` (statvfs f_bavail x f_frsize); nullopt when
// statvfs fails (the directory's error is reported when the file is created).
inline std::optional<std::uint64_t> free_disk_bytes(const std::string& dir) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return std::nullopt;
  return std::uint64_t(fs.f_bavail) * std::uint64_t(fs.f_frsize);
}

}  // namespace sluice
