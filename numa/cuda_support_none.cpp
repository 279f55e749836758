// numa/ CUDA hooks for builds without CUDA: no devices, nothing to register.
#include "numa/cuda_support.hpp"

namespace sluice::numa {

int cuda_device_count(std::string& reason) {
  reason = "built without CUDA (SLUICE_HAVE_CUDA is OFF)";
  return 0;
}

namespace detail {
bool wants_pci_objects() { return false; }
std::optional<unsigned> cuda_device_node(const Topology&, int) { return std::nullopt; }
bool cuda_host_register(void*, std::size_t) { return false; }
void cuda_host_unregister(void*) {}
}  // namespace detail

}  // namespace sluice::numa
