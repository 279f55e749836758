// Helpers shared by the gguf-split and GGUF index tests: writing small models as a single file
// or as gguf-split shards (llama.cpp's keys and names), with F32 tensors of seeded random bytes
// so that a test can check every byte a read range brings back.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "model/gguf_split.hpp"
#include "tests/model/gguf_test_util.hpp"

namespace sluice::gguf::testing {

struct TestTensor {
  std::string name;
  std::uint64_t elements = 0;  // F32, one dimension
  std::uint64_t seed = 0;      // of its bytes
};

inline std::vector<std::byte> tensor_bytes_of(const TestTensor& t) { return random_bytes(t.elements * 4, t.seed); }

// Adds `tensors` in order (the file order) and the general keys a model has.
inline void add_test_tensors(Writer& w, const std::vector<TestTensor>& tensors) {
  for (const TestTensor& t : tensors) {
    w.add_tensor(t.name, static_cast<std::uint32_t>(GgmlType::F32), {t.elements}, tensor_bytes_of(t));
  }
}

// Writes one shard per entry of `shards` as PREFIX-0000i-of-0000n.gguf with the split keys
// gguf-split writes (split.no from 0, split.count, split.tensors.count; the model's metadata on
// the first only). `edit(writer, i)` may change shard i's keys before it is written. Returns the
// paths in shard order.
inline std::vector<std::string> write_split(const std::string& prefix, const std::vector<std::vector<TestTensor>>& shards,
                                            const std::function<void(Writer&, std::uint32_t)>& edit = {}) {
  const auto count = static_cast<std::uint32_t>(shards.size());
  std::uint64_t total = 0;
  for (const auto& s : shards) total += s.size();
  std::vector<std::string> paths;
  for (std::uint32_t i = 0; i < count; ++i) {
    Writer w;
    if (i == 0) {
      w.set_string("general.architecture", "llama");
      w.set_u32("llama.block_count", 2);
    }
    w.set(std::string(kSplitNoKey), Value::unsigned_int(ValueType::u16, i));
    w.set(std::string(kSplitCountKey), Value::unsigned_int(ValueType::u16, count));
    w.set(std::string(kSplitTensorsCountKey), Value::signed_int(ValueType::i32, static_cast<std::int32_t>(total)));
    add_test_tensors(w, shards[i]);
    if (edit) edit(w, i);
    paths.push_back(split_path(prefix, i + 1, count));
    w.write(paths.back());
  }
  return paths;
}

// Cuts `whole` into `count` shards (tensors in file order, about as many in each) the way
// gguf-split does: the metadata on the first, the split keys on each, the same alignment.
// Returns the shard paths. `whole` must stay open until this returns (tensors are referenced).
inline std::vector<std::string> split_file(const File& whole, const std::string& prefix, std::uint32_t count) {
  std::vector<std::string> paths;
  const std::size_t n = whole.tensors().size();
  for (std::uint32_t i = 0; i < count; ++i) {
    Writer w;
    if (i == 0) {
      for (const auto& [key, value] : whole.metadata()) {
        if (key != kAlignmentKey) w.set(key, value);
      }
    }
    w.set(std::string(kSplitNoKey), Value::unsigned_int(ValueType::u16, i));
    w.set(std::string(kSplitCountKey), Value::unsigned_int(ValueType::u16, count));
    w.set(std::string(kSplitTensorsCountKey), Value::signed_int(ValueType::i32, static_cast<std::int32_t>(n)));
    for (std::size_t t = n * i / count; t < n * (i + 1) / count; ++t) {
      const TensorInfo& info = whole.tensors()[t];
      w.add_tensor_ref(info.name, info.type, info.dims, whole.tensor_data(info));
    }
    paths.push_back(split_path(prefix, i + 1, count));
    w.write(paths.back(), whole.alignment());
  }
  return paths;
}

// A single unsplit file.
inline void write_single(const std::string& path, const std::vector<TestTensor>& tensors) {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  add_test_tensors(w, tensors);
  w.write(path);
}

// 4 KiB-sized tensors make rounding visible: 1024 F32 elements = 4096 bytes.
inline std::vector<TestTensor> two_block_model() {
  return {{"token_embd.weight", 3000, 1},  {"blk.0.attn_q.weight", 2048, 2}, {"blk.0.ffn_up.weight", 1500, 3},
          {"blk.1.attn_q.weight", 2048, 4}, {"blk.1.ffn_up.weight", 1500, 5}, {"output_norm.weight", 64, 6},
          {"output.weight", 3000, 7}};
}

}  // namespace sluice::gguf::testing
