#include "model/vocab_metadata.hpp"

#include <fmt/format.h>
#include <stdexcept>

namespace sluice {

tok::Vocab vocab_from_metadata(const Metadata& md) {
  tok::Vocab v;
  v.model = md.require_string("tokenizer.ggml.model");
  v.pre = md.get_string("tokenizer.ggml.pre").value_or("");
  auto tokens = md.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) throw std::runtime_error(fmt::format("{}: tokenizer.ggml.tokens is missing", md.source()));
  v.tokens = std::move(*tokens);
  if (auto scores = md.get_float_array("tokenizer.ggml.scores")) v.scores = std::move(*scores);
  if (auto types = md.get_int_array("tokenizer.ggml.token_type")) {
    v.types.reserve(types->size());
    for (auto t : *types) v.types.push_back(static_cast<std::int32_t>(t));
  }
  if (auto merges = md.get_string_array("tokenizer.ggml.merges")) v.merges = std::move(*merges);
  auto id = [&](const char* key) -> std::int32_t {
    auto value = md.get_uint(key);
    return value ? static_cast<std::int32_t>(*value) : -1;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  v.eot = id("tokenizer.ggml.eot_token_id");
  if (auto b = md.get_bool("tokenizer.ggml.add_bos_token")) v.add_bos = *b;
  if (auto b = md.get_bool("tokenizer.ggml.add_eos_token")) v.add_eos = *b;
  if (auto b = md.get_bool("tokenizer.ggml.add_space_prefix")) v.add_space_prefix = *b;
  return v;
}

}  // namespace sluice
