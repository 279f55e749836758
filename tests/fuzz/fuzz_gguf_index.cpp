// libFuzzer target for the GGUF index sidecar parser (model/gguf_index.hpp decode_sidecar).
// Built only with clang. An accepted input must encode back to exactly itself: the parser keeps
// no state the format does not spell out. Mutations rarely pass the trailer checksum, so run with
// a dictionary or accept that most inputs stop there; GgufIndexFuzz in tests/model reseals the
// trailer to reach the field checks in every build. Run: ./fuzz_gguf_index CORPUS_DIR
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <span>
#include <vector>

#include "model/gguf_index.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const sluice::gguf::SidecarContents c = sluice::gguf::decode_sidecar(bytes, "fuzz.sluice-index");
    const std::vector<std::byte> again = sluice::gguf::encode_sidecar(c);
    if (again.size() != size || !std::equal(again.begin(), again.end(), bytes.begin())) std::abort();
  } catch (const sluice::gguf::GgufError&) {
  }
  return 0;
}
