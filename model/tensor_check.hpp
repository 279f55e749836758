// The one check that a model file's tensor table fits its architecture, run before anything is
// sized from either: every tensor the engine binds is present, has exactly the shape the
// hyper-parameters give it, a ggml type the engine computes with for its role, a row length that
// is a whole number of blocks, and a byte count equal to type x shape; every `blk.N.*` tensor
// and `blk.N` extent has N < block_count. A file that passes cannot make the forward pass read
// or write outside a buffer. Used at load (GGUF, pack, streamed pack) and by `sluice convert`.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/model_config.hpp"
#include "model/tensor_names.hpp"

namespace sluice {

namespace gguf {
class File;
class ShardSet;
}
namespace pack {
class Pack;
}

// Can the engine multiply with a matrix of this type? (The embedding and every weight matrix
// must be one of these; the list is cpu::is_weight_type's, which tests/engine checks.)
bool is_matrix_weight_type(GgmlType type);

// One tensor as a file's table describes it (views into the table; valid while it lives).
struct TensorDesc {
  std::string_view name;
  std::uint32_t type = 0;                // ggml type id
  std::span<const std::uint64_t> dims;   // ggml order: dims[0] = row length
  std::uint64_t bytes = 0;               // what the file says the data takes
  std::int64_t extent = -1;              // a pack's extent index; -1 in a GGUF
};

// Why `type` x `dims` cannot hold `bytes` bytes (unknown type, no or zero dims, a row length
// that is not whole blocks, an overflowing count, a different byte count), or nullopt when it
// is consistent. Pure; shared by Pack::open and check_model_tensors.
std::optional<std::string> tensor_bytes_error(std::uint32_t type, std::span<const std::uint64_t> dims, std::uint64_t bytes);

// Checks `tensors` against `config` (see the file comment). When the metadata gave no
// vocabulary size (config.n_vocab == 0) it is taken from token_embd.weight's rows first.
// `extent_names` (a pack's, by index) are checked for block indices too: each "blk.N" extent
// names a block below block_count, at most once, and a block's tensors lie in its extent. Throws std::runtime_error
// naming `source`, the tensor or extent, and expected vs actual.
void check_model_tensors(ModelConfig& config, std::span<const TensorDesc> tensors, const std::string& source,
                         std::span<const std::string> extent_names = {});

// The table of a GGUF file / a pack, for check_model_tensors.
std::vector<TensorDesc> tensor_table(const gguf::File& file);
std::vector<TensorDesc> tensor_table(const pack::Pack& pack);
std::vector<TensorDesc> tensor_table(const gguf::ShardSet& set);  // every shard's tensors

// The checked config of a whole file: config_from_metadata, then check_model_tensors. Throws
// std::runtime_error naming the file and the key or tensor at fault.
ModelConfig checked_config(const gguf::File& file);
ModelConfig checked_config(const pack::Pack& pack);
// A GGUF model as a set of shards (one for an unsplit file): the first shard's metadata, every
// shard's tensors. Names the first shard's path.
ModelConfig checked_config(const gguf::ShardSet& set);

// The block-number parser lives with the tensor names (model/tensor_names.hpp).
using names::block_extent_index;
using names::block_index_of;
using names::is_block_name;
using names::kMaxBlockIndexDigits;

}  // namespace sluice
