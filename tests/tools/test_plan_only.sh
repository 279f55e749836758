#!/usr/bin/env bash
# --plan-only through run, batch, bench and perplexity: the plan table on stdout, exit 0, no token generated,
# no input or output of a batch touched, the disk not measured; an impossible budget exits 1
# with the planner's minimum. Then a 100B-shape model written with no tensor data (`synth
# --no-data`: 57 GB apparent, a few MB on disk) planned at batch 64 x 2048: the KV cache spills,
# and a spill directory too small for the spill file is named in the table with the bytes needed
# and free (a 1 MiB tmpfs; needs root, that part is skipped otherwise).
set -euo pipefail
sluice="$1"
work=$(mktemp -d)
small="$work/small"
mkdir "$small"
cleanup() { umount "$small" 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$sluice" synth "$work/m.gguf" --layers 2 --vocab-size 512 > /dev/null

# run: the table, nothing generated (the prompt is never echoed, no generation summary); without -c the
# context is what the prompt and -n need, rounded up to 256.
rc=0; "$sluice" run -m "$work/m.gguf" --plan-only -p "Once upon a time" -n 8 --stream on > "$work/run.out" 2> "$work/run.err" || rc=$?
[[ $rc == 0 ]] || { cat "$work/run.err"; fail "run --plan-only exited $rc"; }
grep -q "^plan for $work/m.gguf (.* of weights): 1 sequences x 256 context, 512 tokens per pass" "$work/run.out" \
  || { cat "$work/run.out"; fail "run: no plan header"; }
grep -q "^memory plan" "$work/run.out" || { cat "$work/run.out"; fail "run: no plan table"; }
grep -q "^ring .* slots x " "$work/run.out" || { cat "$work/run.out"; fail "run --stream on: no ring in the plan"; }
grep -q "give --disk-gbps (--plan-only reads no weight" "$work/run.out" || { cat "$work/run.out"; fail "run: the disk was measured?"; }
! grep -q "Once upon" "$work/run.out" || fail "run --plan-only echoed the prompt (it generated)"
! grep -q "sluice run: prompt\|tok/s" "$work/run.err" || { cat "$work/run.err"; fail "run --plan-only generated tokens"; }

# A model that fits: the plan says it would be memory-mapped.
"$sluice" run -m "$work/m.gguf" --plan-only --parallel 4 -c 256 > "$work/ram.out" 2> "$work/ram.err" || { cat "$work/ram.err"; fail "run in RAM"; }
grep -q "4 sequences x 256 context" "$work/ram.out" || { cat "$work/ram.out"; fail "run --parallel 4: wrong header"; }
grep -q "would be memory-mapped whole" "$work/ram.out" || { cat "$work/ram.out"; fail "run: no in-RAM note"; }

# batch: no -i / -o needed, and none read or written.
rc=0; "$sluice" batch -m "$work/m.gguf" --plan-only -b 16 -c 512 -o "$work/out.jsonl" > "$work/batch.out" 2> "$work/batch.err" || rc=$?
[[ $rc == 0 ]] || { cat "$work/batch.err"; fail "batch --plan-only exited $rc"; }
grep -q "16 sequences x 512 context" "$work/batch.out" || { cat "$work/batch.out"; fail "batch: no plan"; }
[[ ! -e "$work/out.jsonl" && ! -e "$work/out.jsonl.lock" && ! -e "$work/out.jsonl.journal" ]] || fail "batch --plan-only touched its output"

# bench: one plan per batch size, no benchmark table.
rc=0; "$sluice" bench -m "$work/m.gguf" --plan-only -b 1,8 -p 16 -n 4 > "$work/bench.out" 2> "$work/bench.err" || rc=$?
[[ $rc == 0 ]] || { cat "$work/bench.err"; fail "bench --plan-only exited $rc"; }
[[ $(grep -c "^plan for " "$work/bench.out") == 2 ]] || { cat "$work/bench.out"; fail "bench: want a plan per batch size"; }
grep -q "8 sequences x 21 context" "$work/bench.out" || { cat "$work/bench.out"; fail "bench -b 8: wrong plan"; }
! grep -q "t/s" "$work/bench.out" || { cat "$work/bench.out"; fail "bench --plan-only ran the benchmark"; }

# perplexity: the plan of its chunk size, the text not scored.
echo "Once upon a time" > "$work/text.txt"
rc=0; "$sluice" perplexity -m "$work/m.gguf" -f "$work/text.txt" -c 64 --plan-only > "$work/ppl.out" 2> "$work/ppl.err" || rc=$?
[[ $rc == 0 ]] || { cat "$work/ppl.err"; fail "perplexity --plan-only exited $rc"; }
grep -q "1 sequences x 64 context" "$work/ppl.out" || { cat "$work/ppl.out"; fail "perplexity: no plan"; }
! grep -q "perplexity:" "$work/ppl.err" || { cat "$work/ppl.err"; fail "perplexity --plan-only tokenized or scored"; }

# Impossible: exit 1, the planner's error with the minimum.
rc=0; "$sluice" run -m "$work/m.gguf" --plan-only --stream on --mem-budget 64KiB > "$work/tiny.out" 2> "$work/tiny.err" || rc=$?
[[ $rc == 1 ]] || { cat "$work/tiny.out" "$work/tiny.err"; fail "an impossible plan exited $rc, want 1"; }
grep -q "memory budget 64.0 KiB is too small for .*: the minimum is " "$work/tiny.err" || { cat "$work/tiny.err"; fail "no minimum"; }
! grep -q "memory plan" "$work/tiny.out" || fail "an impossible plan printed a table"

# The 100B shape, no data.
big="$work/100b.gguf"
"$sluice" synth "$big" --no-data --embd 10240 --layers 80 --heads 80 --kv-heads 8 --ff 32768 --vocab-size 128256 \
  --embedding-type Q4_0 > /dev/null
apparent=$(stat -c %s "$big")
(( apparent > 56000000000 )) || fail "the 100B no-data model is $apparent bytes, want ~57 GB apparent"
(( $(du -k "$big" | cut -f1) < 65536 )) || fail "the no-data model takes $(du -k "$big" | cut -f1) KiB of disk"
avail_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
if (( avail_kib < 8 * 1024 * 1024 )); then
  echo "note: less than 8 GiB available; the 100B plans are skipped"
  echo "plan only cli ok"
  exit 0
fi
plan100=(-m "$big" --plan-only --mem-budget 6GiB -c 2048 --parallel 64)
rc=0; "$sluice" run "${plan100[@]}" --kv-spill-dir "$work" > "$work/big.out" 2> "$work/big.err" || rc=$?
[[ $rc == 0 ]] || { cat "$work/big.err"; fail "100B --plan-only exited $rc"; }
grep -q "64 sequences x 2048 context" "$work/big.out" || { cat "$work/big.out"; fail "100B: no plan"; }
grep -q "spilled: 40.00 GiB on disk, 2 layers in RAM" "$work/big.out" || { cat "$work/big.out"; fail "100B x 64 x 2048: KV not spilled"; }
grep -q "^KV spill file  *40.00 GiB  *\(WARNING (below): \)\?in $work (.* free)" "$work/big.out" || { cat "$work/big.out"; fail "100B: no spill file row"; }

if mount -t tmpfs -o size=1m tmpfs "$small" 2> /dev/null; then
  rc=0; "$sluice" run "${plan100[@]}" --kv-spill-dir "$small" > "$work/short.out" 2> "$work/short.err" || rc=$?
  [[ $rc == 0 ]] || { cat "$work/short.err"; fail "short spill dir: exited $rc"; }
  grep -q "^KV spill file  *40.00 GiB  *WARNING (below): in $small (1.0 MiB free)" "$work/short.out" \
    || { cat "$work/short.out"; fail "short spill dir: no warning in the table"; }
  grep -q "^WARNING: the KV spill file needs 40.00 GiB at full context x sequences, and only 1.0 MiB is free in $small: .* once the sequences pass ~0 of 2048 positions each" \
    "$work/short.out" || { cat "$work/short.out"; fail "short spill dir: no warning naming it with the bytes"; }
else
  echo "note: cannot mount a tmpfs (needs root); the short spill directory part is skipped"
fi
echo "plan only cli ok"
