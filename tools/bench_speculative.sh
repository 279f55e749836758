#!/usr/bin/env bash
# Speculative decoding on a real pair (issue 16): the target streamed under a third of its size,
# cold cache, the same prompts with no speculation, with a draft model and with prompt lookup,
# at each batch size. Prints one line per run and writes the batch reports (JSON) to OUT_DIR.
#
#   tools/bench_speculative.sh SLUICE TARGET DRAFT PROMPTS.jsonl OUT_DIR [BATCHES] [MODES]
#
# BATCHES defaults to "1 8", MODES to "none draft lookup". The target's budget is a third of its
# file; with --draft the draft model's planned bytes (its row in --plan-only's table) are added,
# so the target gets the same third in every run. The raw O_DIRECT read speed of the target is
# measured before and after each run (dd iflag=direct): the disk changes from minute to minute.
set -euo pipefail
sluice=$1 target=$2 draft=$3 prompts=$4 out=$5
batches=${6:-"1 8"}
modes=${7:-"none draft lookup"}
ctx=${CTX:-512}
lookup_n=${LOOKUP_N:-3}
mkdir -p "$out"
size=$(stat -c %s "$target")
third=$((size / 3))

raw_gbps() {
  sync
  echo 3 > /proc/sys/vm/drop_caches
  dd if="$1" of=/dev/null bs=4M iflag=direct 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) t = $(i - 1); print $1 / t / 1e9 }'
}

# Bytes of the draft model's row in the target's plan (what its planner sets aside).
draft_bytes() {
  "$sluice" run -m "$target" --draft "$draft" -c "$ctx" --parallel "$1" --plan-only -p x 2>/dev/null |
    awk '/^draft model/ { v = $(NF - 5); u = $(NF - 4); } END {
      m = (u == "GiB") ? 1073741824 : (u == "MiB") ? 1048576 : (u == "KiB") ? 1024 : 1; printf "%d\n", v * m }'
}

for b in $batches; do
  for mode in $modes; do
    budget=$third
    args=()
    case $mode in
      none) ;;
      draft) reserve=$(draft_bytes "$b"); budget=$((third + reserve)); args=(--draft "$draft") ;;
      lookup) args=(--lookup "$lookup_n") ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    before=$(raw_gbps "$target")
    sync
    echo 3 > /proc/sys/vm/drop_caches
    rm -f "$out/out-$mode-b$b.jsonl" "$out/out-$mode-b$b.jsonl.journal"
    "$sluice" batch -m "$target" -i "$prompts" -o "$out/out-$mode-b$b.jsonl" -b "$b" -c "$ctx" --mem-budget "$budget" \
      --progress log --progress-interval 60 --report "$out/report-$mode-b$b.json" "${args[@]}" 2> "$out/log-$mode-b$b.txt"
    after=$(raw_gbps "$target")
    python3 - "$out/report-$mode-b$b.json" "$mode" "$b" "$budget" "$before" "$after" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
mode, b, budget, before, after = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
gen, secs = r["generated_tokens"], r["seconds"]
drafted, accepted = r.get("drafted_tokens", 0), r.get("accepted_tokens", 0)
print(f"batch {b} {mode:6s}: budget {budget / 2**20:.0f} MiB | {gen} generated in {secs:.1f} s = {gen / secs:.2f} tok/s | "
      f"{r['passes']} passes, {r.get('tokens_per_sequence_step', 1):.2f} tokens per sequence step | drafted {drafted}, "
      f"accepted {accepted} ({100 * accepted / drafted if drafted else 0:.1f}%) | raw read {before} -> {after} GB/s", flush=True)
EOF
  done
done
