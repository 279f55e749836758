// Minimal CUDA translation unit: a device probe and a fill kernel, so the CUDA path compiles and
// links from day one and GPU tests can check the toolchain end to end when a device is lent.
#include "compute/cuda/device_probe.hpp"

#include <cuda_runtime.h>

namespace sluice::cuda {
namespace {
__global__ void fill_kernel(float* out, int count, float value) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = value;
}
}  // namespace

DeviceProbe probe_devices() {
  DeviceProbe probe;
  cudaError_t err = cudaGetDeviceCount(&probe.device_count);
  if (err != cudaSuccess) {
    probe.device_count = 0;
    probe.reason = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
  } else if (probe.device_count == 0) {
    probe.reason = "no CUDA device";
  }
  return probe;
}

bool fill_roundtrip(int count, float value) {
  float* device = nullptr;
  if (cudaMalloc(&device, sizeof(float) * count) != cudaSuccess) return false;
  constexpr int kThreads = 256;
  fill_kernel<<<(count + kThreads - 1) / kThreads, kThreads>>>(device, count, value);
  float* host = new float[count];
  bool ok = cudaMemcpy(host, device, sizeof(float) * count, cudaMemcpyDeviceToHost) == cudaSuccess;
  for (int i = 0; ok && i < count; ++i) ok = host[i] == value;
  delete[] host;
  cudaFree(device);
  return ok;
}

bool host_register(void* ptr, std::size_t bytes) {
  if (probe_devices().device_count == 0) return false;
  return cudaHostRegister(ptr, bytes, cudaHostRegisterDefault) == cudaSuccess;
}

void host_unregister(void* ptr) { cudaHostUnregister(ptr); }

}  // namespace sluice::cuda
