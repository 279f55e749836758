// Small helpers shared by the SIMD translation units (quants_*_avx2.cpp, quants_*_avx512.cpp).
// Include only from files compiled with at least -mavx2 -mfma -mf16c. Everything is in an
// anonymous namespace on purpose: each SIMD file gets its own internal copy, so the linker can
// never merge an AVX-512 build of a helper into code that runs on an AVX2-only CPU.
#pragma once

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn about it under -Wall
// (GCC bug 105593, fixed in 12.3/13); silence that inside the intrinsics headers only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/kernels.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see above

// fp16 -> fp32 with the F16C instruction: bit-identical to fp16_to_fp32 (blocks.hpp).
inline float h2f(Half h) { return _cvtsh_ss(h); }

inline float hsum_ps(__m256 x) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline int hsum_epi32(__m256i x) {
  __m128i r = _mm_add_epi32(_mm256_extracti128_si256(x, 1), _mm256_castsi256_si128(x));
  r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
  return _mm_cvtsi128_si32(r);
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15), then high (16..31).
inline __m256i nibbles_32(const std::uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i bytes = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
  return _mm256_and_si256(bytes, _mm256_set1_epi8(0x0f));
}

// 32 bits (little-endian, bit j = element j) -> 32 bytes, 0xff where the bit is set.
inline __m256i bits_32(const std::uint8_t* qh) {
  std::uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  const __m256i spread_bytes = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                 0x0101010101010101, 0x0000000000000000);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), spread_bytes);
  // Set every bit except bit (j % 8) of byte j; the byte is all ones iff that bit was set.
  const __m256i all_but_own_bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  bytes = _mm256_or_si256(bytes, all_but_own_bit);
  return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// Sums of 4 adjacent products x*y as 8 int32 lanes, x unsigned (<= 128 here), y signed in
// [-127, 127]. maddubs cannot saturate: a pair is at most 2 * 128 * 127 = 32512 < 32767.
inline __m256i dot_u8_i8(__m256i ux, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ux, y), _mm256_set1_epi16(1));
}

