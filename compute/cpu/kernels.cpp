// CPU feature detection and the per-level kernel tables (kernels.hpp). Compiled without SIMD flags:
// nothing here may execute an AVX instruction before the CPU check has passed.
#include "compute/cpu/kernels.hpp"

#include <cpuid.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "compute/cpu/check.hpp"
#include "compute/cpu/matmul_amx.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu {

namespace detail {
void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "sluice compute/cpu: check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace detail

namespace {

constexpr const char* kIsaEnvVar = "SLUICE_CPU_ISA";

bool cpu_has_avx2() {
  // FMA and F16C come with every AVX2 CPU sluice targets, but are separate CPUID bits; the AVX2
  // files are compiled with all three.
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool cpu_has_avx512() {
  // __builtin_cpu_supports also checks that the OS saves the ZMM state (XCR0).
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}

// CPUID's AMX-TILE, AMX-INT8 and AVX512-VBMI bits, the OS saving the tile state (XCR0 bits 17
// and 18, after OSXSAVE) and its permission for this process (Linux 5.16+).
bool os_grants_amx() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 27)) == 0) return false;  // OSXSAVE
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool amx_tile = (edx & (1u << 24)) != 0, amx_int8 = (edx & (1u << 25)) != 0, vbmi = (ecx & (1u << 1)) != 0;
  if (!amx_tile || !amx_int8 || !vbmi) return false;
  std::uint32_t xcr0_low = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  constexpr std::uint32_t kTileState = (1u << 17) | (1u << 18);  // XTILECFG, XTILEDATA
  if ((xcr0_low & kTileState) != kTileState) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtileData = 18;
  return ::syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

void fill_scalar(KernelTable& t) {
  t.isa = CpuIsa::scalar;
  t.vec_dot[type_slot(GgmlType::F32)] = scalar::vec_dot_f32;
  t.vec_dot[type_slot(GgmlType::F16)] = scalar::vec_dot_f16;
  t.vec_dot[type_slot(GgmlType::BF16)] = scalar::vec_dot_bf16;
  t.vec_dot[type_slot(GgmlType::Q4_0)] = scalar::vec_dot_q4_0;
  t.vec_dot[type_slot(GgmlType::Q4_1)] = scalar::vec_dot_q4_1;
  t.vec_dot[type_slot(GgmlType::Q5_0)] = scalar::vec_dot_q5_0;
  t.vec_dot[type_slot(GgmlType::Q5_1)] = scalar::vec_dot_q5_1;
  t.vec_dot[type_slot(GgmlType::Q8_0)] = scalar::vec_dot_q8_0;
  t.vec_dot[type_slot(GgmlType::Q2_K)] = scalar::vec_dot_q2_k;
  t.vec_dot[type_slot(GgmlType::Q3_K)] = scalar::vec_dot_q3_k;
  t.vec_dot[type_slot(GgmlType::Q4_K)] = scalar::vec_dot_q4_k;
  t.vec_dot[type_slot(GgmlType::Q5_K)] = scalar::vec_dot_q5_k;
  t.vec_dot[type_slot(GgmlType::Q6_K)] = scalar::vec_dot_q6_k;
  t.vec_dot[type_slot(GgmlType::MXFP4)] = scalar::vec_dot_mxfp4;
  t.quantize_activation[type_slot(GgmlType::F16)] = scalar::quantize_f16;
  t.quantize_activation[type_slot(GgmlType::BF16)] = scalar::quantize_bf16;
  t.quantize_activation[type_slot(GgmlType::Q8_0)] = scalar::quantize_q8_0_act;
  t.quantize_activation[type_slot(GgmlType::Q8_1)] = scalar::quantize_q8_1_act;
  t.quantize_activation[type_slot(GgmlType::Q8_K)] = scalar::quantize_q8_k;
  t.attention_scores_f16 = scalar::attention_scores_f16;
  t.attention_values_f16 = scalar::attention_values_f16;
  t.geglu = scalar::geglu;
  t.swiglu = scalar::swiglu;
}

// Entries a level did not provide take the scalar kernel.
void fill_missing(KernelTable& t, const KernelTable& scalar_table) {
  for (int i = 0; i < kTypeSlots; ++i) {
    if (t.vec_dot[i] == nullptr) t.vec_dot[i] = scalar_table.vec_dot[i];
    if (t.quantize_activation[i] == nullptr) t.quantize_activation[i] = scalar_table.quantize_activation[i];
  }
  if (t.attention_scores_f16 == nullptr) t.attention_scores_f16 = scalar_table.attention_scores_f16;
  if (t.attention_values_f16 == nullptr) t.attention_values_f16 = scalar_table.attention_values_f16;
  if (t.geglu == nullptr) t.geglu = scalar_table.geglu;
  if (t.swiglu == nullptr) t.swiglu = scalar_table.swiglu;
}

struct Tables {
  KernelTable scalar;
  KernelTable avx2;
  KernelTable avx512;
  // The levels' own tables before fill_missing, for has_native_vec_dot.
  KernelTable avx2_native;
  KernelTable avx512_native;
  bool have_avx2 = false;
  bool have_avx512 = false;
};

