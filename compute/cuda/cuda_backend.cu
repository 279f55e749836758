// cuda_backend.hpp for builds with CUDA: the capability query, the RAII handles over the CUDA
// runtime, and CudaKernels (a stream, a cuBLAS handle and grow-on-demand scratch around the
// launchers of kernels.hpp).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "compute/cuda/cuda_backend.hpp"
#include "compute/cuda/cuda_util.cuh"

namespace sluice::cuda {

using detail::status_of;

namespace {

std::string describe_memory() {
  std::size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return "device memory unknown";
  }
  return std::to_string(free_bytes >> 20) + " MiB free of " + std::to_string(total_bytes >> 20) + " MiB";
}

[[noreturn]] void throw_cuda(cudaError_t err, const std::string& what) {
  cudaGetLastError();  // a failed allocation is not sticky, but leave the error state clean
  throw std::runtime_error("CUDA: " + what + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// The oldest GPU the build carries code for: sm_90 machine code and compute_90 PTX
// (cmake/cuda.cmake); older devices cannot load either.
constexpr int kMinComputeMajor = 9;

}  // namespace

// ---- capabilities ----------------------------------------------------------------------------------

BackendInfo query_backend() {
  BackendInfo info;
  info.built_with_cuda = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // "no driver" is an answer, not a sticky failure
    info.reason = std::string("no usable CUDA device: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    return info;
  }
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) cudaGetLastError();
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    DeviceInfo dev;
    dev.index = d;
    dev.name = prop.name;
    dev.compute_major = prop.major;
    dev.compute_minor = prop.minor;
    dev.multiprocessors = prop.multiProcessorCount;
    dev.memory_total_bytes = prop.totalGlobalMem;
    if (cudaSetDevice(d) == cudaSuccess) {
      std::size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) dev.memory_free_bytes = free_bytes;
    }
    cudaGetLastError();
    if (dev.compute_major >= kMinComputeMajor) info.devices.push_back(std::move(dev));
  }
  if (cudaSetDevice(current) != cudaSuccess) cudaGetLastError();
  info.available = !info.devices.empty();
  if (!info.available) {
    info.reason = count == 0 ? "no CUDA device"
                             : "no CUDA device of compute capability >= 9.0 (the build targets sm_90)";
  }
  return info;
}

bool cuda_available() {
  static const bool available = query_backend().available;
  return available;
}

bool supports_weight_type(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

// ---- DeviceBuffer / Stream / Event ----------------------------------------------------------------

DeviceBuffer DeviceBuffer::allocate(std::size_t bytes) {
  DeviceBuffer buffer;
  if (bytes == 0) return buffer;
  const cudaError_t err = cudaMalloc(&buffer.data_, bytes);
  if (err != cudaSuccess) {
    buffer.data_ = nullptr;
    throw_cuda(err, "cudaMalloc of " + std::to_string(bytes) + " bytes (" + describe_memory() + ")");
  }
  buffer.size_ = bytes;
  return buffer;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) cudaFree(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

Stream Stream::create() {
  Stream stream;
  cudaStream_t handle = nullptr;
  const cudaError_t err = cudaStreamCreateWithFlags(&handle, cudaStreamNonBlocking);
  if (err != cudaSuccess) throw_cuda(err, "cudaStreamCreateWithFlags");
  stream.handle_ = handle;
  return stream;
}

Stream::~Stream() {
  if (handle_) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
}

Stream::Stream(Stream&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (handle_) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
    handle_ = other.handle_;
    other.handle_ = nullptr;
  }
  return *this;
}

CudaStatus Stream::synchronize() const {
  return status_of(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)), "cudaStreamSynchronize");
}

Event Event::create() {
  Event event;
  cudaEvent_t handle = nullptr;
  const cudaError_t err = cudaEventCreateWithFlags(&handle, cudaEventDisableTiming);
  if (err != cudaSuccess) throw_cuda(err, "cudaEventCreateWithFlags");
  event.handle_ = handle;
  return event;
}

Event::~Event() {
  if (handle_) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
}