// As dot_u8_i8 with x signed: |x| goes to the unsigned side and x's sign onto y. Requires y in
// [-127, 127] (true of every activation quantizer here); x may be -128 (abs 128 as unsigned).
inline __m256i dot_i8_i8(__m256i x, __m256i y) {
  return dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// 4 x 8 int32 (each in [-127, 127]) -> 32 int8 in element order (the packs interleave 128-bit
// lanes; the permute undoes it).
inline __m256i pack_32_i8(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i p01 = _mm256_packs_epi32(i0, i1);  // lanes interleave: 0 1 | 0 1 per 128 bits
  const __m256i p23 = _mm256_packs_epi32(i2, i3);
  const __m256i p = _mm256_packs_epi16(p01, p23);
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Q4_K/Q5_K: 12 packed bytes -> bytes 0..7 the eight 6-bit scales, bytes 8..15 the eight mins
// (ggml's kmask dance), as 32-bit lanes scales 0..3, scales 4..7, mins 0..3, mins 4..7 from the
// packed words u0, u1, u2: u0 & 0x3f.., (u2 & 0x0f..) | ((u0 >> 6) & 3..) << 4, u1 & 0x3f..,
// ((u2 >> 4) & 0x0f..) | ((u1 >> 6) & 3..) << 4. All in one vector register (a scalar build then
// inserted lane by lane cost ~20 instructions per super-block in the decode loops). Reads 16
// bytes: the 4 after the scales belong to the same block (Q4_K's qs, Q5_K's qh).
inline __m128i k4_scales_mins(const std::uint8_t* packed) {
  const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m128i low_src = _mm_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0));   // u0 u2 u1 u2
  const __m128i high_src = _mm_shuffle_epi32(u, _MM_SHUFFLE(1, 1, 0, 0));  // u0 u0 u1 u1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(low_src, _mm_set_epi32(4, 0, 0, 0)),
                                    _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
  const __m128i high = _mm_and_si128(_mm_srli_epi32(high_src, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
  return _mm_or_si128(low, high);
}

// 8 bytes -> 16 int16, each value twice: per 16-element group g, the value of sub-block g / 2.
inline __m256i per_group_of_pairs(__m128i bytes8) {
  return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(bytes8, bytes8));
}

// Q3_K: 12 packed bytes -> the 16 signed 6-bit scales (offset 32 removed), in a register.
inline __m128i q3_k_scales(const std::uint8_t* packed) {
  constexpr std::uint32_t kmask1 = 0x03030303;
  constexpr std::uint32_t kmask2 = 0x0f0f0f0f;
  std::uint32_t a[3];
  std::memcpy(a, packed, kKScaleBytes);
  const std::uint32_t s0 = (a[0] & kmask2) | (((a[2] >> 0) & kmask1) << 4);
  const std::uint32_t s1 = (a[1] & kmask2) | (((a[2] >> 2) & kmask1) << 4);
  const std::uint32_t s2 = ((a[0] >> 4) & kmask2) | (((a[2] >> 4) & kmask1) << 4);
  const std::uint32_t s3 = ((a[1] >> 4) & kmask2) | (((a[2] >> 6) & kmask1) << 4);
  const __m128i biased = _mm_set_epi32(static_cast<int>(s3), static_cast<int>(s2), static_cast<int>(s1), static_cast<int>(s0));
  return _mm_sub_epi8(biased, _mm_set1_epi8(32));
}

// The float scale of a 32-element weight block: its fp16 d, or for MXFP4 the E8M0 exponent's
// (halved) power of two. One name, so the Q8_0 dot-product templates serve every such type.
template <typename Block>
inline float block_scale(const Block& b) { return h2f(b.d); }
inline float block_scale(const BlockMXFP4& b) { return e8m0_to_fp32_half(b.e); }

// MXFP4: the 32 codes of a block as their doubled E2M1 values, int8 in [-12, 12] (elements 0..15
// in the low 128-bit lane, 16..31 in the high one), looked up with a byte shuffle per lane.
inline __m256i mxfp4_values_32(const std::uint8_t* qs) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesMXFP4)));
  return _mm256_shuffle_epi8(table, nibbles_32(qs));
}

// Software prefetch of a weight stream, kPrefetchAhead bytes past the block being decoded (for
// the next blocks of the row, and across the row's end into the next row: a matrix's rows are
// contiguous). At batch 1 (decode) every weight byte is read once, from DRAM, and the hardware
// prefetcher alone keeps too few lines in flight: on the 2-core Xeon (AVX-512) VM, one thread
// over 1.5 GB of 1536-column Q4_K rows ran at 6.8 GB/s without, 12 GB/s with 1.5-3 KB ahead
// (plain 64-byte loads: 15 GB/s). Prefetches never fault; the address is formed as an integer
// since it may lie past the end of the tensor.
inline constexpr std::uintptr_t kPrefetchAhead = 2048;
// The lines kPrefetchAhead past [p, p + bytes): one prefetch per 64 bytes (a block smaller than a
// line gets one, which still reaches every line of a run of blocks).
template <std::size_t kBytes>
inline void prefetch_ahead(const void* p) {
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(p) + kPrefetchAhead;
  for (std::size_t offset = 0; offset < kBytes; offset += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(at + offset), _MM_HINT_T0);
  }
}
template <typename Block>
inline void prefetch_ahead(const Block* block) {
  prefetch_ahead<sizeof(Block)>(static_cast<const void*>(block));
}

// Activation row c of a tile.
template <typename Block>
inline const Block* act_row(const void* acts, std::size_t act_row_bytes, int c) {
  return reinterpret_cast<const Block*>(static_cast<const std::byte*>(acts) + static_cast<std::size_t>(c) * act_row_bytes);
}

