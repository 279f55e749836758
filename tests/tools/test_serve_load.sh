#!/usr/bin/env bash
# `sluice serve` under load (issue 18's load test, bounded for CI): 32 clients x 8 requests at once
# against a model that streams (74 MB of blocks under a 110 MiB budget); every greedy answer must
# equal the same request answered alone by an in-RAM server with one KV slot, with no error.
# The speed goal (tokens/s at 32 clients >= 8x one client) is the benchmark's, not this test's:
#   tools/bench_serve_load.py SLUICE MODEL   (see its --help).
# Usage: test_serve_load.sh SLUICE PYTHON
set -euo pipefail
sluice="$1"; python="$2"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$sluice" synth --embd 1024 --layers 8 --heads 16 --kv-heads 8 --ff 4096 --vocab-size 2000 "$work/m.gguf" >/dev/null
"$python" "$here/../../tools/bench_serve_load.py" "$sluice" "$work/m.gguf" --mem-budget 110MiB --clients 32 --requests 8 \
  --max-tokens 8 --min-ratio 0 --workdir "$work/run"
