// The memory planner: sums its items, fits the ring to the budget, and refuses a budget below the
// minimum with a message that names the minimum.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/planner.hpp"
#include "model/convert.hpp"
#include "model/metadata.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice {
namespace {

const char* kStories = SLUICE_SHARED_MODELS "/stories260K.gguf";

TEST(Planner, FitsTheRingAndRefusesImpossibleBudgets) {
  if (!std::filesystem::exists(kStories)) GTEST_SKIP() << "SKIPPED: " << kStories << " not found";
  sluice::testing::TempDir dir;
  const std::string path = dir.file("s.sluice");
  convert_gguf_to_pack(kStories, path, pack::WriterOptions{});
  pack::Pack pack = pack::Pack::open(path);
  auto md = metadata_of(pack.metadata(), path);
  ModelConfig config = config_from_metadata(*md);

  MemoryPlan roomy = plan_memory(pack, config, 128, 8, 1ull << 30, 4, 2.0);
  EXPECT_EQ(roomy.slots, 4u);
  EXPECT_EQ(roomy.total, roomy.resident_bytes + roomy.ring_bytes + roomy.kv_bytes + roomy.activation_bytes + roomy.overhead_bytes);
  EXPECT_LE(roomy.total, roomy.budget);
  EXPECT_EQ(roomy.kv_bytes, 2ull * 5 * 128 * 4 * 8 * 2);  // K and V, 5 layers, 128 positions, 4 kv heads x 8 dims, fp16
  EXPECT_GT(roomy.predicted_seconds_per_pass(), 0.0);

  // A budget with room for exactly the minimum gets a 2-slot ring.
  MemoryPlan tight = plan_memory(pack, config, 128, 8, roomy.minimum, 16, 0.0);
  EXPECT_EQ(tight.slots, 2u);
  EXPECT_EQ(tight.total, tight.minimum);

  try {
    plan_memory(pack, config, 128, 8, roomy.minimum - 1, 4, 0.0);
    FAIL() << "expected the budget to be refused";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("too small"), std::string::npos) << msg;
    EXPECT_NE(msg.find("the minimum is"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--mem-budget"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace sluice