// Expand a tile kernel template<int NA> into the VecDotFn / VecDotMultiFn pair. The vec_dot is
// the NA = 1 instance, so the tile results equal the single-row results bit for bit.
#define SLUICE_DEFINE_TILE_ENTRY_POINTS(name, kernel)                                             \
  float name##_vec_dot(std::int64_t n, const void* w, const void* a) {                           \
    float out;                                                                                     \
    kernel<1>(n, w, a, 0, &out, 0);                                                                \
    return out;                                                                                    \
  }                                                                                                \
  void name##_multi(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes,   \
                    int n_acts, float* out, std::size_t out_stride) {                              \
    switch (n_acts) {                                                                              \
      case 1: kernel<1>(n, w, acts, act_row_bytes, out, out_stride); break;                        \
      case 2: kernel<2>(n, w, acts, act_row_bytes, out, out_stride); break;                        \
      case 3: kernel<3>(n, w, acts, act_row_bytes, out, out_stride); break;                        \
      default: kernel<4>(n, w, acts, act_row_bytes, out, out_stride); break;                       \
    }                                                                                              \
  }
static_assert(kMaxTileActs == 4, "SLUICE_DEFINE_TILE_ENTRY_POINTS instantiates 1..4 activations");

// A run of bytes fetched into L2 a few cache lines at a time from inside a compute loop: each
// advance() issues the next lines_per_step prefetches, so they interleave with arithmetic. (A
// burst of prefetches stalls the core once the fill buffers are full, just as the loads would:
// Qwen2.5-1.5B Q4_K_M batch-16 decode ran at 103 tok/s with the next pass prefetched in one
// burst, 107 with none, 118 spread over the pass's sub-blocks.)
class PrefetchStream {
 public:
  PrefetchStream() = default;
  // bytes from begin (0: nothing), spread over `steps` calls of advance().
  PrefetchStream(const std::byte* begin, std::size_t bytes, std::int64_t steps)
      : p_(reinterpret_cast<const char*>(begin)),
        end_(p_ + bytes),
        lines_per_step_(bytes == 0 || steps <= 0
                            ? 0
                            : static_cast<int>((bytes / 64 + static_cast<std::size_t>(steps)) / static_cast<std::size_t>(steps))) {}
  void advance() {
    for (int i = 0; i < lines_per_step_ && p_ < end_; ++i, p_ += 64) _mm_prefetch(p_, _MM_HINT_T1);
  }

 private:
  const char* p_ = nullptr;
  const char* end_ = nullptr;
  int lines_per_step_ = 0;
};

// Weight rows [first, first + n) of w into L2 while the current pass computes, spread over its
// `steps` tile calls (a hint only; n <= 0: none): a later pass's pack reads them in a tight loop
// that would stall on every miss.
inline PrefetchStream rows_ahead(const std::byte* w, std::size_t weight_row_bytes, std::int64_t first, std::int64_t n,
                                 std::int64_t steps) {
  if (n <= 0) return {};
  return {w + static_cast<std::size_t>(first) * weight_row_bytes, static_cast<std::size_t>(n) * weight_row_bytes, steps};
}

// A growable scratch buffer for the SIMD files, in place of std::vector<float> (or of any other
// type with external linkage): std::vector's out-of-line members instantiated here would be built
// with this file's flags, and the linker keeps one copy for the whole program, so an AVX-512 copy
// of std::vector<float>::resize ran in the AVX2 GEMM on an AVX2-only CPU (SIGILL in the ASan
// build on a Zen 3). This template has internal linkage: each file keeps its own code. Growing
// keeps none of the old elements (callers write what they read); new memory is zeroed.
template <typename T>
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { delete[] data_; }
  std::size_t size() const { return size_; }
  T* data() { return data_; }
  T& operator[](std::size_t i) { return data_[i]; }
  void resize(std::size_t n) {
    if (n > capacity_) {
      T* fresh = new T[n]();
      delete[] data_;
      data_ = fresh;
      capacity_ = n;
    }
    size_ = n;
  }
  void assign(std::size_t n, T value) {
    resize(n);
    for (std::size_t i = 0; i < n; ++i) data_[i] = value;
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace
}  // namespace sluice::cpu
