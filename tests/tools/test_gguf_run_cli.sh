#!/usr/bin/env bash
# `sluice run` on a GGUF: memory-mapped in RAM when it fits, streamed through the planner under a
# --mem-budget it does not fit (or with --stream on), with the same text at temperature 0; the
# plan table names the source and says reads are unverified until `sluice index` writes the
# sidecar, verified by it after.
# Usage: test_gguf_run_cli.sh SLUICE
set -uo pipefail
sluice="$1"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
m="$work/m.gguf"
# ~30 MiB of Q8_0 blocks, the built-in vocabulary (no ../shared): a 90 MiB budget (64 MiB of it
# the planner's overhead allowance) cannot hold it with room to spare, so it streams.
"$sluice" synth "$m" --vocab-size 4000 --embd 512 --layers 8 --ff 1536 --type Q8_0 > /dev/null || fail "synth"
common=(-m "$m" -p "hello world" -n 24 --temp 0 -c 256 -t 1 --disk-gbps 2)

"$sluice" run "${common[@]}" > "$work/ram.txt" 2> "$work/ram.err" || fail "in-RAM run: $(cat "$work/ram.err")"
grep -q "in RAM (gguf, memory-mapped)" "$work/ram.err" || fail "the default budget did not keep it in RAM: $(cat "$work/ram.err")"

"$sluice" run "${common[@]}" --mem-budget 90MiB > "$work/s.txt" 2> "$work/s.err" || fail "streamed run: $(cat "$work/s.err")"
cmp -s "$work/ram.txt" "$work/s.txt" || fail "streamed text differs: $(cat "$work/s.txt") vs $(cat "$work/ram.txt")"
for word in "model source" "gguf (1 file), reads unverified (no sidecar: run \`sluice index $m\`)" "streamed per pass" "passes"; do
  grep -qF "$word" "$work/s.err" || fail "'$word' not in: $(cat "$work/s.err")"
done
grep -q "in RAM" "$work/s.err" && fail "ran in RAM under a budget it does not fit: $(cat "$work/s.err")"

"$sluice" run "${common[@]}" --stream on > "$work/on.txt" 2> "$work/on.err" || fail "--stream on: $(cat "$work/on.err")"
cmp -s "$work/ram.txt" "$work/on.txt" || fail "--stream on text differs"
grep -qF "0 of 8 blocks resident" "$work/on.err" || fail "--stream on kept blocks resident: $(cat "$work/on.err")"

"$sluice" index "$m" > /dev/null 2>&1 || fail "index"
"$sluice" run "${common[@]}" --mem-budget 90MiB > "$work/v.txt" 2> "$work/v.err" || fail "verified run: $(cat "$work/v.err")"
cmp -s "$work/ram.txt" "$work/v.txt" || fail "verified streamed text differs"
grep -qF "gguf (1 file), reads verified by $m.sluice-index" "$work/v.err" || fail "not verified: $(cat "$work/v.err")"

# bench streamed with --raw-read --json: the disk's speed read before and after, the time to first
# token, and per test the passes and bytes that the report's ratios are made of.
"$sluice" bench -m "$m" -p 4 -n 2 -r 1 -t 1 --mem-budget 90MiB --raw-read --json "$work/b.json" > "$work/b.txt" 2> "$work/b.err" ||
  fail "bench: $(cat "$work/b.err")"
for word in "before the tests" "after the tests" "time to first token" "disk bound of batch 1" \
  "of buffers reused in order, as the ring" "disk bound of batch 1 at that speed"; do
  grep -qF "$word" "$work/b.err" || fail "'$word' not in: $(cat "$work/b.err")"
done
python3 - "$work/b.json" <<'PY' || fail "bench --json: $(cat "$work/b.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["raw_gbps_before"] > 0 and r["raw_gbps_after"] > 0 and r["raw_gbps_ring_pool"] > 0, r
assert [t["test"] for t in r["tests"]] == ["pp", "tg"], r
for t in r["tests"]:
    assert t["passes"] > 0 and t["bytes_read"] > 0 and t["streamed_bytes_per_pass"] > 0 and t["wall_s"] > 0, t
    assert t["open_s"] > 0 and t["first_prompt_s"] > 0 and t["resident_blocks"] < t["blocks"] == 8, t
assert r["tests"][1]["passes"] == 2, r
PY

echo "PASS"
