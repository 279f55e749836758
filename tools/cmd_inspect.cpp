// `sluice inspect`: registers the subcommand that prints (and optionally verifies) a pack file.
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "model/pack_inspect.hpp"
#include "tools/commands.hpp"

namespace sluice {

void add_inspect_command(CLI::App& app) {
  struct Options {
    std::string path;
    bool verify = false;
  };
  // Owned by the callback, which outlives this function.
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Print a .sluice pack's header, extent table (offsets, sizes, frames, compression ratio), tensor count "
      "and metadata keys. Exits 1 if the file is not a valid pack.");
  cmd->add_option("FILE", options->path, "Pack file (.sluice)")->required();
  cmd->add_flag("--verify", options->verify,
                "Also read every frame and check its checksum (and decode zstd frames); reports each bad frame "
                "as extent, frame and file offset, and exits 1 if any is bad");
  cmd->callback([options] {
    const int rc = pack::inspect_pack(options->path, options->verify, std::cout);
    // CLI11_PARSE in main turns this into the process exit code.
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace sluice
