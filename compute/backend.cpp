#include "compute/backend.hpp"

#include <algorithm>

namespace sluice::compute {

const char* to_string(MemorySpace space) { return space == MemorySpace::host ? "host" : "device"; }

bool BackendCapabilities::supports(GgmlType type) const {
  return std::find(weight_types.begin(), weight_types.end(), type) != weight_types.end();
}

bool BackendCapabilities::supports(KvType type) const {
  return std::find(kv_types.begin(), kv_types.end(), type) != kv_types.end();
}

}  // namespace sluice::compute
