// Internal to numa/: RAII ownership of hwloc bitmaps and conversions between the OS index lists
// that numa/ exposes and hwloc cpusets/nodesets. Not part of the public API.
#pragma once

#include <hwloc.h>

#include <memory>
#include <vector>

namespace sluice::numa::detail {

struct BitmapFree {
  void operator()(hwloc_bitmap_t bitmap) const noexcept { hwloc_bitmap_free(bitmap); }
};
// Owns one hwloc bitmap (a cpuset or a nodeset); freed with hwloc_bitmap_free.
using Bitmap = std::unique_ptr<hwloc_bitmap_s, BitmapFree>;

// A new, empty bitmap. Throws std::bad_alloc when hwloc cannot allocate one.
Bitmap make_bitmap();
// Cpuset holding exactly the PUs with these OS indices (hwloc cpusets are indexed by OS PU index).
Bitmap cpuset_of(const std::vector<unsigned>& os_cpus);
// Nodeset holding only the NUMA node with this OS index.
Bitmap nodeset_of(unsigned node_os_index);
// The OS indices set in `bitmap`, ascending.
std::vector<unsigned> indices_of(hwloc_const_bitmap_t bitmap);

}  // namespace sluice::numa::detail
