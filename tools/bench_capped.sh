#!/usr/bin/env bash
# bench_capped.sh: sluice vs llama.cpp on a model larger than the memory they are given (issue 4's
# figures). Each command runs under tools/memcap.sh with a cold page cache.
#   tools/bench_capped.sh PACK GGUF [CAP_GB...]     (default caps: 4 6)
# For each cap: `sluice bench` on the pack (default budget: 80% of what the cgroup allows), batch 1
# and 16, with the file's raw O_DIRECT speed measured first in the same process; then llama.cpp
# (llama-cpp-python, default mmap) decoding greedy tokens on the GGUF the pack was converted from,
# stopped after LLAMA_TIMEOUT seconds (default 420) with whatever tokens it finished: with its
# defaults, then without CPU weight repacking. SKIP_SLUICE=1 / SKIP_DEFAULT=1 leave runs out.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pack="$1"; gguf="$2"; shift 2
caps=("$@"); [[ ${#caps[@]} -gt 0 ]] || caps=(4 6)
sluice="${SLUICE:-$here/../build/tools/sluice}"
python="${PYTHON:-$HOME/.cache/sluice/venv/bin/python}"
timeout_s="${LLAMA_TIMEOUT:-420}"
echo "== $(date -u) $(nproc) cores; pack $(du -h "$pack" | cut -f1), gguf $(du -h "$gguf" | cut -f1)"
for cap in "${caps[@]}"; do
  if [[ -z "${SKIP_SLUICE:-}" ]]; then
    echo "== sluice, ${cap} GiB cap"
    "$here/memcap.sh" --drop-caches "${cap}G" -- "$sluice" bench -m "$pack" -p 8 -n 8 -b 1,16 -r 1 --raw-read
  fi
  if [[ -z "${SKIP_DEFAULT:-}" ]]; then
    echo "== llama.cpp (defaults: mmap + CPU weight repacking), ${cap} GiB cap (stopped after ${timeout_s} s)"
    "$here/memcap.sh" --drop-caches "${cap}G" -- timeout "$timeout_s" "$python" "$here/llamacpp_decode.py" "$gguf" -n 4
  fi
  # Repacking copies the weights into anonymous memory, which a cap below the model's size
  # OOM-kills; without it llama.cpp reads the model through its mmap (the page cache).
  echo "== llama.cpp (mmap, --no-repack), ${cap} GiB cap (stopped after ${timeout_s} s)"
  "$here/memcap.sh" --drop-caches "${cap}G" -- timeout "$timeout_s" "$python" "$here/llamacpp_decode.py" "$gguf" -n 4 --no-repack
done
