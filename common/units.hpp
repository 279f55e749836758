// Byte-size helpers shared by the CLI, benchmarks and planners.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

inline constexpr std::uint64_t KiB = 1024;
inline constexpr std::uint64_t MiB = 1024 * KiB;
inline constexpr std::uint64_t GiB = 1024 * MiB;

// Direct I/O alignment: 4096 covers every logical block size we meet on NVMe and virtio.
inline constexpr std::uint64_t kDirectAlign = 4096;

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }

// "1.50 GiB", "512.0 KiB", "17 B".
std::string format_bytes(std::uint64_t bytes);
// Parses "4G", "4GiB", "512M", "123" (bytes). Returns nullopt on garbage.
std::optional<std::uint64_t> parse_bytes(std::string_view text);

}  // namespace sluice
