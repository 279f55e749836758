// KV caches: resident and spilled give back exactly what was stored, layer by layer over many
// passes and sequences (including a cleared, reused slot and a pass abandoned half-way); the
// spilled one holds two layers in RAM and leaves no file behind; bad shapes are refused.
#include <gtest/gtest.h>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "cache/kv_cache.hpp"
#include "common/memory.hpp"
#include "io/fault_backend.hpp"
#include "tests/support/fault_sweep.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice::cache {
namespace {

// The byte a (layer, seq, pos, plane, i) cell should hold: a hash, so misplaced bytes show.
std::byte cell(std::int64_t il, std::int32_t s, std::int64_t pos, int plane, std::int64_t i, std::uint32_t gen) {
  std::uint64_t h = std::uint64_t(il) * 1000003 ^ std::uint64_t(s) * 10007 ^ std::uint64_t(pos) * 101 ^
                    std::uint64_t(plane) * 7 ^ std::uint64_t(i) * 0x9e3779b97f4a7c15ull ^ gen * 0x51ull;
  h ^= h >> 29;
  return std::byte(h & 0xff);
}

// Drives a cache like the forward pass: each pass writes `step` positions per sequence in every
// layer and checks every position written before.
void exercise(KvCache& kv) {
  const KvShape& sh = kv.shape();
  const std::int64_t rb = sh.row_bytes();
  std::vector<std::int64_t> filled(std::size_t(sh.n_seq), 0);
  std::vector<std::uint32_t> gen(std::size_t(sh.n_seq), 0);
  std::mt19937 rng(7);
  for (int pass = 0; pass < 12; ++pass) {
    if (pass == 6) {  // slot 1 gets a new sequence
      kv.clear(1);
      filled[1] = 0;
      gen[1] = 1;
    }
    std::vector<std::int64_t> step(std::size_t(sh.n_seq));
    for (auto& s : step) s = std::uniform_int_distribution<std::int64_t>(0, 3)(rng);
    for (std::int64_t il = 0; il < sh.n_layer; ++il) {
      kv.begin_layer(il);
      std::vector<KvWrite> writes;
      for (std::int32_t s = 0; s < sh.n_seq; ++s) {
        cpu::KvLayerView v = kv.view(il, s);
        ASSERT_EQ(v.row_bytes, rb);
        for (std::int64_t pos = 0; pos < filled[std::size_t(s)]; ++pos) {
          for (std::int64_t i = 0; i < rb; ++i) {
            ASSERT_EQ(v.k[pos * rb + i], cell(il, s, pos, 0, i, gen[std::size_t(s)])) << "pass " << pass << " layer " << il << " seq " << s << " pos " << pos;
            ASSERT_EQ(v.v[pos * rb + i], cell(il, s, pos, 1, i, gen[std::size_t(s)]));
          }
        }
        const std::int64_t n = std::min(step[std::size_t(s)], sh.n_ctx - filled[std::size_t(s)]);
        for (std::int64_t pos = filled[std::size_t(s)]; pos < filled[std::size_t(s)] + n; ++pos) {
          for (std::int64_t i = 0; i < rb; ++i) {
            v.k[pos * rb + i] = cell(il, s, pos, 0, i, gen[std::size_t(s)]);
            v.v[pos * rb + i] = cell(il, s, pos, 1, i, gen[std::size_t(s)]);
          }
        }
        writes.push_back({s, filled[std::size_t(s)], n});
      }
      kv.end_layer(il, writes);
    }
    for (std::int32_t s = 0; s < sh.n_seq; ++s) {
      filled[std::size_t(s)] += std::min(step[std::size_t(s)], sh.n_ctx - filled[std::size_t(s)]);
    }
  }
}

TEST(KvCache, ResidentAndSpilledReturnWhatWasStored) {
  sluice::testing::TempDir dir;
  for (auto type : {cpu::KvType::f16, cpu::KvType::q8_0}) {
    for (std::int64_t n_layer : {1, 2, 5}) {
      SCOPED_TRACE(::testing::Message() << cpu::to_string(type) << " layers " << n_layer);
      // 96-value rows: 192 bytes in f16 (rows straddle 4096-byte pages), 102 in q8_0.
      const KvShape shape{n_layer, 96, 40, 3, type};
      auto resident = make_resident_kv_cache(shape);
      exercise(*resident);
      // Counted here from the shape's parts, not with the implementation's own formula: K and V
      // planes x sequences x positions x row bytes (96 fp16 = 192, 96 q8_0 = 3 blocks of 34).
      const std::uint64_t row = type == cpu::KvType::f16 ? 192 : 102;
      EXPECT_EQ(resident->memory_bytes(), std::uint64_t(n_layer) * 2 * 3 * 40 * row);
      auto spilled = make_spilled_kv_cache(shape, dir.path());
      exercise(*spilled);
      EXPECT_TRUE(spilled->spilled());
      EXPECT_EQ(spilled->memory_bytes(), spilled_kv_memory_bytes(shape));
      if (n_layer > 1) {  // one layer never leaves its buffer
        EXPECT_GT(spilled->stats().bytes_read, 0u);
      }
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

// Writes every position of every sequence in every layer, as a full context would.
void fill_every_layer(KvCache& kv) {
  const KvShape& sh = kv.shape();
  for (std::int64_t il = 0; il < sh.n_layer; ++il) {
    kv.begin_layer(il);
    std::vector<KvWrite> writes;
    for (std::int32_t s = 0; s < sh.n_seq; ++s) {
      cpu::KvLayerView v = kv.view(il, s);
      std::memset(v.k, int(il + 1), std::size_t(sh.n_ctx * sh.row_bytes()));
      std::memset(v.v, int(il + 2), std::size_t(sh.n_ctx * sh.row_bytes()));
      writes.push_back({s, 0, sh.n_ctx});
    }
    kv.end_layer(il, writes);
  }
}

// RAM actually held, measured as resident set growth (not the cache's own memory_bytes()): a full
// 64 MiB spilled cache keeps about two 4 MiB layers in RAM; the resident one holds all of it.
TEST(KvCache, SpilledHoldsTwoLayersInRam) {
  sluice::testing::TempDir dir;
  const KvShape shape{16, 512, 512, 4, cpu::KvType::f16};  // layer: 2 x 4 x 512 x 1 KiB = 4 MiB
  const std::uint64_t total = 16ull * 2 * 4 * 512 * 1024, layer = total / 16;
  ::malloc_trim(0);
  const std::uint64_t before_spilled = current_rss_bytes();
  {
    auto spilled = make_spilled_kv_cache(shape, dir.path());
    fill_every_layer(*spilled);
    const std::uint64_t grown = current_rss_bytes() - std::min(before_spilled, current_rss_bytes());
    EXPECT_LT(grown, 4 * layer) << "a spilled cache held " << grown << " bytes of RAM";
    EXPECT_GE(spilled->stats().bytes_written, total - 2 * layer);
  }
  ::malloc_trim(0);
  const std::uint64_t before_resident = current_rss_bytes();
  auto resident = make_resident_kv_cache(shape);
  fill_every_layer(*resident);
  const std::uint64_t grown = current_rss_bytes() - std::min(before_resident, current_rss_bytes());
  EXPECT_GE(grown, total * 9 / 10) << "the resident cache should hold every layer in RAM";
}

TEST(KvCache, AbandonedPassRecovers) {
  sluice::testing::TempDir dir;
  const KvShape shape{3, 64, 16, 1, cpu::KvType::f16};
  auto kv = make_spilled_kv_cache(shape, dir.path());
  const std::int64_t rb = shape.row_bytes();
  kv->begin_layer(0);
  std::memset(kv->view(0, 0).k, 0x5a, std::size_t(rb));
  std::memset(kv->view(0, 0).v, 0xa5, std::size_t(rb));
  KvWrite w{0, 0, 1};
  kv->end_layer(0, std::span(&w, 1));
  // The pass stops after layer 0 (an error upstream); the next pass starts again at layer 0.
  kv->begin_layer(0);
  EXPECT_EQ(kv->view(0, 0).k[0], std::byte{0x5a});
  EXPECT_EQ(kv->view(0, 0).v[rb - 1], std::byte{0xa5});
  kv->end_layer(0, {});
}

// Every read and write of the scratch file goes through io::File: with the N-th of them failed
// once (EINTR), for every N, the cache still returns what was stored; failed for good (EIO), the
// pass gets a std::runtime_error naming the scratch file, the offset and the errno.
TEST(KvCache, SpilledFaultSweep) {
  sluice::testing::TempDir dir;
  const KvShape shape{3, 96, 40, 2, cpu::KvType::f16};
  std::atomic<std::uint64_t> operations{0};
  io::FaultPlan clean;
  clean.shared_operations = &operations;
  {
    auto kv = make_spilled_kv_cache(shape, dir.path(), KvSpillOptions{&clean});
    exercise(*kv);
  }
  const std::uint64_t total = operations.load();
  ASSERT_GT(total, 12u);
  std::uint64_t unnoticed = 0;
  sluice::testing::sweep_nth_fault(total, operations, [&](io::FaultPlan& plan, bool persistent) {
    auto kv = make_spilled_kv_cache(shape, dir.path(), KvSpillOptions{&plan});
    try {
      exercise(*kv);  // checks every position it wrote before
      if (persistent) ++unnoticed;
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(persistent) << what;
      EXPECT_NE(what.find(dir.path() + "/sluice-kv-"), std::string::npos) << what;
      EXPECT_NE(what.find("at offset "), std::string::npos) << what;
      EXPECT_NE(what.find(std::strerror(EIO)), std::string::npos) << what;
    }
  });
  // Only the read-ahead begun by the last layer of the last pass is never waited for: the reads
  // of one layer's planes (2 sequences x K and V).
  EXPECT_LE(unnoticed, 4u);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

// truncate() keeps the positions below the length (a verification pass's accepted tokens) and a
// spilled cache then reads only them back; the rest are forgotten as clear() forgets a slot.
TEST(KvCache, TruncateKeepsThePrefixAndReadsOnlyIt) {
  sluice::testing::TempDir dir;
  const KvShape shape{2, 512, 256, 2, cpu::KvType::f16};  // rows of 1 KiB: 4 rows per 4096-byte page
  const std::int64_t rb = shape.row_bytes();
  for (bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "spilled" : "resident");
    auto kv = spill ? make_spilled_kv_cache(shape, dir.path()) : make_resident_kv_cache(shape);
    fill_every_layer(*kv);  // every position of both sequences: layer il's K bytes are il + 1
    EXPECT_EQ(kv->truncate(0, 8), 8);
    // A pass over both layers that writes nothing: what a spilled cache reads back is sequence 0's
    // kept 8 positions (2 pages each of K and V) and sequence 1's whole planes (64 pages each).
    const std::uint64_t read_before = kv->stats().bytes_read;
    for (int pass = 0; pass < 2; ++pass) {
      for (std::int64_t il = 0; il < shape.n_layer; ++il) {
        kv->begin_layer(il);
        const cpu::KvLayerView v = kv->view(il, 0);
        for (std::int64_t pos = 0; pos < 8; ++pos) ASSERT_EQ(v.k[pos * rb], std::byte(il + 1)) << "kept position " << pos;
        ASSERT_EQ(kv->view(il, 1).v[255 * rb], std::byte(il + 2));  // the other sequence is untouched
        kv->end_layer(il, {});
      }
    }
    if (spill) {
      // The second pass reads both layers from the file (the first may find one still in RAM).
      const std::uint64_t per_layer = 2 * 8192 + 2 * 256 * 1024;
      EXPECT_GE(kv->stats().bytes_read - read_before, 2 * per_layer);
      EXPECT_LE(kv->stats().bytes_read - read_before, 4 * per_layer) << "truncated positions were read back";
    }
  }
}

TEST(KvCache, RefusesImpossibleShapesWithClearMessages) {
  EXPECT_THROW(make_resident_kv_cache({2, 48, 16, 1, cpu::KvType::q8_0}), std::invalid_argument);
  try {
    make_spilled_kv_cache({2, 64, 16, 1, cpu::KvType::f16}, "/nonexistent/dir");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sluice::cache
