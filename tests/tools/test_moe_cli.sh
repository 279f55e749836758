#!/usr/bin/env bash
# Mixtures of experts end to end (`sluice synth` then `sluice eval`):
#   - a qwen3moe and a Mixtral (llama with experts) model run in RAM, streamed with --stream on,
#     streamed under a --mem-budget they do not fit, in passes of 3 tokens (experts read one by
#     one: the plan's expert cache row and the run's experts line), under a budget only experts
#     apart fit, with --experts apart (streams though it fits), with --experts whole or --stream off
#     (every block read whole, all its experts; no expert cache), converted to a pack (expert
#     extents: experts one by one; --experts whole at convert: whole blocks, a note): the float32
#     logits and the JSON identical; `sluice run` and `sluice bench --json`
#     report expert reads;
#   - the named real shapes qwen3-30b-a3b and mixtral-8x7b with --no-data: the parameter counts of
#     the real models, and a plan whose ring slots hold a whole block of experts;
#   - mixtral-8x7b into a /dev/shm too small for it is refused, after the size is printed;
#   - synth refuses experts on an architecture without them, qwen3moe without --experts, and a
#     named shape written as another architecture, naming the flag.
# Usage: test_moe_cli.sh SLUICE
set -uo pipefail
sluice="$1"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT

common=(-p "hello world, once upon a time" --logits-rows 64 --greedy 8 -c 128 -t 1 --disk-gbps 2)
eval_to() {  # MODEL NAME ARGS...: JSON to $work/NAME.json, logits to $work/NAME.f32, stderr to $work/NAME.err
  local model="$1" name="$2"; shift 2
  "$sluice" eval -m "$model" "${common[@]}" --logits-out "$work/$name.f32" "$@" > "$work/$name.json" 2> "$work/$name.err" \
    || fail "eval $name: $(cat "$work/$name.err")"
}
experts_apart() {  # NAME: the plan has an expert cache, the run read experts one by one
  grep -q "^expert cache .* slots per layer ([0-9]* in all) of" "$work/$1.err" || fail "$1: no expert cache row in the plan: $(cat "$work/$1.err")"
  grep -q "^experts: hit rate .* uses, [1-9][0-9]* read (" "$work/$1.err" || fail "$1: no expert reads reported: $(cat "$work/$1.err")"
}
experts_whole() {  # NAME: whole blocks, no expert cache
  ! grep -q "^expert cache\|^experts: hit rate" "$work/$1.err" || fail "$1: experts read apart: $(cat "$work/$1.err")"
}
same_as_ram() {  # PREFIX NAME
  cmp -s "$work/$1-ram.f32" "$work/$1-$2.f32" || fail "$1: logits of $2 differ from the in-RAM ones"
  cmp -s "$work/$1-ram.json" "$work/$1-$2.json" || fail "$1: JSON of $2 differs: $(cat "$work/$1-$2.json")"
}

# ~23 MiB each of Q8_0; a 90 MiB budget cannot hold one with room to spare, so it streams.
"$sluice" synth "$work/qwen.gguf" --arch qwen3moe --vocab-size 4000 --embd 256 --layers 6 --heads 4 --kv-heads 2 \
  --head-dim 64 --experts 16 --experts-used 4 --expert-ff 256 --router-skew 1 --type Q8_0 > "$work/synth.out" \
  || fail "synth qwen3moe"
grep -qF "16 experts (4 per token) of ff 256" "$work/synth.out" || fail "synth did not report the experts: $(cat "$work/synth.out")"
"$sluice" synth "$work/mixtral.gguf" --arch llama --vocab-size 4000 --embd 256 --layers 6 --heads 8 --kv-heads 4 \
  --experts 8 --experts-used 2 --ff 512 --type Q8_0 > /dev/null || fail "synth mixtral"

