// Conversions between OS index lists and hwloc bitmaps, shared by the numa/ sources.
#include "numa/hwloc_util.hpp"

#include <new>

namespace sluice::numa::detail {

Bitmap make_bitmap() {
  Bitmap bitmap(hwloc_bitmap_alloc());
  if (!bitmap) throw std::bad_alloc();
  return bitmap;
}

Bitmap cpuset_of(const std::vector<unsigned>& os_cpus) {
  Bitmap bitmap = make_bitmap();
  for (unsigned cpu : os_cpus) hwloc_bitmap_set(bitmap.get(), cpu);
  return bitmap;
}

Bitmap nodeset_of(unsigned node_os_index) {
  Bitmap bitmap = make_bitmap();
  hwloc_bitmap_only(bitmap.get(), node_os_index);
  return bitmap;
}

std::vector<unsigned> indices_of(hwloc_const_bitmap_t bitmap) {
  std::vector<unsigned> indices;
  // hwloc_bitmap_next returns -1 past the last set bit; an infinite bitmap (never the case for
  // a node's cpuset) would loop forever, so stop there too.
  if (hwloc_bitmap_weight(bitmap) < 0) return indices;
  for (int i = hwloc_bitmap_first(bitmap); i >= 0; i = hwloc_bitmap_next(bitmap, i)) {
    indices.push_back(static_cast<unsigned>(i));
  }
  return indices;
}

}  // namespace sluice::numa::detail
