// `sluice bench -m MODEL`: llama-bench-style throughput table for the in-RAM engine: prompt
// processing of -p tokens in one batch (pp) and generation of -n tokens one at a time (tg),
// each repeated -r times; reports mean and spread of tokens/s.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <iostream>

#include "common/table.hpp"
#include "common/units.hpp"
#include "engine/generate.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct BenchOptions {
  std::string model;
  int n_prompt = 64, n_gen = 32, repetitions = 3, threads = 0;
};

struct Sample {
  double mean = 0, stdev = 0;
};

Sample summarize(const std::vector<double>& v) {
  Sample s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.stdev += (x - s.mean) * (x - s.mean);
  s.stdev = v.size() > 1 ? std::sqrt(s.stdev / double(v.size() - 1)) : 0.0;
  return s;
}

void bench(const BenchOptions& o) {
  auto model = Model::open(o.model);
  const ModelConfig& c = model->config();
  // Token ids cycle through the vocabulary past the first few (special) entries: the work does
  // not depend on which tokens they are.
  constexpr std::int32_t kFirstOrdinaryToken = 10;
  auto token = [&](int i) { return static_cast<std::int32_t>(kFirstOrdinaryToken + i % (c.n_vocab - kFirstOrdinaryToken)); };
  std::vector<double> pp, tg;
  std::vector<float> logits;
  for (int r = 0; r < o.repetitions; ++r) {
    Transformer t(c, o.n_prompt + o.n_gen + 1, cpu::Threading{o.threads});
    std::vector<std::int32_t> prompt(std::size_t(o.n_prompt));
    for (int i = 0; i < o.n_prompt; ++i) prompt[std::size_t(i)] = token(i);
    auto started = std::chrono::steady_clock::now();
    evaluate(t, *model, prompt, 0, false, logits);
    pp.push_back(o.n_prompt / std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    started = std::chrono::steady_clock::now();
    for (int i = 0; i < o.n_gen; ++i) {
      std::int32_t next = token(o.n_prompt + i);
      evaluate(t, *model, std::span(&next, 1), o.n_prompt + i, false, logits);
    }
    tg.push_back(o.n_gen / std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  Table table({"model", "size", "params", "threads", "test", "t/s"});
  const std::string name = fmt::format("{} {}L {}d", to_string(c.arch), c.n_layer, c.n_embd);
  const std::string size = format_bytes(model->weight_bytes());
  const std::string threads = o.threads > 0 ? std::to_string(o.threads) : "all";
  Sample p = summarize(pp), g = summarize(tg);
  table.add_row({name, size, model->is_pack() ? "pack" : "gguf", threads, fmt::format("pp{}", o.n_prompt),
                 fmt::format("{:.2f} ± {:.2f}", p.mean, p.stdev)});
  table.add_row({name, size, model->is_pack() ? "pack" : "gguf", threads, fmt::format("tg{}", o.n_gen),
                 fmt::format("{:.2f} ± {:.2f}", g.mean, g.stdev)});
  table.print(std::cout);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Throughput table in llama-bench's style (pp = prompt batch, tg = generation).");
  cmd->add_option("-m,--model", o->model, "GGUF or pack")->required()->check(CLI::ExistingFile);
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens (pp test)")->capture_default_str()->check(CLI::Range(1, 65536));
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens (tg test)")->capture_default_str()->check(CLI::Range(1, 65536));
  cmd->add_option("-r,--repetitions", o->repetitions, "Repetitions")->capture_default_str()->check(CLI::Range(1, 100));
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0: all)")->capture_default_str();
  cmd->callback([o] { bench(*o); });
}

}  // namespace sluice
