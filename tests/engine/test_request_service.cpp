// Requests from many threads through one engine (engine/request_service.hpp), on a synthetic
// model: each answer equals the same request run alone, they share passes, and a full queue
// refuses instead of growing.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "engine/generate.hpp"
#include "engine/request_service.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab_metadata.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

struct Fixture {
  sluice::testing::TempDir dir;
  std::unique_ptr<Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::unique_ptr<InRamForward> forward;
  Fixture() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 2;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from.clear();
    const std::string path = dir.file("m.gguf");
    write_synthetic_gguf(path, synth);
    model = Model::open(path);
    tokenizer = std::make_unique<tok::Tokenizer>(vocab_from_metadata(model->metadata()));
    forward = std::make_unique<InRamForward>(*model);
  }
};

SeqRequest request_of(int i) {
  SeqRequest r;
  r.prompt = {1};
  for (int k = 0; k < 3 + i % 4; ++k) r.prompt.push_back(20 + (31 * i + 7 * k) % 300);
  r.options.n_predict = 10;
  r.options.stop_at_eog = false;
  r.options.sampling.temperature = i % 2 ? 0.8f : 0.0f;
  r.options.sampling.seed = 100 + std::uint64_t(i);
  return r;
}

TEST(RequestService, ConcurrentRequestsAnswerAsAloneInSharedPasses) {
  Fixture f;
  constexpr int kRequests = 12;
  std::vector<std::vector<std::int32_t>> alone(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    Transformer t(f.model->config(), 64, cpu::Threading{});
    alone[std::size_t(i)] = Engine(*f.forward, t, *f.tokenizer, {1, 1, 512}).generate(request_of(i)).generated;
  }
  auto kv = cache::make_resident_kv_cache({f.model->config().n_layer, f.model->config().n_head_kv * f.model->config().head_dim, 64, 4,
                                           cpu::KvType::f16});
  Transformer t(f.model->config(), std::move(kv), cpu::Threading{});
  BatchOptions bo{4, 4, 512};
  bo.source_may_resume = true;
  Engine engine(*f.forward, t, *f.tokenizer, bo);
  std::vector<std::vector<std::int32_t>> got(kRequests);
  {
    RequestService service(engine, 64);
    std::vector<std::thread> clients;
    for (int i = 0; i < kRequests; ++i) {
      clients.emplace_back([&, i] {
        auto future = service.submit(request_of(i));
        ASSERT_TRUE(future.has_value());
        got[std::size_t(i)] = future->get().generated;
      });
    }
    for (auto& c : clients) c.join();
    const ServiceStats s = service.stats();
    EXPECT_EQ(s.finished, std::uint64_t(kRequests));
    EXPECT_EQ(s.generated_tokens, kRequests * 10);
    EXPECT_LT(s.passes, std::uint64_t(kRequests * 10));  // one at a time would take >= 10 passes each
  }
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(got[std::size_t(i)], alone[std::size_t(i)]) << "request " << i;
}

TEST(RequestService, AFullQueueRefuses) {
  Fixture f;
  Transformer t(f.model->config(), 64, cpu::Threading{});
  BatchOptions bo{1, 1, 512};
  bo.source_may_resume = true;
  Engine engine(*f.forward, t, *f.tokenizer, bo);
  RequestService service(engine, 0);
  EXPECT_FALSE(service.submit(request_of(0)).has_value());
}

}  // namespace
}  // namespace sluice
