// libFuzzer target for `sluice batch`'s input-line parser (engine/batch_input.hpp). Built only
// with clang. Run: ./fuzz_batch_input -max_len=4096 CORPUS_DIR. Input format and invariants: the
// entry header.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/batch_input_fuzz_entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sluice::fuzz::run_batch_input(data, size);
  return 0;
}
