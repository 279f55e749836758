#include "common/units.hpp"

#include <cctype>
#include <charconv>
#include <fmt/format.h>

namespace sluice {

std::string format_bytes(std::uint64_t bytes) {
  if (bytes < KiB) return fmt::format("{} B", bytes);
  if (bytes < MiB) return fmt::format("{:.1f} KiB", double(bytes) / KiB);
  if (bytes < GiB) return fmt::format("{:.1f} MiB", double(bytes) / MiB);
  return fmt::format("{:.2f} GiB", double(bytes) / GiB);
}

std::optional<std::uint64_t> parse_bytes(std::string_view text) {
  double number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || number < 0) return std::nullopt;
  std::string suffix;
  for (const char* p = ptr; p != end; ++p) suffix.push_back(char(std::toupper(static_cast<unsigned char>(*p))));
  std::uint64_t scale = 1;
  if (suffix.empty() || suffix == "B") scale = 1;
  else if (suffix == "K" || suffix == "KB" || suffix == "KIB") scale = KiB;
  else if (suffix == "M" || suffix == "MB" || suffix == "MIB") scale = MiB;
  else if (suffix == "G" || suffix == "GB" || suffix == "GIB") scale = GiB;
  else if (suffix == "T" || suffix == "TB" || suffix == "TIB") scale = GiB * 1024;
  else return std::nullopt;
  return static_cast<std::uint64_t>(number * double(scale));
}

}  // namespace sluice
