// libFuzzer target for the tokenizer (encode, decode, streaming detokenization) over the small
// hand-made vocabularies in tokenizer_fuzz_entry.hpp. Built only with clang.
// Run: ./fuzz_tokenizer -max_len=4096 CORPUS_DIR
// The input format (selector byte + text) and the checked invariants are in the entry header.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/tokenizer_fuzz_entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sluice::tok::fuzz::run_tokenizer_input(data, size);
  return 0;
}