for name in qwen mixtral; do
  m="$work/$name.gguf"
  eval_to "$m" "$name-ram"
  grep -qF "in RAM (gguf, memory-mapped)" "$work/$name-ram.err" || fail "$name: not in RAM: $(cat "$work/$name-ram.err")"
  grep -q '"greedy": *\[[0-9]' "$work/$name-ram.json" || fail "$name: no greedy ids: $(cat "$work/$name-ram.json")"
  eval_to "$m" "$name-on" --stream on
  grep -qF "0 of 6 blocks resident" "$work/$name-on.err" || fail "$name: --stream on kept blocks: $(cat "$work/$name-on.err")"
  same_as_ram "$name" on
  experts_apart "$name-on"
  eval_to "$m" "$name-budget" --mem-budget 90MiB
  grep -qF "streamed per pass" "$work/$name-budget.err" || fail "$name: not streamed under 90MiB: $(cat "$work/$name-budget.err")"
  same_as_ram "$name" budget
  experts_apart "$name-budget"
  # Guessed experts (the next layer's router run early) change nothing and are reported.
  eval_to "$m" "$name-guess" --experts apart --expert-guess on  # blocks resident: every layer guesses the next
  same_as_ram "$name" guess
  grep -q "^experts: .* [1-9][0-9]* guessed ahead, [0-9]* of them used" "$work/$name-guess.err" \
    || fail "$name: no guesses reported: $(cat "$work/$name-guess.err")"
  grep -q "^experts: .* 0 guessed ahead" "$work/$name-on.err" || fail "$name: guesses made by default: $(cat "$work/$name-on.err")"
  eval_to "$m" "$name-small" --stream on --pass-tokens 3
  same_as_ram "$name" small
  experts_apart "$name-small"
  # Below what whole blocks need (two ring slots of a block with all its experts): refused whole,
  # run with experts apart, whose ring slots hold the dense tensors only.
  rc=0; "$sluice" eval -m "$m" "${common[@]}" --stream on --mem-budget 72MiB --experts whole > /dev/null 2> "$work/$name-tight-whole.err" || rc=$?
  [[ $rc != 0 ]] || fail "$name: --experts whole ran under 72MiB (the test's budget no longer separates the modes)"
  grep -qF "too small" "$work/$name-tight-whole.err" || fail "$name: whole refusal: $(cat "$work/$name-tight-whole.err")"
  eval_to "$m" "$name-tight" --stream on --mem-budget 72MiB
  same_as_ram "$name" tight
  experts_apart "$name-tight"
  eval_to "$m" "$name-apart" --experts apart
  grep -qF "streamed per pass" "$work/$name-apart.err" || fail "$name: --experts apart ran in RAM: $(cat "$work/$name-apart.err")"
  same_as_ram "$name" apart
  experts_apart "$name-apart"
  eval_to "$m" "$name-whole" --stream on --experts whole
  same_as_ram "$name" whole
  experts_whole "$name-whole"
  eval_to "$m" "$name-off" --stream off --experts apart
  same_as_ram "$name" off
  experts_whole "$name-off"
  "$sluice" run -m "$m" --stream on -p "hello" -n 4 -t 1 --disk-gbps 2 > /dev/null 2> "$work/$name-run.err" \
    || fail "$name: run --stream on: $(cat "$work/$name-run.err")"
  experts_apart "$name-run"
  # Converted (expert extents by default): the pack reads its experts one by one as the GGUF does,
  # and refuses --experts whole; converted with --experts whole it reads whole blocks and says so.
  "$sluice" convert "$m" "$work/$name.sluice" > /dev/null 2>&1 || fail "$name: convert"
  eval_to "$work/$name.sluice" "$name-pack" --stream on
  same_as_ram "$name" pack
  experts_apart "$name-pack"
  eval_to "$work/$name.sluice" "$name-pack-budget" --mem-budget 75MiB
  same_as_ram "$name" pack-budget
  experts_apart "$name-pack-budget"
  rc=0; "$sluice" eval -m "$work/$name.sluice" "${common[@]}" --experts whole > /dev/null 2> "$work/$name-pack-whole-refused.err" || rc=$?
  [[ $rc != 0 ]] && grep -qF -- "--experts whole" "$work/$name-pack-whole-refused.err" \
    || fail "$name: --experts whole on a pack with expert extents: $(cat "$work/$name-pack-whole-refused.err")"
  "$sluice" convert --experts whole "$m" "$work/$name-whole.sluice" > /dev/null 2>&1 || fail "$name: convert --experts whole"
  eval_to "$work/$name-whole.sluice" "$name-pack-whole" --stream on
  same_as_ram "$name" pack-whole
  experts_whole "$name-pack-whole"
  grep -qF "experts: this pack streams each block with all its experts" "$work/$name-pack-whole.err" \
    || fail "$name: no note that the pack reads whole blocks: $(cat "$work/$name-pack-whole.err")"
  rm -f "$work/$name.sluice" "$work/$name-whole.sluice"
  # --no-warmup: a warmup run would leave the routed experts cached, and each test is to read some.
  "$sluice" bench -m "$m" --stream on -p 4 -n 2 -r 1 -t 1 --no-warmup --raw-read --json "$work/$name-bench.json" > /dev/null 2> "$work/$name-bench.err" \
    || fail "$name: bench: $(cat "$work/$name-bench.err")"
  python3 - "$work/$name-bench.json" <<'PY' || fail "$name: bench --json expert fields: $(cat "$work/$name-bench.json")"
