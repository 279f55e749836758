// Sanitizer defaults for test_numa. hwloc 2.9 leaks ~1 KiB inside libpciaccess on every topology
// load that discovers PCI objects (open-mpi/hwloc#636); Topology does that only when a CUDA
// device exists, so this matters for ASan runs on GPU machines. The leak is allocated in the
// dlopen'ed hwloc_pci plugin, which has no frame pointers: the slow unwinder is needed to see
// hwloc_topology_load on the stack. Both hooks are plain functions, unused without sanitizers.

//
// oneTBB 2021.8 (Debian 12) leaks the 40-byte observer proxy that r1::observe() allocates for an
// observer bound to an explicit task_arena, even after observe(false) and with the observer
// destroyed before the arena (seen in NodeArena tests under LSan). Suppressed by that frame only.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:hwloc_topology_load\nleak:tbb::detail::r1::observe\n";
}

extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
