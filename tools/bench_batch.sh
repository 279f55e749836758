#!/usr/bin/env bash
# bench_batch.sh: `sluice batch` throughput at several batch sizes on a pack under a memory cap,
# against the single-sequence `sluice run` rate, and a chart of it (issue 5's figure).
#   tools/bench_batch.sh PACK CAP OUTDIR [BATCHES...]      (default batches: 1 8 32)
# Each batch size B answers B requests (short prompts, 16 tokens each, greedy) under
# tools/memcap.sh CAP with a cold page cache; reports land in OUTDIR/report_bB.json and the chart
# in OUTDIR/batch_tps.svg.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pack="$1"; cap="$2"; outdir="$3"; shift 3
batches=("$@"); [[ ${#batches[@]} -gt 0 ]] || batches=(1 8 32)
sluice="${SLUICE:-$here/../build/tools/sluice}"
mkdir -p "$outdir"
words=(once upon a time there was a little girl named lily she loved to play in the park)
for b in "${batches[@]}"; do
  n=$(( b < 2 ? 2 : b ))
  input="$outdir/requests_b$b.jsonl"; : > "$input"
  for ((i = 0; i < n; i++)); do
    printf '{"custom_id": "r%d", "method": "POST", "url": "/v1/completions", "body": {"prompt": "%s %s %s", "max_tokens": 16, "temperature": 0}}\n' \
      "$i" "${words[i % 16]}" "${words[(i * 7 + 3) % 16]}" "${words[(i * 5 + 1) % 16]}" >> "$input"
  done
  rm -f "$outdir/out_b$b.jsonl"
  echo "== sluice batch, batch $b ($n requests), ${cap} cap"
  "$here/memcap.sh" --drop-caches "$cap" -- "$sluice" batch -m "$pack" -i "$input" -o "$outdir/out_b$b.jsonl" \
    --batch "$b" -c 64 --progress log --report "$outdir/report_b$b.json"
done
echo "== sluice run, one sequence, ${cap} cap"
"$here/memcap.sh" --drop-caches "$cap" -- "$sluice" run -m "$pack" -p "once upon a time" -n 16 --temp 0 -c 64 \
  2> "$outdir/run.err" > "$outdir/run.out"
cat "$outdir/run.err"
single=$(grep -o 'generation [0-9]* tokens at [0-9.]* tok/s' "$outdir/run.err" | grep -o '[0-9.]* tok/s' | cut -d' ' -f1)
python3 "$here/plot_batch.py" "$outdir/batch_tps.svg" "$single" "$outdir"/report_b*.json
