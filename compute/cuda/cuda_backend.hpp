// The CUDA backend as the engine sees it, identical in every build: ask whether a device is there
// and what it computes with (query_backend, supports_weight_type), own device memory, streams and
// events through move-only RAII handles, and run the transformer kernels through CudaKernels.
//
// Exactly one implementation is linked into sluice_compute_cuda: cuda_backend.cu when the build
// has the CUDA toolkit (SLUICE_HAVE_CUDA), cuda_backend_none.cpp otherwise, which reports
// "unavailable" with its reason. So the engine selects a backend at run time, with no #ifdef.
//
// Pointers named d_* are device memory (DeviceBuffer::data() or views into it). Every kernel call
// is enqueued on the CudaKernels' stream and returns as soon as it is queued; CudaStatus reports
// launch and runtime failures (also earlier asynchronous ones surfacing there). Shape and type
// errors are programmer errors: they abort with file and line (SLUICE_CUDA_ASSERT).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compute/cuda/kernels.hpp"
#include "model/ggml_types.hpp"

namespace sluice::cuda {

// ---- capabilities ----------------------------------------------------------------------------------

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;  // compute capability, e.g. 9.0 for H100/H200
  int compute_minor = 0;
  int multiprocessors = 0;
  std::size_t memory_total_bytes = 0;
  std::size_t memory_free_bytes = 0;  // at query time
};

struct BackendInfo {
  bool built_with_cuda = false;  // this binary contains the CUDA kernels
  bool available = false;        // built with CUDA and at least one device the kernels run on
  std::string reason;            // why not available (empty when available)
  std::vector<DeviceInfo> devices;
};

// Asks the runtime once per call (devices, names, free memory). Never throws; safe without a
// driver. Thread-safe.
BackendInfo query_backend();
// query_backend().available, computed once per process. Thread-safe.
bool cuda_available();

// Weight types CudaKernels::matmul computes with (in both builds the answer describes the kernels
// this binary has: none without CUDA).
bool supports_weight_type(GgmlType type);
// How matmul computes a (type, batch): the fused dequantize-GEMV for batch <= kMaxGemvBatch,
// otherwise the weights dequantized to fp16 (bf16/f32 weights as they are) and cuBLAS GEMM.
enum class MatmulPath { unsupported, fused_gemv, dequant_gemm };
MatmulPath matmul_path(GgmlType type, std::int64_t batch);
// The decision itself, the same in every build (cuda_check.cpp): matmul_path(type, batch) is
// choose_matmul_path(supports_weight_type(type), batch).
MatmulPath choose_matmul_path(bool weight_type_supported, std::int64_t batch);
const char* to_string(MatmulPath path);

// ---- device memory, streams, events ------------------------------------------------------------------

class Stream;

// cudaMalloc'd memory on the current device; move-only, freed on destruction. Setup-time object:
// allocate() throws std::runtime_error (size, free/total memory, runtime message) on failure and
// in a build without CUDA. Not thread-safe per object.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static DeviceBuffer allocate(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  std::size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// A non-blocking CUDA stream (does not synchronize with the legacy default stream); move-only,
// destroyed (after its queued work) on destruction. create() throws like DeviceBuffer::allocate.
class Stream {
 public:
  Stream() = default;
  static Stream create();
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamRef ref() const { return StreamRef{handle_}; }
  // Blocks until everything queued so far has run; reports the first failure among it.
  CudaStatus synchronize() const;

 private:
  void* handle_ = nullptr;  // cudaStream_t
};

// An event without timing, for ordering a compute stream after a copy stream (record on one,
// wait on the other) and for host waits. Move-only; create() throws like DeviceBuffer::allocate.
class Event {
 public:
  Event() = default;
  static Event create();
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  CudaStatus record(const Stream& stream);
  // Work queued on `stream` after this call waits until the recorded point has run.
  CudaStatus wait_on(const Stream& stream) const;
  CudaStatus synchronize() const;

 private:
  void* handle_ = nullptr;  // cudaEvent_t
};