Event::Event(Event&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (handle_) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
    handle_ = other.handle_;
    other.handle_ = nullptr;
  }
  return *this;
}

CudaStatus Event::record(const Stream& stream) {
  return status_of(cudaEventRecord(static_cast<cudaEvent_t>(handle_), detail::native(stream.ref())), "cudaEventRecord");
}

CudaStatus Event::wait_on(const Stream& stream) const {
  return status_of(cudaStreamWaitEvent(detail::native(stream.ref()), static_cast<cudaEvent_t>(handle_), 0),
                   "cudaStreamWaitEvent");
}

CudaStatus Event::synchronize() const {
  return status_of(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)), "cudaEventSynchronize");
}

CudaStatus copy_to_device(void* d_dst, const void* src, std::size_t bytes, const Stream& stream) {
  return status_of(cudaMemcpyAsync(d_dst, src, bytes, cudaMemcpyHostToDevice, detail::native(stream.ref())),
                   "cudaMemcpyAsync (host to device)");
}

CudaStatus copy_to_host(void* dst, const void* d_src, std::size_t bytes, const Stream& stream) {
  return status_of(cudaMemcpyAsync(dst, d_src, bytes, cudaMemcpyDeviceToHost, detail::native(stream.ref())),
                   "cudaMemcpyAsync (device to host)");
}

CudaStatus copy_device_to_device(void* d_dst, const void* d_src, std::size_t bytes, const Stream& stream) {
  return status_of(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, detail::native(stream.ref())),
                   "cudaMemcpyAsync (device to device)");
}

CudaStatus fill_zero(void* d_dst, std::size_t bytes, const Stream& stream) {
  return status_of(cudaMemsetAsync(d_dst, 0, bytes, detail::native(stream.ref())), "cudaMemsetAsync");
}

// ---- CudaKernels -----------------------------------------------------------------------------------

struct CudaKernels::Impl {
  int device = 0;
  Stream stream;
  cublasHandle_t blas = nullptr;
  DeviceBuffer workspace;

  ~Impl() {
    if (blas) cublasDestroy(blas);
  }

  // Grows the scratch to `bytes`. cudaFree of the old buffer waits for the device, so kernels
  // still queued on it finish first.
  CudaStatus ensure_workspace(std::size_t bytes) {
    if (workspace.size() >= bytes) return CudaStatus::success();
    workspace = DeviceBuffer();
    try {
      workspace = DeviceBuffer::allocate(bytes);
    } catch (const std::runtime_error& e) {
      return CudaStatus::failure(e.what());
    }
    return CudaStatus::success();
  }

  static std::size_t matmul_workspace(GgmlType type, std::int64_t rows, std::int64_t cols, std::int64_t batch) {
    if (matmul_path(type, batch) == MatmulPath::fused_gemv) {
      return type == GgmlType::F32 ? 0 : static_cast<std::size_t>(batch) * type_row_bytes(gemv_activation_type(type), cols);
    }
    return gemm_workspace_bytes(type, rows, cols, batch);
  }
};