import json, sys
tests = json.load(open(sys.argv[1]))["tests"]
for t in tests:
    assert t["expert_uses"] > 0 and t["expert_reads"] > 0 and t["expert_bytes"] > 0, t
    assert t["expert_hits"] <= t["expert_uses"] and 0 <= t["expert_hit_rate"] <= 1, t
    # bytes read count the experts too; time blocked on them is not compute
    assert t["bytes_read"] >= t["expert_bytes"], t
    assert 0 <= t["expert_wait_s"] and 0 <= t["expert_verify_s"] and t["compute_busy_s"] + t["expert_wait_s"] <= t["wall_s"] + 1e-6, t
PY
  # The yardstick of streamed experts: each test's read per pass over the raw speed, plus compute.
  grep -q "^batch 1 tg: .* read per pass / raw .* compute .* measured .* s/pass = .* x read + compute" "$work/$name-bench.err" \
    || fail "$name: bench printed no read + compute bound: $(cat "$work/$name-bench.err")"
  rm -f "$work/$name.sluice"
done

# Experts apart under a budget whose expert cache leaves more than the planner's "room to spare"
# (slots of 32 MiB, two layers: a slot per layer is a 64 MiB step) must stream: the plan holds only
# the cache's share of the experts. It once said "in RAM" and memory-mapped the whole file (Mixtral
# under an 8 GiB cap). Header only: a 525 MiB model in a few KB.
"$sluice" synth "$work/bigexp.gguf" --arch llama --vocab-size 4000 --embd 1024 --layers 2 --heads 8 --kv-heads 4 \
  --experts 8 --experts-used 2 --ff 10240 --type Q8_0 --no-data > /dev/null || fail "synth bigexp"
for b in 220 240 300; do
  "$sluice" run -m "$work/bigexp.gguf" --plan-only --mem-budget ${b}MiB > "$work/bigexp.plan" 2>&1 || fail "bigexp plan ${b}MiB: $(cat "$work/bigexp.plan")"
  grep -q "^expert cache" "$work/bigexp.plan" || fail "bigexp ${b}MiB: experts not apart: $(cat "$work/bigexp.plan")"
  ! grep -q "^in RAM" "$work/bigexp.plan" || fail "bigexp ${b}MiB: a 525 MiB model planned in RAM: $(cat "$work/bigexp.plan")"
done
rm -f "$work/bigexp.gguf"

# The real shapes, header only (a few MB on disk): the released models' parameter counts.
"$sluice" synth "$work/q30.gguf" --shape qwen3-30b-a3b --type Q4_K --no-data > "$work/q30.out" || fail "synth qwen3-30b-a3b"
grep -qF "30,532,122,624 parameters" "$work/q30.out" || fail "qwen3-30b-a3b: $(cat "$work/q30.out")"
grep -qF "qwen3moe Q4_K, embd 2048, 48 layers, 32 heads / 4 kv, ff 6144, 128 experts (8 per token) of ff 768" \
  "$work/q30.out" || fail "qwen3-30b-a3b shape: $(cat "$work/q30.out")"