// Copies between host and device memory, queued on `stream`. Asynchronous with respect to the
// host only when the host memory is page-locked (numa::PinnedBuffer registers its memory); the
// host memory must stay alive until the stream has run past the copy.
CudaStatus copy_to_device(void* d_dst, const void* src, std::size_t bytes, const Stream& stream);
CudaStatus copy_to_host(void* dst, const void* d_src, std::size_t bytes, const Stream& stream);
CudaStatus copy_device_to_device(void* d_dst, const void* d_src, std::size_t bytes, const Stream& stream);
CudaStatus fill_zero(void* d_dst, std::size_t bytes, const Stream& stream);

// ---- kernels ----------------------------------------------------------------------------------------

// The transformer kernels on one stream, with the scratch they need (quantized activations, a
// dequantized weight stripe for cuBLAS) and a cuBLAS handle. One object per stream; calls on
// one object must not run concurrently, and come from a thread whose current CUDA device is
// device() (create() makes it current on the calling thread). Shapes as compute/cpu (matmul.hpp, ops.hpp): a row is
// one token's vector, heads are contiguous slices of a row.
class CudaKernels {
 public:
  // A backend on `device` with its own stream, or nullptr with the reason in *reason (no CUDA
  // in this build, no such device, initialization failed). Never throws.
  static std::unique_ptr<CudaKernels> create(int device, std::string* reason);
  ~CudaKernels();
  CudaKernels(const CudaKernels&) = delete;
  CudaKernels& operator=(const CudaKernels&) = delete;

  const Stream& stream() const;
  int device() const;
  // Scratch bytes held now (grows on demand in matmul; reserve() grows it at setup time).
  std::size_t workspace_bytes() const;
  // Grows the scratch to what matmul(type, rows, cols, batch) needs, so later calls allocate
  // nothing. Returns the allocation failure, if any.
  CudaStatus reserve(GgmlType type, std::int64_t rows, std::int64_t cols, std::int64_t batch);

  // d_y (batch x rows) = d_x (batch x cols) times the weights (rows x cols, row-major ggml blocks
  // of `type`, row r at r * row_bytes(type, cols)); path as matmul_path(type, batch).
  CudaStatus matmul(GgmlType type, const void* d_weights, std::int64_t rows, std::int64_t cols,
                    const float* d_x, std::int64_t batch, float* d_y);
  // Each of `rows` rows of n floats: out = x / sqrt(mean(x^2) + eps) * weight (d_weight may be null).
  CudaStatus rms_norm(const float* d_x, const float* d_weight, float* d_out, std::int64_t rows, std::int64_t n, float eps);
  // Rotates n_heads heads of head_dim floats in each of `rows` rows, row i at d_positions[i].
  CudaStatus rope(float* d_x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim,
                  const std::int32_t* d_positions, const RopeConfig& config);
  CudaStatus softmax(float* d_x, std::int64_t rows, std::int64_t n);
  // out = silu(gate) * up, and out = gelu_tanh(gate) * up as compute/cpu's geglu (fp16 GELU).
  CudaStatus swiglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n);
  CudaStatus geglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n);
  // Writes n_tokens K and V rows (kv.row_floats floats each) at positions first_pos.. as fp16.
  CudaStatus kv_store(const DeviceKvView& kv, std::int64_t first_pos, std::int64_t n_tokens,
                      const float* d_k, const float* d_v);
  // Causal attention of n_queries consecutive query rows of one sequence, query i at position
  // first_pos + i, over the sequence's fp16 cache (positions [0, first_pos + i]).
  CudaStatus attend(const float* d_q, std::int64_t n_queries, const DeviceKvView& kv, std::int64_t first_pos,
                    const AttentionConfig& config, float* d_out);
  // d_out[r] = index of the largest of row r's n logits (the first on ties).
  CudaStatus argmax(const float* d_logits, std::int64_t rows, std::int64_t n, std::int32_t* d_out);
  // n elements of `type` (any weight type) as fp32 or fp16 (the fallback for types without a
  // fused kernel, and the cuBLAS path's weight conversion).
  CudaStatus dequantize(GgmlType type, const void* d_src, std::int64_t n, OutputFormat format, void* d_dst);
  CudaStatus synchronize();

 private:
  struct Impl;
  explicit CudaKernels(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::cuda
