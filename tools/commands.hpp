// Subcommands of the `sluice` CLI: each cmd_*.cpp defines one add_*_command that registers its
// subcommand, options and callback on the app. main.cpp calls them all.
#pragma once

namespace CLI {
class App;
}

namespace sluice {

// `sluice demo`: stream a synthetic pack with synthetic compute; report bandwidth and overlap.
void add_demo_command(CLI::App& app);

// `sluice inspect FILE [--verify]`: print a pack's header, extents, tensors and metadata.
void add_inspect_command(CLI::App& app);

}  // namespace sluice
