#!/usr/bin/env bash
# Blocks streamed in pieces (--ring-piece) end to end, `sluice synth` then `sluice eval`:
#   - a llama of 8 blocks of ~14 MiB (a ring of 4 whole ones would hold 55 MiB) streams in pieces
#     by default: the plan's ring row says so and holds ~32 MiB; the float32 logits and the JSON are
#     identical to the in-RAM run's, and to --ring-piece 0's (whole blocks) and 1MiB's;
#   - under a budget where whole blocks leave most of the model streaming, pieces keep more resident;
#   - a bad --ring-piece is refused naming the flag.
# Usage: test_ring_piece_cli.sh SLUICE
set -uo pipefail
sluice="$1"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT

common=(-p "hello world, once upon a time" --logits-rows 64 --greedy 8 -c 128 -t 1 --disk-gbps 2)
eval_to() {  # NAME ARGS...: JSON to $work/NAME.json, logits to $work/NAME.f32, stderr to $work/NAME.err
  local name="$1"; shift
  "$sluice" eval -m "$work/m.gguf" "${common[@]}" --logits-out "$work/$name.f32" "$@" > "$work/$name.json" 2> "$work/$name.err" \
    || fail "eval $name: $(cat "$work/$name.err")"
}
same_as_ram() {  # NAME
  cmp -s "$work/ram.f32" "$work/$1.f32" || fail "logits of $1 differ from the in-RAM ones"
  cmp -s "$work/ram.json" "$work/$1.json" || fail "JSON of $1 differs: $(cat "$work/$1.json")"
}
resident() {  # NAME: the plan's count of resident blocks
  grep -o "[0-9]* of 8 blocks" "$work/$1.err" | head -1 | cut -d' ' -f1
}

"$sluice" synth "$work/m.gguf" --arch llama --vocab-size 2000 --embd 1024 --layers 8 --heads 8 --kv-heads 8 --ff 2816 \
  --type Q8_0 > /dev/null || fail "synth"

eval_to ram
grep -qF "in RAM" "$work/ram.err" || fail "not in RAM: $(cat "$work/ram.err")"
eval_to pieces --stream on
grep -q "^ring .*8 slots x 4.0 MiB (blocks stream in pieces)" "$work/pieces.err" || fail "no ring of pieces: $(cat "$work/pieces.err")"
same_as_ram pieces
eval_to small --stream on --ring-piece 1MiB
grep -q "^ring .* x 1.0 MiB (blocks stream in pieces)" "$work/small.err" || fail "no ring of 1 MiB pieces: $(cat "$work/small.err")"
same_as_ram small
eval_to whole --stream on --ring-piece 0
grep -q "^ring .*4 slots x 1[0-9].[0-9] MiB *$" "$work/whole.err" || fail "--ring-piece 0 did not ring whole blocks: $(cat "$work/whole.err")"
same_as_ram whole

# A budget that holds two whole blocks besides a ring of four (55 MiB): pieces (32 MiB) hold one more.
eval_to whole-budget --mem-budget 180MiB --ring-piece 0
eval_to pieces-budget --mem-budget 180MiB
same_as_ram whole-budget
same_as_ram pieces-budget
w=$(resident whole-budget) p=$(resident pieces-budget)
[[ -n "$w" && -n "$p" && "$w" -lt 8 && "$p" -gt "$w" ]] || fail "resident blocks: $w whole, $p in pieces: $(cat "$work/pieces-budget.err")"

rc=0; "$sluice" eval -m "$work/m.gguf" "${common[@]}" --ring-piece lots > /dev/null 2> "$work/bad.err" || rc=$?
[[ $rc != 0 ]] && grep -qF -- "--ring-piece" "$work/bad.err" || fail "bad --ring-piece: rc $rc, $(cat "$work/bad.err")"
echo "ring piece CLI: OK"