"$sluice" synth "$work/mx.gguf" --shape mixtral-8x7b --type Q4_0 --no-data > "$work/mx.out" || fail "synth mixtral-8x7b"
grep -qF "46,702,792,704 parameters" "$work/mx.out" || fail "mixtral-8x7b: $(cat "$work/mx.out")"
# A Mixtral block is 8 experts x 3 x 4096 x 14336 Q4_0 weights plus attention: 778.7 MiB, what a slot holds
# with --experts whole. By default (experts apart) the slots hold the dense tensors and the experts get a cache.
"$sluice" run -m "$work/mx.gguf" --plan-only --stream on --mem-budget 4GiB -c 512 > "$work/mx-apart.plan" 2>&1 \
  || fail "mixtral-8x7b --plan-only (experts apart): $(cat "$work/mx-apart.plan")"
grep -q "^expert cache .* slots per layer ([0-9]* in all) of 8 experts" "$work/mx-apart.plan" || fail "mixtral-8x7b: no expert cache: $(cat "$work/mx-apart.plan")"
! grep -q "slots x 778.7 MiB" "$work/mx-apart.plan" || fail "mixtral-8x7b: experts apart but whole-block slots: $(cat "$work/mx-apart.plan")"
"$sluice" run -m "$work/mx.gguf" --plan-only --stream on --experts whole --mem-budget 4GiB -c 512 > "$work/mx.plan" 2>&1 \
  || fail "mixtral-8x7b --plan-only: $(cat "$work/mx.plan")"
grep -q "slots x 778.7 MiB" "$work/mx.plan" || fail "mixtral-8x7b ring slots are not a whole block: $(cat "$work/mx.plan")"
"$sluice" run -m "$work/q30.gguf" --plan-only --stream on --experts whole --mem-budget 4GiB -c 512 > "$work/q30.plan" 2>&1 \
  || fail "qwen3-30b-a3b --plan-only: $(cat "$work/q30.plan")"
grep -q "slots x 335.1 MiB" "$work/q30.plan" || fail "qwen3-30b-a3b ring slots are not a whole block: $(cat "$work/q30.plan")"

# Without --no-data the free-space check sees the experts: mixtral-8x7b (26.3 GB in Q4_0) into
# /dev/shm, when that tmpfs is smaller, is refused before anything is written.
if [[ -d /dev/shm ]] && (( $(df -Pk /dev/shm | awk 'NR == 2 { print $4 }') < 25 * 1000 * 1000 )); then
  out="/dev/shm/sluice-moe-no-room-$$.gguf"
  rc=0; "$sluice" synth "$out" --shape mixtral-8x7b --type Q4_0 > "$work/room.out" 2> "$work/room.err" || rc=$?
  [[ $rc != 0 ]] || { rm -f "$out"; fail "mixtral-8x7b into /dev/shm exited 0"; }
  grep -qF "26,341,096,672 bytes" "$work/room.out" || fail "no size before the refusal: $(cat "$work/room.out")"
  grep -q "not enough free space in /dev/shm" "$work/room.err" || fail "no refusal naming /dev/shm: $(cat "$work/room.err")"
  ls /dev/shm/sluice-moe-no-room-$$* > /dev/null 2>&1 && { rm -f /dev/shm/sluice-moe-no-room-$$*; fail "a file was left in /dev/shm"; }
else
  echo "note: /dev/shm missing or larger than mixtral-8x7b: the no-room refusal is not checked here"
fi

# Refusals, naming the flag; nothing written.
refused() {  # WORDS ARGS...
  local words="$1"; shift
  rc=0; "$sluice" synth "$work/bad.gguf" "$@" > "$work/bad.out" 2>&1 || rc=$?
  [[ $rc != 0 ]] || fail "synth $* exited 0"
  grep -qF -- "$words" "$work/bad.out" || fail "synth $*: no '$words' in: $(cat "$work/bad.out")"
  [[ ! -e "$work/bad.gguf" ]] || fail "synth $* wrote a file"
}
refused "--experts applies to --arch qwen3moe and llama" --arch qwen2 --experts 4 --experts-used 2
refused "--arch qwen3moe needs --experts N" --arch qwen3moe
refused "--experts-used 9 is out of range" --arch qwen3moe --experts 8 --experts-used 9
refused "is a qwen3moe model" --shape qwen3-30b-a3b --arch llama --no-data
refused "--router-skew needs --experts N" --router-skew 1
echo "OK"
