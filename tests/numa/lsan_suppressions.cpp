// Sanitizer defaults for test_numa. hwloc 2.9 leaks ~1 KiB inside libpciaccess on every topology
// load that discovers PCI objects (open-mpi/hwloc#636); Topology does that only when a CUDA
// device exists, so this matters for ASan runs on GPU machines. The leak is allocated in the
// dlopen'ed hwloc_pci plugin, which has no frame pointers: the slow unwinder is needed to see
// hwloc_topology_load on the stack. Both hooks are plain functions, unused without sanitizers.

extern "C" const char* __lsan_default_suppressions() { return "leak:hwloc_topology_load\n"; }

extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
