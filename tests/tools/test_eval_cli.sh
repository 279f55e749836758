#!/usr/bin/env bash
# `sluice eval` through a Session: a GGUF that fits runs memory-mapped, and the same GGUF with
# --stream on, under a --mem-budget it does not fit, and converted to a pack streams, each giving
# bit-identical float32 logits and the same JSON (tokens, greedy ids); stderr names the mode and,
# when streamed, prints the plan naming the model source. --tokenize-only reads no weights.
# Usage: test_eval_cli.sh SLUICE
set -uo pipefail
sluice="$1"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
m="$work/m.gguf"
# The model of test_gguf_run_cli.sh: ~30 MiB of Q8_0 blocks with the built-in vocabulary (no
# ../shared); a 90 MiB budget cannot hold it with room to spare, so it streams.
"$sluice" synth "$m" --vocab-size 4000 --embd 512 --layers 8 --ff 1536 --type Q8_0 > /dev/null || fail "synth"
common=(-p "hello world, once upon a time" --logits-rows 64 --greedy 8 -c 128 -t 1 --disk-gbps 2)

model="$m"
eval_to() {  # NAME ARGS...: JSON to $work/NAME.json, logits to $work/NAME.f32, stderr to $work/NAME.err
  local name="$1"; shift
  "$sluice" eval -m "$model" "${common[@]}" --logits-out "$work/$name.f32" "$@" > "$work/$name.json" 2> "$work/$name.err" \
    || fail "eval $name: $(cat "$work/$name.err")"
}

eval_to ram
grep -qF "in RAM (gguf, memory-mapped)" "$work/ram.err" || fail "the default budget did not keep it in RAM: $(cat "$work/ram.err")"
rows=$(sed -n 's/.*"logits_rows": *\([0-9]*\).*/\1/p' "$work/ram.json")
[ -n "$rows" ] && [ "$rows" -gt 1 ] || fail "logits_rows: $(cat "$work/ram.json")"
[ "$(stat -c %s "$work/ram.f32")" -eq $((rows * 4000 * 4)) ] || fail "logits file is not $rows x 4000 float32"
grep -q '"greedy": *\[[0-9]' "$work/ram.json" || fail "no greedy ids: $(cat "$work/ram.json")"

eval_to on --stream on
grep -qF "0 of 8 blocks resident" "$work/on.err" || fail "--stream on kept blocks resident: $(cat "$work/on.err")"
for word in "model source" "gguf (1 file), reads unverified" "streamed per pass" "passes"; do
  grep -qF "$word" "$work/on.err" || fail "'$word' not in the --stream on stderr: $(cat "$work/on.err")"
done
grep -q "in RAM" "$work/on.err" && fail "--stream on ran in RAM: $(cat "$work/on.err")"
cmp -s "$work/ram.f32" "$work/on.f32" || fail "--stream on logits differ from the in-RAM ones"
cmp -s "$work/ram.json" "$work/on.json" || fail "--stream on JSON differs: $(cat "$work/on.json") vs $(cat "$work/ram.json")"

eval_to budget --mem-budget 90MiB
grep -qF "streamed per pass" "$work/budget.err" || fail "not streamed under 90MiB: $(cat "$work/budget.err")"
cmp -s "$work/ram.f32" "$work/budget.f32" || fail "logits under --mem-budget 90MiB differ"
cmp -s "$work/ram.json" "$work/budget.json" || fail "JSON under --mem-budget 90MiB differs"

# Several passes per prompt: the logits rows are gathered across them.
eval_to small --stream on --pass-tokens 3
cmp -s "$work/ram.f32" "$work/small.f32" || fail "logits with --pass-tokens 3 differ"

"$sluice" convert "$m" "$work/m.sluice" > /dev/null 2>&1 || fail "convert"
model="$work/m.sluice"
eval_to pack --stream on
grep -qF "pack" "$work/pack.err" || fail "the pack's stderr does not name it: $(cat "$work/pack.err")"
cmp -s "$work/ram.f32" "$work/pack.f32" || fail "the pack's streamed logits differ from the GGUF's"
cmp -s "$work/ram.json" "$work/pack.json" || fail "the pack's JSON differs"

# --tokenize-only: the tokens of the full eval, and neither a plan nor a load.
"$sluice" eval -m "$m" -p "hello world, once upon a time" --tokenize-only > "$work/tok.json" 2> "$work/tok.err" \
  || fail "tokenize-only: $(cat "$work/tok.err")"
want=$(sed -n 's/.*"tokens": *\(\[[^]]*\]\).*/\1/p' "$work/ram.json")
got=$(sed -n 's/.*"tokens": *\(\[[^]]*\]\).*/\1/p' "$work/tok.json")
[ -n "$want" ] && [ "$want" = "$got" ] || fail "tokenize-only tokens '$got' vs '$want'"
[ -s "$work/tok.err" ] && fail "tokenize-only printed on stderr: $(cat "$work/tok.err")"

echo "PASS"
