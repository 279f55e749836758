// Helpers shared by the pack tests: a self-deleting temp directory, whole-file I/O, seeded data,
// and a PackImage that edits a pack's header or manifest with valid checksums so a test can
// reach the checks behind them.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/pack_format.hpp"

namespace sluice::pack::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sluice-pack-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
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

inline std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

inline void write_file(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// Uniformly random bytes (incompressible).
inline std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}

// Bytes that zstd shrinks by roughly `zero_share`: a random run, then zeros, per 256-byte block.
inline std::vector<std::byte> partly_zero_bytes(std::size_t n, double zero_share, std::uint64_t seed) {
  constexpr std::size_t kBlock = 256;
  std::vector<std::byte> out = random_bytes(n, seed);
  const auto zeros = static_cast<std::size_t>(zero_share * kBlock);
  for (std::size_t i = 0; i < n; ++i) {
    if (i % kBlock >= kBlock - zeros) out[i] = std::byte{0};
  }
  return out;
}

inline std::uint64_t load_u64(const std::vector<std::byte>& bytes, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(bytes[at + i]) << (8 * i);
  return v;
}

// A pack file in memory with its header fields and parsed manifest, for surgical corruption.
struct PackImage {
  std::vector<std::byte> bytes;
  Header header;
  nlohmann::json manifest;

  static PackImage load(const std::string& path) {
    PackImage image;
    image.bytes = read_file(path);
    image.header.version = static_cast<std::uint32_t>(load_u64(image.bytes, kHeaderVersionOffset) & 0xffffffffu);
    image.header.flags = static_cast<std::uint32_t>(load_u64(image.bytes, kHeaderFlagsOffset) & 0xffffffffu);
    image.header.manifest_offset = load_u64(image.bytes, kHeaderManifestOffsetOffset);
    image.header.manifest_bytes = load_u64(image.bytes, kHeaderManifestBytesOffset);
    image.header.manifest_checksum = load_u64(image.bytes, kHeaderManifestChecksumOffset);
    const char* text = reinterpret_cast<const char*>(image.bytes.data() + image.header.manifest_offset);
    image.manifest = nlohmann::json::parse(text, text + image.header.manifest_bytes);
    return image;
  }

  // Re-encodes the header (with a valid header checksum) from `header`.
  void write_header() {
    const std::vector<std::byte> encoded = encode_header(header);
    std::memcpy(bytes.data(), encoded.data(), encoded.size());
  }

  // Replaces the manifest with `text` at the same offset; fixes its size and both checksums.
  void set_manifest_text(const std::string& text) {
    bytes.resize(header.manifest_offset);
    const auto* p = reinterpret_cast<const std::byte*>(text.data());
    bytes.insert(bytes.end(), p, p + text.size());
    header.manifest_bytes = text.size();
    header.manifest_checksum = manifest_checksum({p, text.size()});
    write_header();
  }

  // Writes `manifest` (after a test edited it) back, with valid checksums.
  void commit_manifest() { set_manifest_text(manifest.dump()); }

  void save(const std::string& path) const { write_file(path, bytes); }
};

}  // namespace sluice::pack::testing
