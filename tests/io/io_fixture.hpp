// Shared fixture for the io suites: every test runs against each backend, with and without
// O_DIRECT, so both backends pass one suite.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/units.hpp"
#include "io/fault_backend.hpp"
#include "io/reader.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice::io::testing {

struct BackendParam {
  BackendKind kind;
  bool direct;
};

inline std::string param_name(const ::testing::TestParamInfo<BackendParam>& info) {
  return std::string(info.param.kind == BackendKind::uring ? "uring" : "pread") + (info.param.direct ? "_direct" : "_buffered");
}

// An aligned heap buffer (O_DIRECT needs 4096-aligned destinations).
struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t bytes) : size(align_up(bytes, kDirectAlign)) {
    void* p = nullptr;
    if (::posix_memalign(&p, kDirectAlign, size) != 0) std::abort();
    data = static_cast<std::byte*>(p);
    std::memset(data, 0xEE, size);
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::byte* data = nullptr;
  std::size_t size = 0;
};

inline std::unique_ptr<Reader> open_reader(const std::string& path, const BackendParam& p, unsigned depth = 8,
                                           RetryPolicy retry = {}) {
  ReaderOptions options;
  options.backend = BackendOptions{p.kind, p.direct, depth};
  options.retry = retry;
  options.retry.eagain_backoff = std::chrono::microseconds(1);  // keep sweeps quick
  return Reader::open(path, options);
}

// A reader whose backend is wrapped by a FaultBackend; `fault` points at the wrapper.
inline std::unique_ptr<Reader> open_faulty(const std::string& path, const BackendParam& p, const FaultPlan& plan,
                                           FaultBackend** fault, unsigned depth = 8, RetryPolicy retry = {}) {
  auto opened = open_backend(path, BackendOptions{p.kind, p.direct, depth});
  auto wrapper = std::make_unique<FaultBackend>(std::move(opened.backend), plan);
  *fault = wrapper.get();
  retry.eagain_backoff = std::chrono::microseconds(1);
  std::uint64_t size = std::filesystem::file_size(path);
  return std::make_unique<Reader>(std::move(wrapper), path, size, retry);
}

struct PassResult {
  std::vector<std::uint8_t> data;
  std::vector<Error> errors;
};

// Reads the whole file in `chunk`-byte requests, keeping the queue full, like the prefetcher.
inline PassResult read_pass(Reader& reader, std::uint32_t chunk) {
  std::uint64_t size = reader.file_size();
  AlignedBuffer buffer(align_up(size, chunk));
  std::uint64_t chunks = (size + chunk - 1) / chunk;
  std::uint64_t next = 0, done = 0;
  PassResult result;
  std::vector<ReadCompletion> completions(reader.queue_depth());
  std::vector<std::uint64_t> got_bytes(chunks, 0);
  while (done < chunks) {
    while (next < chunks && reader.can_submit()) {
      reader.submit(ReadRequest{buffer.data + next * chunk, next * chunk, chunk, -1, next});
      ++next;
    }
    auto n = reader.wait(completions, 1);
    if (!n) {
      result.errors.push_back(n.error());
      break;
    }
    for (std::size_t i = 0; i < n.value(); ++i) {
      ++done;
      if (!completions[i].status) result.errors.push_back(completions[i].status.error());
      got_bytes[completions[i].user_data] = completions[i].bytes;
    }
  }
  std::uint64_t total = 0;
  for (auto b : got_bytes) total += b;
  if (result.errors.empty()) {
    EXPECT_EQ(total, size);
    auto* bytes = reinterpret_cast<std::uint8_t*>(buffer.data);
    result.data.assign(bytes, bytes + size);
  }
  return result;
}

inline bool matches_pattern(const std::vector<std::uint8_t>& data, std::uint64_t seed) {
  for (std::uint64_t i = 0; i < data.size(); ++i) {
    if (data[i] != sluice::testing::pattern_byte(i, seed)) {
      ADD_FAILURE() << "first mismatch at byte " << i << " (seed " << seed << ")";
      return false;
    }
  }
  return true;
}

inline const std::vector<BackendParam> kAllBackends = {
    {BackendKind::uring, true}, {BackendKind::uring, false}, {BackendKind::pread, true}, {BackendKind::pread, false}};

}  // namespace sluice::io::testing
