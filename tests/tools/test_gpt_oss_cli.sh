#!/usr/bin/env bash
# gpt-oss end to end (`sluice synth --arch gpt-oss`, then eval and run):
#   - a small gpt-oss with MXFP4 experts, a skewed router and a sliding window shorter than the
#     prompt runs in RAM, streamed with its experts read one by one (--stream on, and in passes
#     of 3 tokens), and with --experts whole: the float32 logits and the JSON identical; the
#     same weights with a window longer than the prompt give other logits;
#     `sluice run` generates text and reports expert reads;
#   - the named real shapes gpt-oss-120b and gpt-oss-20b with --no-data (a few MB on disk): the
#     parameter counts and sizes of the released models' layout, and a plan under 16 GiB;
#   - synth refuses gpt-oss without experts and with a tied head, naming the flag.
# Usage: test_gpt_oss_cli.sh SLUICE
set -uo pipefail
sluice="$1"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT

common=(-p "hello world, once upon a time there was a little dog who ran" --logits-rows 64 --greedy 8 -c 128 -t 1 --disk-gbps 2)
eval_to() {  # NAME ARGS...: JSON to $work/NAME.json, logits to $work/NAME.f32, stderr to $work/NAME.err
  local name="$1"; shift
  "$sluice" eval -m "$work/g.gguf" "${common[@]}" --logits-out "$work/$name.f32" "$@" > "$work/$name.json" 2> "$work/$name.err" \
    || fail "eval $name: $(cat "$work/$name.err")"
}
same_as_ram() {  # NAME
  cmp -s "$work/ram.f32" "$work/$1.f32" || fail "logits of $1 differ from the in-RAM ones"
  cmp -s "$work/ram.json" "$work/$1.json" || fail "JSON of $1 differs: $(cat "$work/$1.json")"
}

"$sluice" synth "$work/g.gguf" --arch gpt-oss --vocab-size 4000 --embd 256 --layers 4 --heads 4 --kv-heads 2 \
  --head-dim 64 --experts 16 --experts-used 4 --expert-ff 256 --router-skew 1 --sliding-window 8 --type MXFP4 \
  > "$work/synth.out" || fail "synth gpt-oss"
grep -qF "gpt-oss MXFP4, embd 256, 4 layers, 4 heads / 2 kv" "$work/synth.out" || fail "synth: $(cat "$work/synth.out")"
grep -qF "16 experts (4 per token) of ff 256" "$work/synth.out" || fail "synth did not report the experts: $(cat "$work/synth.out")"

eval_to ram
grep -qF "in RAM (gguf, memory-mapped)" "$work/ram.err" || fail "not in RAM: $(cat "$work/ram.err")"
grep -q '"greedy": *\[[0-9]' "$work/ram.json" || fail "no greedy ids: $(cat "$work/ram.json")"
eval_to on --stream on
same_as_ram on
grep -q "^experts: hit rate .* uses, [1-9][0-9]* read (" "$work/on.err" || fail "no expert reads reported: $(cat "$work/on.err")"
eval_to small --stream on --pass-tokens 3
same_as_ram small
eval_to whole --stream on --experts whole
same_as_ram whole

# The window matters: the same weights with a window longer than the prompt give other logits.
"$sluice" synth "$work/wide.gguf" --arch gpt-oss --vocab-size 4000 --embd 256 --layers 4 --heads 4 --kv-heads 2 \
  --head-dim 64 --experts 16 --experts-used 4 --expert-ff 256 --router-skew 1 --sliding-window 1000 --type MXFP4 \
  > /dev/null || fail "synth gpt-oss, wide window"
"$sluice" eval -m "$work/wide.gguf" "${common[@]}" --logits-out "$work/wide.f32" > /dev/null 2>&1 || fail "eval wide window"
! cmp -s "$work/ram.f32" "$work/wide.f32" || fail "a window of 8 and of 1000 give the same logits over a longer prompt"

"$sluice" run -m "$work/g.gguf" -p "hello" -n 12 -t 1 --disk-gbps 2 > "$work/run.out" 2> "$work/run.err" \
  || fail "run: $(cat "$work/run.err")"
grep -q "generation 12 tokens" "$work/run.err" || fail "run did not generate 12 tokens: $(cat "$work/run.err")"
"$sluice" run -m "$work/g.gguf" --stream on -p "hello" -n 4 -t 1 --disk-gbps 2 > /dev/null 2> "$work/run-on.err" \
  || fail "run --stream on: $(cat "$work/run-on.err")"
grep -q "^experts: hit rate .* uses, [1-9][0-9]* read (" "$work/run-on.err" || fail "run: no expert reads: $(cat "$work/run-on.err")"

# The real shapes, header only: 116.8B and 20.9B parameters (the released models: 117B and 21B).
"$sluice" synth "$work/g120.gguf" --shape gpt-oss-120b --type MXFP4 --no-data > "$work/g120.out" || fail "synth gpt-oss-120b"
grep -qF "116,829,156,672 parameters, 63,379,045,664 bytes (59.03 GiB)" "$work/g120.out" || fail "gpt-oss-120b: $(cat "$work/g120.out")"
grep -qF "gpt-oss MXFP4, embd 2880, 36 layers, 64 heads / 8 kv, ff 2880, 128 experts (4 per token) of ff 2880" \
  "$work/g120.out" || fail "gpt-oss-120b shape: $(cat "$work/g120.out")"
[[ $(du -k "$work/g120.gguf" | cut -f1) -lt 65536 ]] || fail "--no-data wrote the tensor bytes"
"$sluice" synth "$work/g20.gguf" --shape gpt-oss-20b --type MXFP4 --no-data > "$work/g20.out" || fail "synth gpt-oss-20b"
grep -qF "20,914,757,184 parameters" "$work/g20.out" || fail "gpt-oss-20b: $(cat "$work/g20.out")"
"$sluice" run -m "$work/g120.gguf" --plan-only --mem-budget 16GiB -c 4096 > "$work/g120.plan" 2>&1 \
  || fail "gpt-oss-120b --plan-only: $(cat "$work/g120.plan")"
grep -q "^expert cache .* slots per layer ([0-9]* in all) of 128 experts" "$work/g120.plan" || fail "gpt-oss-120b plan: $(cat "$work/g120.plan")"

rc=0; "$sluice" synth "$work/x.gguf" --arch gpt-oss --type MXFP4 > /dev/null 2> "$work/noexp.err" || rc=$?
[[ $rc != 0 ]] && grep -qF -- "--arch gpt-oss needs --experts N" "$work/noexp.err" || fail "gpt-oss without experts: $(cat "$work/noexp.err")"
rc=0; "$sluice" synth "$work/x.gguf" --arch gpt-oss --experts 4 --experts-used 2 --tied > /dev/null 2> "$work/tied.err" || rc=$?
[[ $rc != 0 ]] && grep -qF -- "--tied" "$work/tied.err" || fail "gpt-oss --tied: $(cat "$work/tied.err")"
[[ ! -e "$work/x.gguf" ]] || fail "a refused synth wrote its output"
echo "OK"
