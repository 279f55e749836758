// libFuzzer target for the GGUF reader (File::open and, on accepted files, every getter and
// every tensor's data). Built only with clang. Run: ./fuzz_gguf -max_len=65536 CORPUS_DIR
// (seed the corpus with any small .gguf, e.g. one written by the GgufPyInterop test).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/gguf_fuzz_entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sluice::gguf::fuzz::run_gguf_input(data, size);
  return 0;
}
