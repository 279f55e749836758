// The GGUF reader's fuzz entry, shared by the libFuzzer target (fuzz_gguf.cpp, clang only) and
// the GgufFuzzSmoke gtest that runs it over seeded mutations in every build.
//
// The input is a whole GGUF file. If File::open accepts it, every typed getter runs on every key
// and every tensor's data is read end to end, so the sanitizers see any offset the validation
// let through.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/gguf.hpp"
#include "tests/model/gguf_test_util.hpp"

namespace sluice::gguf::fuzz {

// Scratch file for one process; fuzzing runs one input at a time per process.
inline const std::string& scratch_path() {
  static const std::string path = [] {
    const char* base = std::getenv("TMPDIR");
    return std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sluice-gguf-fuzz-" +
           std::to_string(::getpid()) + ".gguf";
  }();
  return path;
}

// The sample file (every value type, nested arrays, three tensors) as bytes: the seed input.
inline const std::vector<std::byte>& seed_file() {
  static const std::vector<std::byte> seed = [] {
    const std::string path = scratch_path() + ".seed";
    testing::sample_writer().write(path);
    std::vector<std::byte> bytes = testing::read_file(path);
    ::unlink(path.c_str());
    return bytes;
  }();
  return seed;
}

// Runs every getter on `key`; type mismatches are GgufErrors by contract and are expected.
inline void touch_key(const File& file, const std::string& key) {
  const auto attempt = [](auto&& f) {
    try {
      f();
    } catch (const GgufError&) {
    }
  };
  attempt([&] { (void)file.get_string(key); });
  attempt([&] { (void)file.get_uint(key); });
  attempt([&] { (void)file.get_int(key); });
  attempt([&] { (void)file.get_float(key); });
  attempt([&] { (void)file.get_bool(key); });
  attempt([&] { (void)file.get_string_array(key); });
  attempt([&] { (void)file.get_float_array(key); });
  attempt([&] { (void)file.get_int_array(key); });
}

// The header-only open (pread in growing pieces, no mapping) must agree with the mapped open:
// the same message when it refuses, the same metadata and tensor table when it accepts.
inline void check_header_only_agrees(const File* mapped, const std::string& mapped_error) {
  try {
    const File header = File::open_header(scratch_path());
    if (mapped == nullptr || header.metadata() != mapped->metadata() || header.data_offset() != mapped->data_offset() ||
        header.tensors().size() != mapped->tensors().size()) {
      std::abort();
    }
    for (std::size_t i = 0; i < header.tensors().size(); ++i) {
      const TensorInfo& a = header.tensors()[i];
      const TensorInfo& b = mapped->tensors()[i];
      if (a.name != b.name || a.offset != b.offset || a.bytes != b.bytes || a.dims != b.dims) std::abort();
    }
  } catch (const GgufError& e) {
    if (mapped != nullptr || mapped_error != e.what()) std::abort();
  }
}

// Runs one input end to end. Returns 1 if the file opened, 0 if it was rejected. Any other
// outcome (crash, sanitizer report, an exception other than GgufError, File::open_header
// disagreeing with File::open) is a bug.
inline int run_gguf_input(const std::uint8_t* data, std::size_t size) {
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  // A new file each time rather than truncating the old one: ext4 flushes a file that was
  // truncated and rewritten on close (auto_da_alloc), which made each input cost milliseconds.
  ::unlink(scratch_path().c_str());
  testing::write_file(scratch_path(), {bytes, size});
  try {
    const File file = File::open(scratch_path());
    check_header_only_agrees(&file, {});
    for (const auto& [key, value] : file.metadata()) {
      if (file.find(key) != &value) std::abort();  // every listed key must be findable
      touch_key(file, key);
    }
    unsigned sum = 0;
    for (const TensorInfo& tensor : file.tensors()) {
      if (file.find_tensor(tensor.name) != &tensor) std::abort();
      for (std::byte b : file.tensor_data(tensor)) sum += static_cast<unsigned>(b);
    }
    // Keeps the reads above from being optimized away.
    if (sum == 0xffffffffu) std::abort();
    return 1;
  } catch (const GgufError& e) {
    check_header_only_agrees(nullptr, e.what());
    return 0;
  }
}

}  // namespace sluice::gguf::fuzz