CudaKernels::CudaKernels(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaKernels::~CudaKernels() = default;

std::unique_ptr<CudaKernels> CudaKernels::create(int device, std::string* reason) {
  auto fail = [&](std::string why) -> std::unique_ptr<CudaKernels> {
    if (reason) *reason = std::move(why);
    return nullptr;
  };
  const BackendInfo info = query_backend();
  if (!info.available) return fail(info.reason);
  bool found = false;
  for (const DeviceInfo& d : info.devices) found = found || d.index == device;
  if (!found) return fail("CUDA device " + std::to_string(device) + " is not usable (" + std::to_string(info.devices.size()) + " usable devices)");
  if (CudaStatus s = status_of(cudaSetDevice(device), "cudaSetDevice"); !s) return fail(s.message());
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  try {
    impl->stream = Stream::create();
  } catch (const std::runtime_error& e) {
    return fail(e.what());
  }
  const cublasStatus_t blas = cublasCreate(&impl->blas);
  if (blas != CUBLAS_STATUS_SUCCESS) {
    impl->blas = nullptr;
    return fail("cublasCreate failed (status " + std::to_string(static_cast<int>(blas)) + ")");
  }
  if (reason) reason->clear();
  return std::unique_ptr<CudaKernels>(new CudaKernels(std::move(impl)));
}

const Stream& CudaKernels::stream() const { return impl_->stream; }
int CudaKernels::device() const { return impl_->device; }
std::size_t CudaKernels::workspace_bytes() const { return impl_->workspace.size(); }

CudaStatus CudaKernels::reserve(GgmlType type, std::int64_t rows, std::int64_t cols, std::int64_t batch) {
  return impl_->ensure_workspace(Impl::matmul_workspace(type, rows, cols, batch));
}

CudaStatus CudaKernels::matmul(GgmlType type, const void* d_weights, std::int64_t rows, std::int64_t cols,
                               const float* d_x, std::int64_t batch, float* d_y) {
  const MatmulPath path = matmul_path(type, batch);
  SLUICE_CUDA_ASSERT(path != MatmulPath::unsupported);
  if (rows == 0 || batch == 0) return CudaStatus::success();
  const std::size_t need = Impl::matmul_workspace(type, rows, cols, batch);
  if (CudaStatus s = impl_->ensure_workspace(need); !s) return s;
  const StreamRef stream = impl_->stream.ref();
  if (path == MatmulPath::dequant_gemm) {
    return gemm_dequant(type, d_weights, rows, cols, d_x, batch, d_y, impl_->workspace.data(), impl_->workspace.size(),
                        impl_->blas, stream);
  }
  const void* acts = d_x;
  if (type != GgmlType::F32) {
    if (CudaStatus s = quantize_activations(gemv_activation_type(type), d_x, batch, cols, impl_->workspace.data(), stream); !s) return s;
    acts = impl_->workspace.data();
  }
  return gemv(type, d_weights, rows, cols, acts, batch, d_y, stream);
}

CudaStatus CudaKernels::rms_norm(const float* d_x, const float* d_weight, float* d_out, std::int64_t rows, std::int64_t n, float eps) {
  return cuda::rms_norm(d_x, d_weight, d_out, rows, n, eps, impl_->stream.ref());
}

CudaStatus CudaKernels::rope(float* d_x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim,
                             const std::int32_t* d_positions, const RopeConfig& config) {
  return cuda::rope(d_x, rows, n_heads, head_dim, d_positions, config, impl_->stream.ref());
}

CudaStatus CudaKernels::softmax(float* d_x, std::int64_t rows, std::int64_t n) {
  return cuda::softmax(d_x, rows, n, impl_->stream.ref());
}

CudaStatus CudaKernels::swiglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n) {
  return cuda::swiglu(d_gate, d_up, d_out, n, impl_->stream.ref());
}

CudaStatus CudaKernels::geglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n) {
  return cuda::geglu(d_gate, d_up, d_out, n, impl_->stream.ref());
}

CudaStatus CudaKernels::kv_store(const DeviceKvView& kv, std::int64_t first_pos, std::int64_t n_tokens, const float* d_k,
                                 const float* d_v) {
  return cuda::kv_store(kv, first_pos, n_tokens, d_k, d_v, impl_->stream.ref());
}

CudaStatus CudaKernels::attend(const float* d_q, std::int64_t n_queries, const DeviceKvView& kv, std::int64_t first_pos,
                               const AttentionConfig& config, float* d_out) {
  return cuda::attend(d_q, n_queries, kv, first_pos, config, d_out, impl_->stream.ref());
}

CudaStatus CudaKernels::argmax(const float* d_logits, std::int64_t rows, std::int64_t n, std::int32_t* d_out) {
  return cuda::argmax(d_logits, rows, n, d_out, impl_->stream.ref());
}

CudaStatus CudaKernels::dequantize(GgmlType type, const void* d_src, std::int64_t n, OutputFormat format, void* d_dst) {
  return cuda::dequantize(type, d_src, n, format, d_dst, impl_->stream.ref());
}

CudaStatus CudaKernels::synchronize() { return impl_->stream.synchronize(); }

}  // namespace sluice::cuda