const Tables& tables() {
  static const Tables t = [] {
    Tables r;
    fill_scalar(r.scalar);
    r.have_avx2 = cpu_has_avx2();
    r.have_avx512 = cpu_has_avx512();
    if (r.have_avx2) {
      r.avx2.isa = CpuIsa::avx2;
      register_avx2_kernels(r.avx2);
      register_avx2_row_kernels(r.avx2);
      r.avx2_native = r.avx2;
      fill_missing(r.avx2, r.scalar);
    }
    if (r.have_avx512) {
      r.avx512.isa = CpuIsa::avx512;
      register_avx512_kernels(r.avx512);
      register_avx512_row_kernels(r.avx512);
      if (amx_int8_usable()) register_amx_gemms(r.avx512);
      r.avx512_native = r.avx512;
      fill_missing(r.avx512, r.scalar);
    }
    return r;
  }();
  return t;
}

CpuIsa choose_active() {
  const CpuIsa best = detected_isa();
  const char* forced = std::getenv(kIsaEnvVar);
  if (forced == nullptr || forced[0] == '\0') return best;
  CpuIsa wanted;
  if (std::strcmp(forced, "scalar") == 0) {
    wanted = CpuIsa::scalar;
  } else if (std::strcmp(forced, "avx2") == 0) {
    wanted = CpuIsa::avx2;
  } else if (std::strcmp(forced, "avx512") == 0) {
    wanted = CpuIsa::avx512;
  } else {
    std::fprintf(stderr, "sluice: ignoring %s=%s (expected scalar, avx2 or avx512); using %s\n",
                 kIsaEnvVar, forced, to_string(best));
    return best;
  }
  if (!isa_supported(wanted)) {
    std::fprintf(stderr, "sluice: %s=%s but this CPU lacks it; using %s\n", kIsaEnvVar, forced,
                 to_string(best));
    return best;
  }
  return wanted;
}

}  // namespace

const char* to_string(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::scalar: return "scalar";
    case CpuIsa::avx2: return "avx2";
    case CpuIsa::avx512: return "avx512";
  }
  return "unknown";
}

CpuIsa detected_isa() {
  const Tables& t = tables();
  if (t.have_avx512) return CpuIsa::avx512;
  if (t.have_avx2) return CpuIsa::avx2;
  return CpuIsa::scalar;
}

bool isa_supported(CpuIsa isa) { return kernels_for(isa) != nullptr; }

bool succeeds_in_child_process(bool (*probe)()) {
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) ::_exit(probe() ? 0 : 1);  // the child only computes and exits
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  return waited == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool amx_int8_usable() {
  static const bool usable = [] {
    const char* env = std::getenv("SLUICE_AMX");
    if (env != nullptr && (std::strcmp(env, "off") == 0 || std::strcmp(env, "0") == 0)) return false;
    // A guest can be granted all of this and still fault on the first tile instruction: that
    // costs the child, not this process.
    return cpu_has_avx512() && os_grants_amx() && succeeds_in_child_process(amx_probe_in_this_thread);
  }();
  return usable;
}

CpuIsa active_isa() {
  static const CpuIsa isa = choose_active();
  return isa;
}

const KernelTable* kernels_for(CpuIsa isa) {
  const Tables& t = tables();
  switch (isa) {
    case CpuIsa::scalar: return &t.scalar;
    case CpuIsa::avx2: return t.have_avx2 ? &t.avx2 : nullptr;
    case CpuIsa::avx512: return t.have_avx512 ? &t.avx512 : nullptr;
  }
  return nullptr;
}

const KernelTable& active_kernels() { return *kernels_for(active_isa()); }

void quantize_row_weights(GgmlType type, const float* src, void* dst, std::int64_t n) {
  const int slot = type_slot(type);
  if (slot >= 0 && slot < kTypeSlots) {
    if (QuantizeFn fast = active_kernels().quantize_weights[slot]) {
      // The reference's checks (a weight type, whole blocks) before the kernel runs.
      SLUICE_CPU_CHECK(is_weight_type(type));
      SLUICE_CPU_CHECK(n % static_cast<std::int64_t>(block_elements(type)) == 0);
      return fast(src, dst, n);
    }
  }
  quantize_row_reference(type, src, dst, n);
}

bool has_native_vec_dot(CpuIsa isa, GgmlType type) {
  const Tables& t = tables();
  const int slot = type_slot(type);
  SLUICE_CPU_CHECK(slot >= 0 && slot < kTypeSlots);
  switch (isa) {
    case CpuIsa::scalar: return t.scalar.vec_dot[slot] != nullptr;
    case CpuIsa::avx2: return t.have_avx2 && t.avx2_native.vec_dot[slot] != nullptr;
    case CpuIsa::avx512: return t.have_avx512 && t.avx512_native.vec_dot[slot] != nullptr;
  }
  return false;
}

}  // namespace sluice::cpu
