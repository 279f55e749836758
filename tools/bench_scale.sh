#!/usr/bin/env bash
# bench_scale.sh: the full-scale figures (README "100B in 20 GiB"): for one GGUF and each cap,
# sluice and llama.cpp at batch 1 under tools/memcap.sh with a cold page cache.
#   tools/bench_scale.sh MODEL.gguf LABEL OUT_DIR CAP_GB [CAP_GB...]
# Per cap: `sluice bench -p 8 -n 4 -b 1 --raw-read` (the file's raw O_DIRECT speed read before
# and after, in the same process) and llama.cpp (llama-cpp-python, mmap, no CPU weight repacking:
# its best configuration under a cap) decoding greedy tokens until LLAMA_TIMEOUT seconds
# (default 420). Logs, memcap reports and bench JSON go to OUT_DIR; one CSV row per run is
# appended to OUT_DIR/results.csv (model,cap_gib,engine,s_per_token,disk_bound_s,note), the
# input of tools/plot_scale.py. SKIP_LLAMA=1 / SKIP_SLUICE=1 leave runs out; LLAMA_TOKENS (3).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
model="$1"; label="$2"; out="$3"; shift 3
sluice="${SLUICE:-$here/../build/tools/sluice}"
python="${PYTHON:-$HOME/.cache/sluice/venv/bin/python}"
timeout_s="${LLAMA_TIMEOUT:-420}"
mkdir -p "$out"
csv="$out/results.csv"
[[ -f "$csv" ]] || echo "model,cap_gib,engine,s_per_token,disk_bound_s,note" > "$csv"
echo "== $(date -u) $(nproc) cores; $model $(du -h "$model" | cut -f1); free disk $(df -h --output=avail "$(dirname "$model")" | tail -1)"
for cap in "$@"; do
  tag="${label}_${cap}g"
  if [[ -z "${SKIP_SLUICE:-}" ]]; then
    echo "== sluice, ${cap} GiB cap"
    "$here/memcap.sh" --report "$out/$tag.sluice.mem.json" --drop-caches "${cap}G" -- \
      "$sluice" bench -m "$model" -p 8 -n 4 -b 1 -r 1 --raw-read --json "$out/$tag.sluice.json" 2>&1 | tee "$out/$tag.sluice.log"
    python3 - "$out/$tag.sluice.json" "$out/$tag.sluice.mem.json" "$label" "$cap" >> "$csv" <<'PY'
import json, sys
r, m = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
tg = next(t for t in r["tests"] if t["test"] == "tg")
bound = tg["streamed_bytes_per_pass"] / (r["raw_gbps_before"] * 1e9)
after = tg["streamed_bytes_per_pass"] / (r["raw_gbps_after"] * 1e9)
note = (f"raw {r['raw_gbps_before']:.2f}/{r['raw_gbps_after']:.2f} GB/s before/after; bound after {after:.2f} s; "
        f"ttft {tg['open_s'] + tg['first_prompt_s']:.1f} s; peak {m['peak_bytes'] / 2**30:.1f} GiB; oom {m['oom_kills']}")
print(f"{sys.argv[3]},{sys.argv[4]},sluice,{tg['s_per_pass']:.3f},{bound:.3f},\"{note}\"")
PY
  fi
  if [[ -z "${SKIP_LLAMA:-}" ]]; then
    echo "== llama.cpp (mmap, --no-repack), ${cap} GiB cap (stopped after ${timeout_s} s)"
    start=$(date +%s.%N)
    "$here/memcap.sh" --report "$out/$tag.llama.mem.json" --drop-caches "${cap}G" -- \
      timeout "$timeout_s" "$python" "$here/llamacpp_decode.py" "$model" -n "${LLAMA_TOKENS:-3}" --no-repack 2>&1 | tee "$out/$tag.llama.log"
    end=$(date +%s.%N)
    python3 - "$out/$tag.llama.log" "$out/$tag.llama.mem.json" "$label" "$cap" "$start" "$end" >> "$csv" <<'PY'
import json, re, sys
log = open(sys.argv[1]).read()
m = json.load(open(sys.argv[2]))
tokens = [float(x) for x in re.findall(r"token \d+: ([0-9.]+) s", log)]
peak = f"peak {m['peak_bytes'] / 2**30:.1f} GiB; oom {m['oom_kills']}"
load = re.search(r"load ([0-9.]+) s, prompt (\d+) tokens ([0-9.]+) s", log)
if tokens:
    note = f"{len(tokens)} tokens; {peak}"
    print(f"{sys.argv[3]},{sys.argv[4]},llama.cpp,{sum(tokens) / len(tokens):.3f},,\"{note}\"")
else:
    # Not one token before the timeout: the time it ran is a lower bound on its first token.
    ran = float(sys.argv[6]) - float(sys.argv[5])
    stage = f"prompt done in {load.group(3)} s" if load else "still loading/prompting"
    print(f"{sys.argv[3]},{sys.argv[4]},llama.cpp,{ran:.1f},,\"timed out before its first generated token ({stage}); {peak}\"")
PY
  fi
done
