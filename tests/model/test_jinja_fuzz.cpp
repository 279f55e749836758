// A mutation fuzz of the Jinja subset (model/jinja.hpp): real templates (tests/model/data/
// chat_templates) with random bytes flipped, inserted, deleted or spliced must parse and render,
// or fail with JinjaError (or the template's own refusal), never crash or hang. Seeded; the seed is printed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "model/jinja.hpp"

namespace sluice::jinja {
namespace {

TEST(JinjaFuzz, MutatedRealTemplatesFailCleanly) {
  const std::filesystem::path dir = std::filesystem::path(SLUICE_SOURCE_DIR) / "tests/model/data/chat_templates";
  std::vector<std::string> sources;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".jinja") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    sources.push_back(ss.str());
  }
  ASSERT_GE(sources.size(), 5u);
  const std::uint32_t seed = 20261206;
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  const std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}, {"user", "V"}};
  const char kTokens[] = "{}%#-+()[]'\".|~=<>!,: \n";
  int rendered = 0, failed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = sources[rng() % sources.size()];
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const std::size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0: s[at] = kTokens[rng() % (sizeof kTokens - 1)]; break;
        case 1: s.insert(at, 1, kTokens[rng() % (sizeof kTokens - 1)]); break;
        case 2: s.erase(at, 1 + rng() % 8); break;
        default: {  // splice a piece of the text elsewhere
          const std::size_t from = rng() % s.size();
          s.insert(at, s.substr(from, 1 + rng() % 40));
        }
      }
    }
    try {
      Template(s).render_chat(messages, iter % 2 == 0, "<s>", "</s>");
      ++rendered;
    } catch (const JinjaError&) {
      ++failed;
    }
  }
  std::printf("%d rendered, %d failed cleanly\n", rendered, failed);
  EXPECT_GT(rendered, 0);
  EXPECT_GT(failed, 0);
}

}  // namespace
}  // namespace sluice::jinja
