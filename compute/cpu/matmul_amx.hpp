// AMX (int8 tiles) GEMMs (matmul_amx.cpp) and the check that this process may use them
// (kernels.cpp). A CPU can list AMX in CPUID and still not let a process use it: the OS must
// save the tile state (XCR0 bits 17 and 18) and grant it (arch_prctl ARCH_REQ_XCOMP_PERM), and
// some virtual machines pass both and fault on the first tile instruction anyway.
#pragma once

#include <cstdint>

#include "compute/cpu/kernels.hpp"

namespace sluice::cpu {

// True when the CPU has AMX-TILE, AMX-INT8 and AVX-512 VBMI on top of the AVX-512 level, the OS
// grants the tile state, and one checked tile product ran in a child process. SLUICE_AMX=off
// (or 0) says false without looking. Decided once per process; thread-safe.
bool amx_int8_usable();

// True when probe() returns true in a fork()ed child that exits normally; false when it returns
// false, dies of a signal (SIGILL, SIGSEGV: an instruction the machine refuses) or cannot start.
bool succeeds_in_child_process(bool (*probe)());

// One tile product (TDPBUSD) in the calling thread against its scalar sum. Faults where AMX is
// not usable: call only in the probe's child, after the CPUID, XCR0 and permission checks.
bool amx_probe_in_this_thread();

// The AVX-512 level's Q4_K GEMM takes AMX tiles from batch 64 (matmul_amx.cpp has the figures)
// and stays the AVX-512 one below it.
void register_amx_gemms(KernelTable& table);

// The AMX Q4_K GEMM itself, at any batch (tests): only once amx_int8_usable().
MatmulRowsFn amx_q4_k_gemm();

}  // namespace sluice::cpu
