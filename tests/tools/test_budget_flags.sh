#!/usr/bin/env bash
# What `sluice run` says about a budget or context it cannot honour, before it loads anything:
#  - an explicit --mem-budget above the memory cgroup's limit (tools/memcap.sh 200M with a 300 MiB
#    budget) is refused with both numbers; the model file is never read (it is not even a model);
#  - a negative -c is an error;
#  - with stories260K (../shared/models; that part skips without it), -c above the trained context
#    warns in one line, and a -c whose KV cache is larger than the budget is refused.
set -euo pipefail
sluice="$1"; memcap="$2"; models="$3"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
not_a_model="$work/not-a-model.txt"
echo "not a model" > "$not_a_model"
fail() { echo "FAIL: $*"; [[ -f "$work/err" ]] && cat "$work/err"; exit 1; }

set +e
bash "$memcap" 200M -- "$sluice" run -m "$not_a_model" -p "Hello" -n 1 --mem-budget 300MiB > /dev/null 2> "$work/err"
rc=$?
set -e
if [[ $rc == 125 || $rc == 2 ]] || ! grep -q "^memcap:" "$work/err"; then
  echo "SKIPPED (cgroup part): tools/memcap.sh cannot run here (exit $rc): $(tail -1 "$work/err")"
else
  [[ $rc != 0 ]] || fail "a budget above the cgroup limit was accepted"
  grep -q "300.0 MiB" "$work/err" && grep -q "200.0 MiB" "$work/err" && grep -q "cgroup limit" "$work/err" \
    || fail "the refusal does not name the budget and the cgroup limit"
  ! grep -qi "not a pack\|gguf\|magic" "$work/err" || fail "the model was read before the budget was checked"
  echo "budget above the cgroup limit refused: $(grep '^sluice:' "$work/err")"
fi

if "$sluice" run -m "$not_a_model" -p "Hello" -n 1 -c -1 > /dev/null 2> "$work/err"; then fail "-c -1 was accepted"; fi
grep -qE -- "-c -1: the context must be positive|--ctx-size: Value -1 not in range" "$work/err" || fail "-c -1: no clear error"

stories="$models/stories260K.gguf"
if [[ ! -f "$stories" ]]; then echo "SKIPPED (context part): $stories not found (../shared/models)"; echo "budget flags ok"; exit 0; fi
"$sluice" convert "$stories" "$work/s.sluice" > /dev/null 2>&1
for model in "$stories" "$work/s.sluice"; do
  "$sluice" run -m "$model" -p "Once" -n 2 -c 1000 --disk-gbps 2 > /dev/null 2> "$work/err" || fail "-c 1000 on $model failed"
  [[ $(grep -c "^warning: -c 1000 is above .*trained context of 128" "$work/err") == 1 ]] \
    || fail "-c 1000 on $model: expected one warning line naming the trained context"
  if "$sluice" run -m "$model" -p "Once" -n 2 -c 10000000 --kv-spill off --mem-budget 1GiB --disk-gbps 2 > /dev/null 2> "$work/err"; then
    fail "-c 10000000 with a 1 GiB budget was accepted on $model"
  fi
  grep -q "^sluice: .*1.00 GiB" "$work/err" && grep -qi "KV cache" "$work/err" \
    || fail "-c 10000000 on $model: the refusal does not name the KV cache and the budget"
done
echo "budget flags ok"
