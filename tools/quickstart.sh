#!/usr/bin/env bash
# The README's first command: install dependencies, build, and run the main job on its default
# input. Until a model runs, the main job is `sluice demo` (a synthetic multi-GiB pack streamed
# through the prefetcher with a synthetic compute stage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
echo "== building sluice" >&2
bash tools/build.sh
echo "== running: build/tools/sluice demo $*" >&2
exec build/tools/sluice demo "$@"
