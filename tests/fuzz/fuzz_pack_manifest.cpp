// libFuzzer target for the pack parser (Pack::open and, on accepted files, verify_all and
// read_extent). Built only with clang. Run: ./fuzz_pack_manifest -max_len=65536 CORPUS_DIR
// The input format (mode byte + whole file / manifest / header fields) is in pack_fuzz_entry.hpp.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/pack_fuzz_entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sluice::pack::fuzz::run_pack_input(data, size);
  return 0;
}
