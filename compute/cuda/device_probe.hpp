// Asks the CUDA runtime what devices exist. Safe to call on machines without a GPU or driver:
// it reports zero devices and the runtime's reason.
#pragma once

#include <cstddef>
#include <string>

namespace sluice::cuda {

struct DeviceProbe {
  int device_count = 0;
  std::string reason;  // why there is no device, when device_count == 0
};

DeviceProbe probe_devices();
// Fills `count` floats on the device with `value` and reads them back; returns true when the
// values round-trip. Used by GPU tests to check the toolchain end to end.
bool fill_roundtrip(int count, float value);
// Registers host memory with CUDA (cudaHostRegister); false when no device or on failure.
bool host_register(void* ptr, std::size_t bytes);
void host_unregister(void* ptr);

}  // namespace sluice::cuda
