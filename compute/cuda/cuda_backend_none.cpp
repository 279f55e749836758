// cuda_backend.hpp for builds without the CUDA toolkit: the backend reports itself unavailable
// (with the reason), supports nothing, and its handles cannot be created; so the engine asks the
// same questions in every build and falls back to compute/cpu.
#include <stdexcept>
#include <string>

#include "compute/cuda/cuda_backend.hpp"

namespace sluice::cuda {
namespace {

constexpr const char* kNoCuda = "built without CUDA (SLUICE_HAVE_CUDA is OFF)";

CudaStatus no_cuda() { return CudaStatus::failure(kNoCuda); }
[[noreturn]] void throw_no_cuda(const char* what) { throw std::runtime_error(std::string(what) + ": " + kNoCuda); }

}  // namespace

BackendInfo query_backend() {
  BackendInfo info;
  info.reason = kNoCuda;
  return info;
}

bool cuda_available() { return false; }
bool supports_weight_type(GgmlType) { return false; }

DeviceBuffer DeviceBuffer::allocate(std::size_t bytes) {
  if (bytes == 0) return {};
  throw_no_cuda("DeviceBuffer::allocate");
}
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  data_ = other.data_;
  size_ = other.size_;
  other.data_ = nullptr;
  other.size_ = 0;
  return *this;
}

Stream Stream::create() { throw_no_cuda("Stream::create"); }
Stream::~Stream() = default;
Stream::Stream(Stream&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
Stream& Stream::operator=(Stream&& other) noexcept {
  handle_ = other.handle_;
  other.handle_ = nullptr;
  return *this;
}
CudaStatus Stream::synchronize() const { return no_cuda(); }

Event Event::create() { throw_no_cuda("Event::create"); }
Event::~Event() = default;
Event::Event(Event&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
Event& Event::operator=(Event&& other) noexcept {
  handle_ = other.handle_;
  other.handle_ = nullptr;
  return *this;
}
CudaStatus Event::record(const Stream&) { return no_cuda(); }
CudaStatus Event::wait_on(const Stream&) const { return no_cuda(); }
CudaStatus Event::synchronize() const { return no_cuda(); }

CudaStatus copy_to_device(void*, const void*, std::size_t, const Stream&) { return no_cuda(); }
CudaStatus copy_to_host(void*, const void*, std::size_t, const Stream&) { return no_cuda(); }
CudaStatus copy_device_to_device(void*, const void*, std::size_t, const Stream&) { return no_cuda(); }
CudaStatus fill_zero(void*, std::size_t, const Stream&) { return no_cuda(); }

// No CudaKernels can exist in this build: create() says why, and the members below are never
// reached (there is no object to call them on); they exist so the engine links unchanged.
struct CudaKernels::Impl {
  Stream stream;
};

CudaKernels::CudaKernels(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaKernels::~CudaKernels() = default;

std::unique_ptr<CudaKernels> CudaKernels::create(int, std::string* reason) {
  if (reason) *reason = kNoCuda;
  return nullptr;
}

const Stream& CudaKernels::stream() const { return impl_->stream; }
int CudaKernels::device() const { return -1; }
std::size_t CudaKernels::workspace_bytes() const { return 0; }
CudaStatus CudaKernels::reserve(GgmlType, std::int64_t, std::int64_t, std::int64_t) { return no_cuda(); }
CudaStatus CudaKernels::matmul(GgmlType, const void*, std::int64_t, std::int64_t, const float*, std::int64_t, float*) {
  return no_cuda();
}
CudaStatus CudaKernels::rms_norm(const float*, const float*, float*, std::int64_t, std::int64_t, float) { return no_cuda(); }
CudaStatus CudaKernels::rope(float*, std::int64_t, std::int32_t, std::int32_t, const std::int32_t*, const RopeConfig&) {
  return no_cuda();
}
CudaStatus CudaKernels::softmax(float*, std::int64_t, std::int64_t) { return no_cuda(); }
CudaStatus CudaKernels::swiglu(const float*, const float*, float*, std::int64_t) { return no_cuda(); }
CudaStatus CudaKernels::geglu(const float*, const float*, float*, std::int64_t) { return no_cuda(); }
CudaStatus CudaKernels::kv_store(const DeviceKvView&, std::int64_t, std::int64_t, const float*, const float*) {
  return no_cuda();
}
CudaStatus CudaKernels::attend(const float*, std::int64_t, const DeviceKvView&, std::int64_t, const AttentionConfig&,
                               float*) {
  return no_cuda();
}
CudaStatus CudaKernels::argmax(const float*, std::int64_t, std::int64_t, std::int32_t*) { return no_cuda(); }
CudaStatus CudaKernels::dequantize(GgmlType, const void*, std::int64_t, OutputFormat, void*) { return no_cuda(); }
CudaStatus CudaKernels::synchronize() { return no_cuda(); }

}  // namespace sluice::cuda
