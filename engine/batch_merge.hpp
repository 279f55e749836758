// `sluice batch merge`: the outputs of a sharded job's shards interleaved back into one file in
// the input's order (request i ran in shard shard_of_line(custom_id, line, COUNT)).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace sluice {

// Interleaves shard outputs (shards[i] = shard i's output) into `output` in the input's order,
// through OUTPUT.merging renamed at the end. Returns the number of requests missing (each is named
// on `log`); 0 means complete. Throws sluice::Exception naming the shard file and line when a
// shard holds a line that is not a result, answers another request, or has lines to spare.
std::uint64_t merge_shard_outputs(const std::string& input, const std::vector<std::string>& shards, const std::string& output,
                                  std::ostream& log);

}  // namespace sluice
