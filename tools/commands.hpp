// Subcommands of the `sluice` CLI: each cmd_*.cpp defines one add_*_command that registers its
// subcommand, options and callback on the app. main.cpp calls them all.
#pragma once

namespace CLI {
class App;
}

namespace sluice {

// `sluice demo`: stream a synthetic pack with synthetic compute; report bandwidth and overlap.
void add_demo_command(CLI::App& app);

// `sluice run -m MODEL -p PROMPT ...`: generate text (weights in RAM).
void add_run_command(CLI::App& app);

// `sluice convert IN.gguf OUT.sluice`: build a streaming pack from a GGUF.
void add_convert_command(CLI::App& app);

// `sluice synth OUT.gguf --arch --shape --type`: a synthetic model for tests and benchmarks.
void add_synth_command(CLI::App& app);

// `sluice eval -m MODEL -p TEXT`: token ids, logits and greedy tokens as JSON (parity checks).
void add_eval_command(CLI::App& app);

// `sluice bench -m MODEL`: pp/tg tokens per second table (llama-bench style).
void add_bench_command(CLI::App& app);
void add_batch_command(CLI::App& app);
// `sluice chat`: a conversation in the terminal (tools/cmd_chat.cpp).
void add_chat_command(CLI::App& app);
// `sluice serve`: an OpenAI-compatible HTTP server (tools/cmd_serve.cpp).
void add_serve_command(CLI::App& app);

// `sluice perplexity -m MODEL -f TEXT -c CTX`: perplexity as llama.cpp's perplexity tool computes it.
void add_perplexity_command(CLI::App& app);

// `sluice index MODEL.gguf [--verify]`: write (or check against) a GGUF's integrity sidecar.
void add_index_command(CLI::App& app);

// `sluice split --max-size SIZE IN.gguf OUT-PREFIX`: cut a GGUF into llama.cpp gguf-split shards.
void add_split_command(CLI::App& app);

// `sluice inspect FILE [--verify]`: print a pack's header, extents, tensors and metadata.
void add_inspect_command(CLI::App& app);

}  // namespace sluice
