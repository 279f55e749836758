// Small parsing helpers shared by the CLI subcommands; errors become CLI::ValidationError so the
// user sees which flag was wrong.
#pragma once

#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "common/units.hpp"
#include "io/backend.hpp"
#include "model/pack_writer.hpp"

namespace sluice {

// A whole file as text; throws std::runtime_error naming it when it cannot be read.
inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline std::uint64_t parse_size_option(const std::string& flag, const std::string& text) {
  auto bytes = parse_bytes(text);
  if (!bytes || *bytes == 0) throw CLI::ValidationError(flag, "expected a size like 4GiB, 512MiB or 1048576, got '" + text + "'");
  return *bytes;
}

inline io::BackendKind parse_backend(const std::string& text) {
  if (text == "uring") return io::BackendKind::uring;
  if (text == "pread") return io::BackendKind::pread;
  return io::BackendKind::automatic;
}

inline pack::WriterOptions::Compress parse_compress(const std::string& text) {
  if (text == "none") return pack::WriterOptions::Compress::none;
  if (text == "zstd") return pack::WriterOptions::Compress::zstd;
  return pack::WriterOptions::Compress::auto_;
}

}  // namespace sluice
