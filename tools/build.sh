#!/usr/bin/env bash
# Configures and builds sluice in ./build (Release). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$jobs" 2>&1 | grep -E "error|warning|Error" || true
test -x build/tools/sluice
