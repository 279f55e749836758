// `sluice inspect`: a human-readable dump of a pack file's header, extents, tensors and metadata,
// optionally verifying every frame's checksum.
#pragma once

#include <ostream>
#include <string>

namespace sluice::pack {

// Prints a summary of the pack at `path` to `out`; with `verify`, reads and checks every frame.
// Returns 0 when the file is valid (and, with verify, every frame is good), 1 otherwise; problems
// are printed, never thrown.
int inspect_pack(const std::string& path, bool verify, std::ostream& out);

}  // namespace sluice::pack
